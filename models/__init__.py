"""Model families. Each module holds a family's spec, its math, and both backends' programs.

- :class:`PPCA` — probabilistic PCA (``models/ppca.py``).
- :class:`GMM` — Gaussian mixtures with full, diagonal, spherical or tied covariances
  (``models/gmm.py``).
- :class:`VAE`, :class:`CVAE` — the variational autoencoder and its conditional version
  (``models/vae.py``); :class:`HVAE` — the hierarchical VAE (``models/hvae.py``). Their
  networks are in ``models/nets/``.
- :class:`DDPM` — denoising diffusion as a hierarchical latent chain (``models/ddpm.py``).
- :class:`GAN`, :class:`CGAN` — generative adversarial networks, unconditional and conditional
  (``models/gan.py``); :class:`AAE` — the adversarial autoencoder and WAE-MMD (``models/aae.py``).
"""

from .aae import AAE
from .ddpm import DDPM
from .gan import CGAN, GAN
from .gmm import GMM
from .hvae import HVAE
from .ppca import PPCA
from .vae import CVAE, VAE

__all__ = ["PPCA", "GMM", "VAE", "CVAE", "HVAE", "DDPM", "GAN", "CGAN", "AAE"]
