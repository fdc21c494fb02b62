"""Inference algorithms. Each is a frozen configuration whose ``bind(program)`` gives a
:class:`Kernel` with ``init(batch, seed) -> state`` and ``step(state, batch) -> (state, info)``;
states and infos are NamedTuples of data; ``ppgen.fit`` owns the loop around them.

- :class:`ClosedForm` — maximum likelihood by formula (PPCA).
- :class:`EM` — expectation–maximisation (PPCA, GMM).
- :class:`SVI` — stochastic variational inference with a choice of ELBO and guide.
- Losses (``inference/losses.py``): every loss is an object called
  ``loss(program, params, batch, rng) -> (value, metrics)`` in both backends —
  :class:`MonteCarloELBO`, :class:`AnalyticKLELBO`, :class:`ImportanceWeightedELBO`,
  :class:`RenyiELBO`, :class:`EnumeratedELBO`, :class:`DiffusionLoss`, and each player's
  adversarial loss (:class:`AdversarialLoss`); :func:`resolve_loss` turns the string
  shorthands into them, and a person's own object is taken wherever a built-in one is.
- :class:`DiffusionLoss` — the diffusion objectives (simple, variational bound, hybrid) as SVI losses.
- :class:`NUTS`, :class:`HMC` — Hamiltonian Monte Carlo.
- :class:`Adversarial` — the two-player game of GANs and adversarial autoencoders, with the
  minimax, non-saturating, Wasserstein, WGAN-GP and hinge losses.

Every object states which models it serves; a mismatch is refused before any work with an
error naming what would work.
"""

from .adversarial import (Adversarial, AdversarialLoss, DiscriminatorLoss, GeneratorLoss, JaxGameKernel, JaxGameState,
                          TorchGameKernel, TorchGameState)
from .base import Inference, Kernel, Result, info_with_metrics
from .closed_form import ClosedForm, ClosedFormState
from .diffusion import DiffusionLoss
from .em import EM, EMState
from .losses import (AnalyticKLELBO, ELBOTerms, EnumeratedELBO, ImportanceWeightedELBO, Loss, MonteCarloELBO,
                     RenyiELBO, elbo_terms, resolve_loss)
from .mcmc import HMC, NUTS, MCMCState
from .svi import SVI, NumPyroSVIKernel, NumPyroSVIState, PyroSVIKernel, PyroSVIState, SVIInfo

__all__ = ["Inference", "Kernel", "Result", "ClosedForm", "ClosedFormState", "EM", "EMState", "MCMCState", "SVI", "NUTS", "HMC", "DiffusionLoss", "Adversarial",
           "Loss", "resolve_loss", "MonteCarloELBO", "AnalyticKLELBO", "ImportanceWeightedELBO", "RenyiELBO",
           "EnumeratedELBO", "AdversarialLoss", "GeneratorLoss", "DiscriminatorLoss", "elbo_terms", "ELBOTerms",
           "info_with_metrics", "SVIInfo", "PyroSVIKernel", "PyroSVIState", "NumPyroSVIKernel", "NumPyroSVIState",
           "TorchGameKernel", "TorchGameState", "JaxGameKernel", "JaxGameState"]
