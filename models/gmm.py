r"""Gaussian mixture models (course notes 001 and 004).

The model:

.. math::

    z_n \sim \operatorname{Categorical}(\pi), \qquad
    x_n \mid z_n = k \sim \mathcal N(\mu_k, \Sigma_k),
    \qquad p(x_n) = \sum_{k=1}^K \pi_k\, \mathcal N(x_n \mid \mu_k, \Sigma_k).

Maximum likelihood by EM (notes 001): the E-step computes the responsibilities

.. math::

    \gamma_{nk} = \frac{\pi_k \mathcal N(x_n\mid\mu_k,\Sigma_k)}{\sum_j \pi_j \mathcal N(x_n\mid\mu_j,\Sigma_j)},

the M-step sets, with :math:`N_k = \sum_n \gamma_{nk}`,

.. math::

    \pi_k = N_k / N, \quad \mu_k = \tfrac1{N_k}\sum_n \gamma_{nk} x_n, \quad
    \Sigma_k = \tfrac1{N_k}\sum_n \gamma_{nk}(x_n-\mu_k)(x_n-\mu_k)^\top + \epsilon I,

where :math:`\epsilon` is EM's ``reg_covar`` floor (as in scikit-learn). Both steps are written
once over an array namespace (torch, ``jax.numpy`` or numpy) and vectorised over components:
each log-density is linear in a per-row *design* (the row's quadratic terms and the row
itself, see :meth:`GMM.em_data`), so an E-step and an M-step are one matrix product each. They
run unchanged on a GPU, and from the same starting point they reproduce scikit-learn's
iterations.

``covariance`` chooses the shape of :math:`\Sigma_k`: ``"full"`` (one matrix per component,
parameter ``scale_tril``, its Cholesky factor, shape (K, D, D)), ``"tied"`` (one matrix shared
by all components, ``scale_tril`` (D, D)), ``"diag"`` (``scales``, the standard deviations,
(K, D)) or ``"spherical"`` (``scales``, one standard deviation per component, (K,)).

Sites, identical in both backends: ``weights`` (π), ``locs`` (μ), ``scales`` and/or
``scale_tril``, ``assignment`` (z), ``x``. The forms:

- ``"marginal"``: z summed out in closed form (a ``MixtureSameFamily`` likelihood), parameters
  as point estimates: EM, and SVI on the marginalised mixture.
- ``"latent"``: ``assignment`` is a sample site that SVI's enumerated ELBO sums out
  (``SVI(elbo="enum")``: Pyro's ``TraceEnum_ELBO``, NumPyro's with funsor); point estimates.
- ``"bayesian"``: priors ``weights ~ Dirichlet(weight_concentration)``, ``locs ~ N(0,
  loc_prior_scale²)``, standard deviations ``scales ~ HalfNormal(scale_prior_scale)`` and, for
  full and tied covariances, Cholesky factors of correlation matrices ``corr_tril ~
  LKJCholesky(correlation_concentration)`` with ``scale_tril = diag(scales) corr_tril``
  (deterministic). NUTS/HMC and SVI with a global guide sample the marginalised mixture; with
  ``SVI(elbo="enum")`` the assignments stay in the model and are enumerated.

Label switching: the likelihood is unchanged when components are permuted, so a posterior
has K! copies of each mode. MCMC chains start from an EM fit (with 5% jitter per chain), and
every posterior is then *relabelled* after the fact: each draw's components are permuted
(Hungarian algorithm) to best match a reference (the mean of the relabelled draws, iterated
to a fixed point), and components are finally ordered by the first coordinate of their mean.
R-hat and ESS of ``locs``, ``weights`` and ``scales`` are then meaningful.

Example:
    >>> import ppgen
    >>> from ppgen import models
    >>> fit = ppgen.fit(models.GMM(data_dim=2, num_components=3), x, "em")
    >>> fit.predict(x), fit.bic()

References:
    Dempster, Laird & Rubin (1977). Maximum likelihood from incomplete data via the EM
    algorithm. Bishop (2006), Pattern Recognition and Machine Learning, §9.2. Stephens (2000),
    Dealing with label switching in mixture models, JRSS B 62(4). Arthur & Vassilvitskii
    (2007), k-means++.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError, DataError
from ppgen.program import BuiltProgram, ModelSpec

__all__ = ["GMM", "COVARIANCES"]

COVARIANCES = ("full", "diag", "spherical", "tied")
_LOG_2PI = math.log(2 * math.pi)


# ---- array-namespace helpers (torch, jax.numpy and numpy) ---------------------------------
def _kind(xp) -> str:
    return xp.__name__.split(".")[0]


def _device(xp, like) -> dict:
    return {"device": like.device} if _kind(xp) == "torch" else {}


def _cast(xp, a, like):
    return a.to(like.dtype) if _kind(xp) == "torch" else a.astype(like.dtype)


def _logsumexp(xp, a):
    if _kind(xp) == "torch":
        return xp.logsumexp(a, -1)
    if _kind(xp) == "jax":
        import jax

        return jax.nn.logsumexp(a, axis=-1)
    import scipy.special

    return scipy.special.logsumexp(a, axis=-1)


def _max_last(xp, a):
    if _kind(xp) == "torch":
        return xp.amax(a, -1)
    return a.max(-1)


def _to_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _eye(xp, d, like):
    return xp.eye(d, dtype=like.dtype, **_device(xp, like))


@dataclasses.dataclass(frozen=True)
class GMM(ModelSpec):
    """Gaussian mixture: z ~ Categorical(π), x | z=k ~ N(μ_k, Σ_k).

    Args:
        data_dim: D, the number of values per example.
        num_components: K, the number of mixture components (1 ≤ K ≤ number of examples).
        covariance: shape of the covariances: ``"full"``, ``"diag"``, ``"spherical"`` or
            ``"tied"`` (one full matrix shared by all components).
        weight_concentration: concentration of the symmetric Dirichlet prior on the weights
            (Bayesian fits only).
        loc_prior_scale: scale of the normal prior on the component means (Bayesian fits only).
        scale_prior_scale: scale of the half-normal prior on the standard deviations (Bayesian
            fits only).
        correlation_concentration: the LKJ prior's concentration on the correlations of full
            and tied covariances; 1 is uniform over correlation matrices (Bayesian fits only).

    The priors assume data of order one (standardise other data, or widen the priors).
    """

    data_dim: int
    num_components: int = 2
    covariance: Literal["full", "diag", "spherical", "tied"] = "full"
    weight_concentration: float = 1.0
    loc_prior_scale: float = 10.0
    scale_prior_scale: float = 5.0
    correlation_concentration: float = 1.0

    family: ClassVar[str] = "gmm"
    forms: ClassVar[tuple] = ("marginal", "latent", "bayesian")
    methods: ClassVar[tuple] = ("em",)
    #: discrete per-example latents (summed out by EM, enumerated by SVI(elbo="enum"))
    discrete_latents: ClassVar[tuple] = ("assignment",)
    local_guides: ClassVar[tuple] = ()
    capabilities: ClassVar[frozenset] = frozenset({"sample", "log_likelihood", "covariances", "predict_proba"})

    @property
    def em_failure_hint(self) -> str:
        return _SINGULAR

    def _validate(self):
        self._require(self.data_dim >= 1, f"data_dim must be at least 1; got {self.data_dim}")
        self._require(self.num_components >= 1,
                      f"num_components must be at least 1; got {self.num_components}")
        for name in ("weight_concentration", "loc_prior_scale", "scale_prior_scale",
                     "correlation_concentration"):
            value = getattr(self, name)
            self._require(value > 0 and math.isfinite(value), f"{name} must be positive; got {value}")

    # ---- parameters ----------------------------------------------------------------------
    @property
    def covariance_param(self) -> str:
        """``"scale_tril"`` for full and tied covariances, ``"scales"`` for diag and spherical."""
        return "scale_tril" if self.covariance in ("full", "tied") else "scales"

    def param_names(self, form: str = "marginal") -> tuple:
        return ("weights", "locs", self.covariance_param)

    def param_shapes(self) -> dict:
        K, D = self.num_components, self.data_dim
        covariance = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[self.covariance]
        return {"weights": (K,), "locs": (K, D), self.covariance_param: covariance}

    def num_parameters(self) -> int:
        """Free parameters of the maximum-likelihood model (for BIC and AIC)."""
        K, D = self.num_components, self.data_dim
        cov = {"full": K * D * (D + 1) // 2, "tied": D * (D + 1) // 2, "diag": K * D, "spherical": K}
        return (K - 1) + K * D + cov[self.covariance]

    def point_params(self, draws: dict) -> dict:
        """The likelihood's parameters from a fit's params or posterior draws."""
        return {k: draws[k] for k in self.param_names()}

    def covariances(self, params: dict) -> np.ndarray:
        """Σ_k as full matrices, shape (K, D, D) (numpy), from point parameters."""
        K, D = self.num_components, self.data_dim
        value = np.asarray(params[self.covariance_param], dtype=np.float64)
        if self.covariance == "full":
            return value @ np.swapaxes(value, -1, -2)
        if self.covariance == "tied":
            return np.broadcast_to(value @ value.T, (K, D, D)).copy()
        if self.covariance == "diag":
            return np.stack([np.diag(s**2) for s in value])
        return (value**2)[:, None, None] * np.eye(D)

    # ---- data ----------------------------------------------------------------------------
    def check_data(self, x, what: str = "data") -> np.ndarray:
        from ppgen.datasets import check_finite

        x = self._rows(x, what)
        x = x if x.dtype == np.float64 else x.astype(np.float32, copy=False)
        return check_finite(x, what)

    def check_training_data(self, x: np.ndarray) -> None:
        """Refuse training data that cannot fit K components: K > N, or fewer than K distinct rows."""
        K, N = self.num_components, x.shape[0]
        if K > N:
            raise DataError(f"num_components={K} is more than the {N} training examples; "
                            f"use num_components <= {N}")
        rows = np.ascontiguousarray(x)
        distinct = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))).shape[0]
        if distinct < K:
            raise DataError(
                f"the training data have only {distinct} distinct row(s), fewer than num_components={K}: "
                f"the extra components would collapse onto the same points. Use num_components <= {distinct}")

    # ---- the math, over an array namespace ---------------------------------------------------
    def log_joint(self, xp, x, params: dict):
        """log π_k + log N(x_n | μ_k, Σ_k) for every draw s, row n, component k: shape (S, N, K).

        ``params`` carry one leading draw axis S (weights (S, K), locs (S, K, D), ...)."""
        D = self.data_dim
        weights, locs = params["weights"], params["locs"]
        cov = params[self.covariance_param]
        x2 = (x * x).sum(-1)                                                        # (N,)
        if self.covariance == "spherical":
            precision = 1.0 / cov**2                                                # (S, K)
            quad = (x2[None, :, None] - 2 * xp.einsum("nd,skd->snk", x, locs)
                    + (locs * locs).sum(-1)[:, None, :]) * precision[:, None, :]
            logdet = D * xp.log(cov)
        elif self.covariance == "diag":
            precision = 1.0 / cov**2                                                # (S, K, D)
            quad = (xp.einsum("nd,skd->snk", x * x, precision)
                    - 2 * xp.einsum("nd,skd->snk", x, locs * precision)
                    + (locs * locs * precision).sum(-1)[:, None, :])
            logdet = xp.log(cov).sum(-1)
        else:
            inverse = xp.linalg.inv(cov)                                            # L⁻¹
            logdet = xp.log(xp.diagonal(cov, 0, -2, -1)).sum(-1)
            if self.covariance == "tied":                                           # L (S, D, D)
                white = xp.einsum("nd,sed->sne", x, inverse)                        # L⁻¹x (S, N, D)
                centres = xp.einsum("sed,skd->ske", inverse, locs)                  # L⁻¹μ (S, K, D)
                quad = ((white * white).sum(-1)[:, :, None] - 2 * xp.einsum("sne,ske->snk", white, centres)
                        + (centres * centres).sum(-1)[:, None, :])
                logdet = logdet[:, None]
            else:                                                                   # L (S, K, D, D)
                white = xp.einsum("nd,sked->snke", x, inverse)                      # (S, N, K, D)
                centres = xp.einsum("sked,skd->ske", inverse, locs)
                diff = white - centres[:, None]
                quad = (diff * diff).sum(-1)
        return xp.log(weights)[:, None, :] - 0.5 * (D * _LOG_2PI + quad) - logdet[:, None, :]

    def e_step(self, xp, x, params: dict):
        """(responsibilities γ (N, K), mean log-likelihood) of point parameters."""
        resp, norm = self._responsibilities(xp, self.em_data(xp, x), params)
        return resp, norm.mean()

    def m_step(self, xp, x, resp, reg_covar: float) -> dict:
        """Parameters maximising the expected complete-data log-likelihood under ``resp``."""
        return self._m_step_data(xp, self.em_data(xp, x), resp, reg_covar)

    def em_step(self, xp, data, params: dict, reg_covar: float):
        """One EM iteration on ``data = em_data(x)``: (new parameters, mean log-likelihood of
        ``params``)."""
        if not isinstance(data, dict):
            data = self.em_data(xp, data)
        resp, norm = self._responsibilities(xp, data, params)
        return self._m_step_data(xp, data, resp, reg_covar), norm.mean()

    #: EM precomputes the products x_d x_e (d <= e) of every row when they take at most this
    #: many numbers (256 MB in float64); larger problems take the direct (slower) path.
    quadratic_feature_budget: ClassVar[int] = 32 * 2**20

    def em_data(self, xp, x) -> dict:
        """What EM iterates on, computed once per fit.

        The data are centred on their mean (no precision is lost to a large offset), and each
        row gets a *design* row: its quadratic terms (x_d² for diagonal covariances, Σ_d x_d²
        for spherical ones, x_d x_e for d ≤ e for full and tied ones) followed by x itself. Every
        log-density log π_k + log N(x | μ_k, Σ_k) is then linear in the design row, so an E-step
        is one matrix product (design @ weightsᵀ, shape (N, K)), and an M-step's sufficient
        statistics are another (γᵀ @ design). Full and tied designs with more than
        ``quadratic_feature_budget`` numbers are not built; those E- and M-steps are computed
        directly instead."""
        D, N = self.data_dim, x.shape[0]
        shift = x.mean(0)
        xc = x - shift
        data = {"x": xc, "shift": shift}
        if self.covariance == "tied":
            data["gram"] = xc.T @ xc
        if self.covariance == "diag":
            quadratic = xc * xc
        elif self.covariance == "spherical":
            quadratic = (xc * xc).sum(-1)[:, None]
        else:
            pairs = D * (D + 1) // 2
            if N * pairs > self.quadratic_feature_budget:
                return data
            rows, cols = np.triu_indices(D)
            full_index = np.zeros((D, D), dtype=np.int64)
            full_index[rows, cols] = np.arange(pairs)
            full_index[cols, rows] = np.arange(pairs)
            data["full_index"] = _rows(xp, x, full_index)
            quadratic = xc[:, _rows(xp, x, rows)] * xc[:, _rows(xp, x, cols)]
        data["design"] = xp.concatenate([quadratic, xc], 1)
        return data

    def _responsibilities(self, xp, data, params):
        """γ (N, K) and log p(x_n) (N,) in one pass: a single exp over the (N, K) log-joint."""
        p = dict(params, locs=params["locs"] - data["shift"])
        if "design" in data:
            weights, bias = self._design_weights(xp, p)
            joint = data["design"] @ weights.T + bias[None, :]
        else:
            joint = self.log_joint(xp, data["x"], {k: v[None] for k, v in p.items()})[0]
        top = _max_last(xp, joint)
        unnormalised = xp.exp(joint - top[:, None])
        total = unnormalised.sum(-1)
        return unnormalised / total[:, None], top + xp.log(total)

    def _design_weights(self, xp, params):
        """(weights (K, width), bias (K,)) with log π_k + log N(x | μ_k, Σ_k) = weights_k · design(x) + bias_k:
        (x−μ)ᵀΛ(x−μ) = Σ_{d≤e} c_de Λ_de x_d x_e − 2 (Λμ)ᵀx + μᵀΛμ (c = 1 on the diagonal, 2 off it)."""
        D = self.data_dim
        locs = params["locs"]
        if self.covariance in ("diag", "spherical"):
            scales = params["scales"]
            precision = 1.0 / scales**2                                 # (K, D) or (K,)
            if self.covariance == "spherical":
                quadratic = -0.5 * precision[:, None]
                linear = locs * precision[:, None]
                logdet = D * xp.log(scales)
            else:
                quadratic = -0.5 * precision
                linear = locs * precision
                logdet = xp.log(scales).sum(-1)
        else:
            L = params["scale_tril"]
            inverse = xp.linalg.inv(L)
            precision = xp.swapaxes(inverse, -1, -2) @ inverse          # Λ = L⁻ᵀL⁻¹
            logdet = xp.log(xp.diagonal(L, 0, -2, -1)).sum(-1)
            if self.covariance == "tied":
                precision = precision[None] + 0 * locs[:, :1, None]    # (K, D, D)
                logdet = logdet + 0 * locs[:, 0]
            quadratic = -0.5 * precision[:, self._rows_of(xp, L), self._cols_of(xp, L)] * \
                (1.0 + self._off_diagonal(xp, L))
            linear = (precision @ locs[:, :, None])[..., 0]                # Λμ (K, D)
        quad_locs = (linear * locs).sum(-1)                                 # μᵀΛμ
        bias = xp.log(params["weights"]) - 0.5 * (D * _LOG_2PI + quad_locs) - logdet
        return xp.concatenate([quadratic, linear], 1), bias

    def _triu(self):
        return np.triu_indices(self.data_dim)

    def _rows_of(self, xp, like):
        return _rows(xp, like, self._triu()[0])

    def _cols_of(self, xp, like):
        return _rows(xp, like, self._triu()[1])

    def _off_diagonal(self, xp, like):
        rows, cols = self._triu()
        return xp.asarray((rows != cols).astype(np.float64), dtype=like.dtype, **_device(xp, like))

    def _m_step_data(self, xp, data, resp, reg_covar: float) -> dict:
        """The M-step from the design's sufficient statistics (γᵀ @ design); parameters in the
        data's own (uncentred) coordinates."""
        D = self.data_dim
        x, shift = data["x"], data["shift"]
        eps = 10 * float(np.finfo(np.float64).eps)
        nk = resp.sum(0) + eps                                                      # (K,)
        if "design" in data:
            moments = resp.T @ data["design"]                                      # (K, width)
            quadratic, linear = moments[:, :-D], moments[:, -D:]
        else:
            quadratic, linear = None, resp.T @ x
        locs = linear / nk[:, None]
        eye = _eye(xp, D, x)
        if self.covariance == "full":
            second = quadratic[:, data["full_index"]] if quadratic is not None else \
                xp.einsum("nk,nd,ne->kde", resp, x, x)
            cov = second / nk[:, None, None] - locs[:, :, None] * locs[:, None, :] + reg_covar * eye
            scale = _cholesky(xp, 0.5 * (cov + xp.swapaxes(cov, -1, -2)))
        elif self.covariance == "tied":
            cov = (data["gram"] - (nk[:, None] * locs).T @ locs) / nk.sum() + reg_covar * eye
            scale = _cholesky(xp, 0.5 * (cov + cov.T))
        else:
            if self.covariance == "diag":
                var = quadratic / nk[:, None] - locs * locs + reg_covar                  # (K, D)
            else:
                var = (quadratic[:, 0] / nk - (locs * locs).sum(-1)) / D + reg_covar     # (K,)
            scale = xp.sqrt(xp.where(var > reg_covar, var, reg_covar + 0 * var))  # rounding below the floor
        return {"weights": nk / nk.sum(), "locs": locs + shift, self.covariance_param: scale}

    def em_init(self, xp, x, seed: int, init, reg_covar: float) -> dict:
        """Starting parameters: an M-step on k-means (``"kmeans"``), k-means++ seeding
        (``"kmeans++"``) or random (``"random"``) responsibilities, or given parameters
        (a dict with ``weights``, ``locs`` and ``scale_tril``/``scales``, ``covariances`` or
        scikit-learn-style ``precisions``)."""
        K, N = self.num_components, x.shape[0]
        if isinstance(init, dict):
            return self._given_params(xp, init, x)
        if init in ("auto", "kmeans", "kmeans++"):
            centres = _kmeans_plus_plus(xp, x, K, seed)
            if init != "kmeans++":
                centres = _lloyd(xp, x, centres)
            labels = _nearest(xp, x, centres)
            resp = _cast(xp, labels[:, None] == xp.arange(K, **_device(xp, x))[None, :], x)
        elif init == "random":
            rng = np.random.default_rng(seed)
            r = rng.uniform(size=(N, K))
            resp = xp.asarray(r / r.sum(1, keepdims=True), dtype=x.dtype, **_device(xp, x))
        else:
            raise ConfigError(f"EM(init_params={init!r}) is not a GMM initialisation; use 'kmeans', "
                              f"'kmeans++', 'random' or a dict of starting parameters")
        return self.m_step(xp, x, resp, reg_covar)

    def _given_params(self, xp, init: dict, like) -> dict:
        K, D = self.num_components, self.data_dim
        want = self.covariance_param

        def arr(value, shape, name):
            value = np.asarray(value, dtype=np.float64)
            if value.shape != shape:
                raise ConfigError(f"EM(init_params=...) {name} has shape {value.shape}; GMM(num_components={K}, "
                                  f"data_dim={D}, covariance={self.covariance!r}) needs {shape}")
            return value

        missing = [k for k in ("weights", "locs") if k not in init]
        if missing:
            raise ConfigError(f"EM(init_params=...) is missing {missing}; give weights, locs and one of "
                              f"{want}, covariances, precisions")
        cov_shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[self.covariance]
        weights = arr(init["weights"], (K,), "weights")
        if np.any(weights <= 0) or not np.isclose(weights.sum(), 1.0):
            raise ConfigError(f"EM(init_params=...) weights must be positive and sum to 1; got {weights}")
        locs = arr(init["locs"], (K, D), "locs")
        if want in init:
            scale = arr(init[want], cov_shape, want)
        elif "covariances" in init or "precisions" in init:
            key = "covariances" if "covariances" in init else "precisions"
            value = arr(init[key], cov_shape, key)
            if self.covariance in ("diag", "spherical"):
                scale = np.sqrt(value if key == "covariances" else 1.0 / value)
            else:
                try:
                    scale = np.linalg.cholesky(value if key == "covariances" else np.linalg.inv(value))
                except np.linalg.LinAlgError as e:
                    raise ConfigError(f"EM(init_params=...) {key} are not positive definite") from e
        else:
            raise ConfigError(f"EM(init_params=...) needs {want}, covariances or precisions")
        to = lambda v: xp.asarray(v, dtype=like.dtype, **_device(xp, like))  # noqa: E731
        return {"weights": to(weights), "locs": to(locs), want: to(scale)}

    # ---- programs (one definition, both backends, via the backend's `ppl` facade) ----------
    def _components(self, ppl, locs, cov):
        """The K component distributions; ``locs`` (..., K, D)."""
        dist = ppl.dist
        if self.covariance == "full":
            return dist.MultivariateNormal(locs, scale_tril=cov)
        if self.covariance == "tied":
            return dist.MultivariateNormal(locs, scale_tril=cov[..., None, :, :])
        if self.covariance == "diag":
            return dist.Normal(locs, cov).to_event(1)
        return dist.Normal(locs, cov[..., None] * ppl.ones((self.data_dim,), like=locs)).to_event(1)

    def _mixture(self, ppl, weights, locs, cov):
        """p(x) = Σ_k π_k N(x | μ_k, Σ_k), batch shape (*draw_shape, 1)."""
        cov_axes = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}[self.covariance]
        cov = cov.reshape(cov.shape[:cov.ndim - cov_axes] + (1,) + cov.shape[cov.ndim - cov_axes:])
        mix = ppl.dist.Categorical(probs=weights[..., None, :])
        return ppl.dist.MixtureSameFamily(mix, self._components(ppl, locs[..., None, :, :], cov))

    def _likelihood(self, ppl, weights, locs, cov, x=None, num_data=None, index=None, num=None):
        """Observation site ``x`` with the assignment summed out."""
        n = x.shape[0] if x is not None else num
        d = self._mixture(ppl, weights, locs, cov)
        with ppl.plate("data", num_data or n, index=index, subsample_size=n, dim=-1):
            return ppl.sample("x", d, obs=x)

    def _enumerated_likelihood(self, ppl, weights, locs, cov, x, num_data=None, index=None):
        """Sites ``assignment`` (enumerated in parallel) and ``x``."""
        n = x.shape[0]
        with ppl.plate("data", num_data or n, index=index, subsample_size=n, dim=-1):
            z = ppl.sample("assignment", ppl.dist.Categorical(probs=weights), infer={"enumerate": "parallel"})
            ppl.sample("x", self._components(ppl, locs[z], cov if self.covariance == "tied" else cov[z]), obs=x)

    def _priors(self, ppl, like):
        """Sample sites of the Bayesian form; returns (weights, locs, covariance parameter)."""
        K, D = self.num_components, self.data_dim
        dist = ppl.dist
        weights = ppl.sample("weights", dist.Dirichlet(self.weight_concentration * ppl.ones((K,), like=like)))
        with ppl.plate("components", K, dim=-1):
            locs = ppl.sample("locs", dist.Normal(ppl.zeros((K, D), like=like), self.loc_prior_scale).to_event(1))
            if self.covariance == "diag":
                scales = ppl.sample("scales", dist.HalfNormal(
                    self.scale_prior_scale * ppl.ones((K, D), like=like)).to_event(1))
            elif self.covariance == "spherical":
                scales = ppl.sample("scales", dist.HalfNormal(self.scale_prior_scale * ppl.ones((K,), like=like)))
            elif self.covariance == "full":
                scales = ppl.sample("scales", dist.HalfNormal(
                    self.scale_prior_scale * ppl.ones((K, D), like=like)).to_event(1))
                corr = self._correlation(ppl, like)
        if self.covariance == "tied":
            scales = ppl.sample("scales", dist.HalfNormal(self.scale_prior_scale * ppl.ones((D,), like=like))
                                .to_event(1))
            corr = self._correlation(ppl, like)
        if self.covariance in ("full", "tied"):
            return weights, locs, ppl.deterministic("scale_tril", scales[..., :, None] * corr)
        return weights, locs, scales

    def _correlation(self, ppl, like):
        D = self.data_dim
        if D == 1:
            return ppl.ones((1, 1), like=like)
        return ppl.sample("corr_tril", ppl.dist.LKJCholesky(D, ppl.constant(self.correlation_concentration, like)))

    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None,
              seed: int = 0, device: str = "cpu", enumerate: bool = False) -> BuiltProgram:
        self.check_training_data(data)
        be = get_backend(backend)
        ppl = be.ppl
        N = data.shape[0]
        cache: dict = {}

        def start() -> dict:  # computed on first use: EM never needs it
            if not cache:
                cache.update(self._start(data, seed))
            return cache

        constraint = {"scale_tril": ppl.constraints.lower_cholesky, "scales": ppl.constraints.positive}

        def points(like):
            weights = ppl.param("weights", ppl.constant(start()["weights"], like),
                                constraint=ppl.constraints.simplex)
            locs = ppl.param("locs", ppl.constant(start()["locs"], like))
            name = self.covariance_param
            cov = ppl.param(name, ppl.constant(start()[name], like), constraint=constraint[name])
            return weights, locs, cov

        def marginal_model(x, index=None, num_data=None):
            self._likelihood(ppl, *points(x), x=x, num_data=num_data, index=index)

        def latent_model(x, index=None, num_data=None):
            self._enumerated_likelihood(ppl, *points(x), x=x, num_data=num_data, index=index)

        def bayesian_model(x, index=None, num_data=None):
            self._likelihood(ppl, *self._priors(ppl, x), x=x, num_data=num_data, index=index)

        def bayesian_enumerated_model(x, index=None, num_data=None):
            self._enumerated_likelihood(ppl, *self._priors(ppl, x), x=x, num_data=num_data, index=index)

        def no_guide(x, index=None, num_data=None):
            """All parameters are point estimates in the model; assignments are enumerated or summed out."""

        if form == "marginal":
            return BuiltProgram(backend, marginal_model, no_guide, form, self, N)
        if form == "latent":
            return BuiltProgram(backend, latent_model, no_guide, form, self, N,
                                discrete_sites=self.discrete_latents, max_plate_nesting=1)
        if form == "bayesian":
            def init_values(chain: int) -> dict:
                return self._bayesian_start(start(), seed * 1000 + chain)

            if enumerate:
                return BuiltProgram(backend, bayesian_enumerated_model, None, form, self, N,
                                    init_values=init_values, discrete_sites=self.discrete_latents, max_plate_nesting=1)
            return BuiltProgram(backend, bayesian_model, None, form, self, N, init_values=init_values)
        raise ValueError(f"GMM has no form {form!r}; it has {self.forms}")

    def _start(self, data: np.ndarray, seed: int) -> dict:
        """A data-driven starting point: a short EM run from k-means (numpy, float64)."""
        x = np.asarray(data, dtype=np.float64)
        params = self.em_init(np, x, seed, "kmeans", 1e-6)
        data = self.em_data(np, x)
        for _ in range(20):
            params, _ = self.em_step(np, data, params, 1e-6)
        return {k: np.asarray(v) for k, v in params.items()}

    def _bayesian_start(self, start: dict, seed: int) -> dict:
        """The EM start in the Bayesian form's coordinates, with 5% jitter (one per chain)."""
        rng = np.random.default_rng(seed)
        jitter = lambda v: v * (1 + 0.05 * rng.standard_normal(np.shape(v)))  # noqa: E731
        weights = jitter(start["weights"])
        out = {"weights": weights / weights.sum(),
               "locs": start["locs"] + 0.05 * rng.standard_normal(start["locs"].shape) * _typical_scale(start)}
        if self.covariance in ("diag", "spherical"):
            out["scales"] = np.abs(jitter(start["scales"]))
            return out
        L = start["scale_tril"]
        cov = L @ np.swapaxes(L, -1, -2)
        sd = np.sqrt(np.diagonal(cov, 0, -2, -1))
        out["scales"] = np.abs(jitter(sd))
        if self.data_dim > 1:
            corr = cov / (sd[..., :, None] * sd[..., None, :])
            out["corr_tril"] = np.linalg.cholesky(corr)
        return out

    # ---- evaluation ------------------------------------------------------------------------
    def _batched(self, backend, params: dict, x: np.ndarray, fn, device: str = "cpu"):
        """Apply ``fn(xp, x, params_chunk)`` over chunks of draws in float64; concatenate on axis 0."""
        be = get_backend(backend)
        x = self.check_data(x, "x").astype(np.float64, copy=False)
        params = {k: np.asarray(v, dtype=np.float64) for k, v in self.point_params(params).items()}
        draw_shape = params["weights"].shape[:-1]
        flat = {k: v.reshape((-1,) + v.shape[len(draw_shape):]) for k, v in params.items()}
        num_draws = flat["weights"].shape[0]
        per_draw = x.shape[0] * self.num_components * self.data_dim
        chunk = max(1, int(8e6 // per_draw))
        out = []
        with be.precise(), be.placed(device):
            xs = be.asarray(x, "float64", device)
            for start in range(0, num_draws, chunk):
                p = {k: be.asarray(v[start:start + chunk], "float64", device) for k, v in flat.items()}
                out.append(be.to_numpy(fn(be.xp, xs, p)))
        return np.concatenate(out), draw_shape

    def log_likelihood(self, backend: str, params: dict, x: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Exact log p(x | π, μ, Σ) per example in float64, on ``device``; shape (*draw_shape, N)."""
        values, draw_shape = self._batched(backend, params, x,
                                           lambda xp, xs, p: _logsumexp(xp, self.log_joint(xp, xs, p)), device)
        return values.reshape(draw_shape + (values.shape[-1],))

    def predict_proba(self, backend: str, params: dict, x: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Posterior responsibilities p(z = k | x), shape (N, K), averaged over draws if any."""
        def resp(xp, xs, p):
            joint = self.log_joint(xp, xs, p)
            return xp.exp(joint - _logsumexp(xp, joint)[..., None]).sum(0)[None]

        values, draw_shape = self._batched(backend, params, x, resp, device)
        return values.sum(0) / max(int(np.prod(draw_shape)), 1)

    def sample(self, backend: str, params: dict, num: int, seed: int = 0, device: str = "cpu") -> np.ndarray:
        """``num`` new rows from the mixture, drawn on ``device``: (*draw_shape, num, D), or
        (num, D) for point params."""
        be = get_backend(backend)
        with be.placed(device):
            p = {k: be.asarray(np.asarray(v, dtype=np.float32), "float32", device)
                 for k, v in self.point_params(params).items()}
            cov = p[self.covariance_param]
            sites = be.trace(self._likelihood, seed, ppl=be.ppl, weights=p["weights"], locs=p["locs"], cov=cov,
                             num=num)
            return be.to_numpy(sites["x"]["value"])

    def relabel(self, posterior: dict) -> dict:
        """Undo label switching in posterior draws (chains, draws, ...): see the module docstring."""
        from scipy.optimize import linear_sum_assignment

        K = self.num_components
        if "locs" not in posterior or K == 1:
            return posterior
        locs = np.asarray(posterior["locs"], dtype=np.float64)
        shape = locs.shape[:2]
        flat = locs.reshape(-1, K, self.data_dim)
        perms = np.tile(np.arange(K), (flat.shape[0], 1))
        reference = np.median(flat[: shape[1]], axis=0)
        scale = flat.reshape(-1, self.data_dim).std(0) + 1e-12
        for _ in range(10):
            changed = False
            for i, draw in enumerate(flat):
                cost = ((((draw[:, None, :] - reference[None, :, :]) / scale) ** 2).sum(-1))  # (own k, ref j)
                rows, cols = linear_sum_assignment(cost)
                perm = np.empty(K, dtype=int)
                perm[cols] = rows                    # reference slot j takes own component perm[j]
                if not np.array_equal(perm, perms[i]):
                    perms[i], changed = perm, True
            new_ref = np.take_along_axis(flat, perms[:, :, None], 1).mean(0)
            if not changed and np.allclose(new_ref, reference):
                break
            reference = new_ref
        order = np.argsort(reference[:, 0], kind="stable")
        perms = perms[:, order].reshape(shape + (K,))
        out = dict(posterior)
        for name, value in posterior.items():
            value = np.asarray(value)
            if name in self._component_sites() and value.ndim >= 3 and value.shape[2] == K:
                index = perms.reshape(perms.shape + (1,) * (value.ndim - 3))
                out[name] = np.take_along_axis(value, index, 2)
        return out

    def _component_sites(self) -> tuple:
        sites = ("weights", "locs")
        if self.covariance != "tied":
            sites += ("scales", "scale_tril", "corr_tril")
        return sites


def _typical_scale(params: dict) -> float:
    value = params.get("scales", params.get("scale_tril"))
    return float(np.mean(np.abs(value))) if value is not None else 1.0


def _cholesky(xp, cov):
    try:
        scale = xp.linalg.cholesky(cov)
    except Exception as e:  # torch raises; numpy raises LinAlgError
        raise DataError(_SINGULAR) from e
    return scale


_SINGULAR = ("a component's covariance is not positive definite (a component collapsed onto too few "
             "points, or the data have a constant or duplicated direction): increase EM's reg_covar, "
             "use covariance='diag', or use fewer components")


def _squared_distances(xp, x, centres):
    return (x * x).sum(-1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(-1)[None, :]


def _nearest(xp, x, centres):
    return _squared_distances(xp, x, centres).argmin(-1)


def _kmeans_plus_plus(xp, x, K: int, seed: int):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007): K rows of ``x``; each new centre
    is the best (lowest total squared distance) of ``2 + ⌊log K⌋`` candidates drawn with
    probability proportional to their squared distance to the nearest centre so far."""
    rng = np.random.default_rng(seed)
    N = x.shape[0]
    trials = 2 + int(math.log(K)) if K > 1 else 1
    chosen = [int(rng.integers(N))]
    closest = np.maximum(_to_numpy(_squared_distances(xp, x, x[_rows(xp, x, chosen)])[:, 0]), 0)
    for _ in range(1, K):
        total = closest.sum()
        p = closest / total if total > 0 else np.full(N, 1.0 / N)
        candidates = rng.choice(N, size=trials, p=p)
        distances = np.maximum(_to_numpy(_squared_distances(xp, x, x[_rows(xp, x, candidates)])), 0)  # (N, trials)
        updated = np.minimum(closest[:, None], distances)
        best = int(updated.sum(0).argmin())
        chosen.append(int(candidates[best]))
        closest = updated[:, best]
    return x[_rows(xp, x, chosen)]


def _rows(xp, like, index):
    index = np.asarray(index)
    return xp.as_tensor(index, device=like.device) if _kind(xp) == "torch" else xp.asarray(index)


def _lloyd(xp, x, centres, max_iter: int = 300, tol: float = 1e-4):
    """Lloyd's k-means iterations from ``centres``; an empty cluster keeps its centre."""
    K = centres.shape[0]
    arange = xp.arange(K, **_device(xp, x))
    variance = float(_to_numpy(((x - x.mean(0)) ** 2).mean()))
    for _ in range(max_iter):
        labels = _nearest(xp, x, centres)
        onehot = _cast(xp, labels[:, None] == arange[None, :], x)
        counts = onehot.sum(0)
        sums = onehot.T @ x
        new = xp.where(counts[:, None] > 0, sums / xp.where(counts > 0, counts, 1 + 0 * counts)[:, None], centres)
        shift = float(_to_numpy(((new - centres) ** 2).sum()))
        centres = new
        if shift <= tol * variance * x.shape[1]:
            break
    return centres
