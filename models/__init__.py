"""Model families. Each module holds a family's spec, its math, and both backends' programs.

- :class:`PPCA` — probabilistic PCA (``models/ppca.py``).
- :class:`GMM` — Gaussian mixtures with full, diagonal, spherical or tied covariances
  (``models/gmm.py``).
"""

from .gmm import GMM
from .ppca import PPCA

__all__ = ["PPCA", "GMM"]
