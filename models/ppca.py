r"""Probabilistic PCA (Tipping & Bishop, 1999).

The model (course notes 004):

.. math::

    z_n \sim \mathcal N(0, I_K), \qquad x_n \mid z_n \sim \mathcal N(W z_n + \mu, \sigma^2 I_D),

so that, with :math:`z` integrated out, :math:`x_n \sim \mathcal N(\mu, C)` with
:math:`C = W W^\top + \sigma^2 I_D`. The log-likelihood of :math:`N` rows depends on the data
only through their mean :math:`\bar x` and covariance :math:`S`:

.. math::

    \log p(X) = -\tfrac N2 \big[D \log 2\pi + \log|C| + \operatorname{tr}(C^{-1} S_\mu)\big],
    \quad S_\mu = S + (\bar x - \mu)(\bar x - \mu)^\top .

Maximum likelihood has a closed form: :math:`\mu = \bar x`, and with :math:`S = U \Lambda
U^\top` (eigenvalues in decreasing order), :math:`\sigma^2 = \frac1{D-K}\sum_{j>K}\lambda_j`,
:math:`W = U_K(\Lambda_K - \sigma^2 I)^{1/2} R` for any rotation :math:`R` (ppgen takes
:math:`R = I`). EM (Tipping & Bishop, eqs. 29–30) in its sufficient-statistics form, with
:math:`M = W^\top W + \sigma^2 I`:

.. math::

    \tilde W = S W (\sigma^2 I + M^{-1} W^\top S W)^{-1}, \qquad
    \tilde\sigma^2 = \tfrac1D \operatorname{tr}(S - S W M^{-1} \tilde W^\top).

Sites, identical in both backends: ``z`` (per-example latent), ``x`` (data), and the
parameters ``W``, ``mu``, ``sigma``. The Bayesian form puts priors on them and identifies
``W`` by making it lower-triangular with a positive diagonal (Geweke & Zhou, 1996): sample
sites ``W_diag`` (half-normal) and ``W_lower`` (normal), deterministic site ``W``; which K
features carry the triangle is the spec's ``identification``.

Example:
    >>> import ppgen
    >>> from ppgen import datasets, models, inference
    >>> data = datasets.load("digits")
    >>> fit = ppgen.fit(models.PPCA(data_dim=64, latent_dim=8), data, "closed_form")
    >>> fit.log_likelihood(data.test).mean()

References:
    Tipping, M. E. & Bishop, C. M. (1999). Probabilistic principal component analysis.
    JRSS B 61(3). Geweke, J. & Zhou, G. (1996). Measuring the pricing error of the arbitrage
    pricing theory. Review of Financial Studies 9(2).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import DataError
from ppgen.program import BuiltProgram, ModelSpec

__all__ = ["PPCA"]


def _device(xp, like) -> dict:
    """``device=`` keyword for torch factories (jax.numpy places arrays by default)."""
    return {"device": like.device} if xp.__name__ == "torch" else {}


class _NumpyNamespace:
    """numpy under the array-namespace names the closed form uses (for MCMC start values)."""

    __name__ = "numpy"
    linalg = np.linalg
    sqrt = staticmethod(np.sqrt)
    where = staticmethod(np.where)


@dataclasses.dataclass(frozen=True)
class PPCA(ModelSpec):
    """Probabilistic PCA: x = W z + μ + σ ε with z ~ N(0, I_K), ε ~ N(0, I_D).

    Args:
        data_dim: D, the number of values per example (images are flattened).
        latent_dim: K, the number of principal directions; 1 ≤ K < D.
        w_prior_scale: prior scale of the entries of W (Bayesian fits only).
        mu_prior_scale: prior scale of μ (Bayesian fits only).
        sigma_prior_scale: scale of the half-normal prior on σ (Bayesian fits only).
        identification: how the Bayesian form makes W identifiable: ``"first"`` makes rows
            0..K-1 lower-triangular with a positive diagonal; ``"pivoted"`` (default) does the
            same for the K best-conditioned features of the maximum-likelihood W, which avoids
            diagonal entries near zero (e.g. the constant border pixels of the digits).

    The priors assume data of order one (as the ``unit`` or ``symmetric`` views are); rescale
    other data or widen the priors.
    """

    data_dim: int
    latent_dim: int = 2
    w_prior_scale: float = 1.0
    mu_prior_scale: float = 5.0
    sigma_prior_scale: float = 1.0
    identification: Literal["pivoted", "first"] = "pivoted"

    family: ClassVar[str] = "ppca"
    forms: ClassVar[tuple] = ("marginal", "latent", "bayesian")
    methods: ClassVar[tuple] = ("closed_form", "em")
    local_guides: ClassVar[tuple] = ("amortized", "per_example")
    capabilities: ClassVar[frozenset] = frozenset({"sample", "log_likelihood"})

    def _validate(self):
        self._require(self.data_dim >= 2, f"data_dim must be at least 2; got {self.data_dim}")
        self._require(self.latent_dim >= 1, f"latent_dim must be at least 1; got {self.latent_dim}")
        self._require(
            self.latent_dim < self.data_dim,
            f"latent_dim={self.latent_dim} must be smaller than data_dim={self.data_dim} "
            f"(PPCA explains D values with K < D directions); choose latent_dim <= {self.data_dim - 1}")
        for name in ("w_prior_scale", "mu_prior_scale", "sigma_prior_scale"):
            value = getattr(self, name)
            self._require(value > 0 and math.isfinite(value), f"{name} must be positive; got {value}")

    # ---- data -------------------------------------------------------------------------
    def check_data(self, x, what: str = "data") -> np.ndarray:
        from ppgen.datasets import check_finite

        x = self._rows(x, what)
        x = x if x.dtype == np.float64 else x.astype(np.float32, copy=False)  # float64 stays exact
        return check_finite(x, what)

    def check_training_data(self, x: np.ndarray) -> None:
        """Refuse data whose maximum-likelihood fit is degenerate: centred rows that span K or
        fewer dimensions leave no variance for the noise, so σ → 0 and log p(x) → ∞ (N ≤ K + 1
        rows, identical rows, rows on a K-dimensional plane)."""
        rows = np.asarray(x, dtype=np.float64)
        span = int(np.linalg.matrix_rank(rows - rows.mean(0))) if rows.shape[0] > 1 else 0
        if span <= self.latent_dim:
            distinct = np.unique(rows, axis=0).shape[0]
            raise DataError(f"the {rows.shape[0]} training rows ({distinct} distinct) span only {span} dimension(s) "
                            f"around their mean, and latent_dim={self.latent_dim} would take them all: the noise "
                            f"σ of the maximum-likelihood fit would be 0 and its log-likelihood infinite. Use more "
                            f"(and varied) data{f', latent_dim < {span}' if span > 1 else ''}, or a posterior "
                            f"(inference.NUTS), whose priors keep σ away from 0")

    def param_names(self, form: str) -> tuple:
        return ("W", "mu", "sigma")

    def param_shapes(self) -> dict:
        return {"W": (self.data_dim, self.latent_dim), "mu": (self.data_dim,), "sigma": ()}

    # ---- closed form and EM (written over an array namespace: torch or jax.numpy) -------
    @staticmethod
    def _moments(xp, x):
        mean = x.mean(0)
        centred = x - mean
        return mean, centred.T @ centred / x.shape[0]

    def closed_form(self, xp, x) -> dict:
        """Maximum-likelihood W, μ, σ (Tipping & Bishop 1999, eqs. 7–8) from data ``x``."""
        K, D = self.latent_dim, self.data_dim
        mu, S = self._moments(xp, x)
        eigenvalues, eigenvectors = xp.linalg.eigh(S)          # ascending
        order = np.arange(D - 1, D - K - 1, -1)
        top_values, top_vectors = eigenvalues[order], eigenvectors[:, order]
        sigma2 = eigenvalues[: D - K].sum() / (D - K)
        excess = top_values - sigma2
        W = top_vectors * xp.sqrt(xp.where(excess > 0, excess, 0 * excess))
        return {"W": W, "mu": mu, "sigma": xp.sqrt(sigma2)}

    def em_data(self, xp, x):
        """What EM iterates on: the mean and covariance of the data (PPCA's sufficient statistics)."""
        return self._moments(xp, x)

    def em_init(self, xp, x, seed: int, init="auto", reg_covar: float = 0.0) -> dict:
        """Starting point of EM: μ = mean, W random with the data's scale, σ² = mean variance
        (``init`` "auto" or "random"), or given parameters (a dict with W, mu, sigma)."""
        mu, S = self._moments(xp, x)
        if isinstance(init, dict):
            missing = sorted({"W", "mu", "sigma"} - set(init))
            if missing:
                from ppgen.errors import ConfigError

                raise ConfigError(f"EM(init_params=...) for PPCA is missing {missing}; give W, mu and sigma")
            return {k: xp.asarray(np.asarray(init[k], dtype=np.float64), dtype=x.dtype, **_device(xp, x))
                    for k in ("W", "mu", "sigma")}
        if init not in ("auto", "random"):
            from ppgen.errors import ConfigError

            raise ConfigError(f"EM(init_params={init!r}) does not apply to PPCA; use 'random' (the default) "
                              f"or a dict with W, mu and sigma")
        scale = float(xp.sqrt(xp.trace(S) / self.data_dim))
        W0 = np.random.default_rng(seed).normal(0, scale, (self.data_dim, self.latent_dim))
        W = xp.asarray(W0, dtype=x.dtype, **_device(xp, x))
        return {"W": W, "mu": mu, "sigma": xp.sqrt(xp.trace(S) / self.data_dim)}

    def em_step(self, xp, stats, params: dict, reg_covar: float = 0.0):
        """One EM iteration on ``stats = em_data(x)``; returns (new params, mean log-likelihood
        of the old params)."""
        mu, S = stats
        W, sigma2 = params["W"], params["sigma"] ** 2
        K = self.latent_dim
        eye = xp.eye(K, dtype=S.dtype, **_device(xp, S))
        M = W.T @ W + sigma2 * eye
        M_inv = xp.linalg.inv(M)
        SW = S @ W
        mean_log_likelihood = self._mean_log_likelihood(xp, S, W, sigma2, M, M_inv)
        W_new = SW @ xp.linalg.inv(sigma2 * eye + M_inv @ W.T @ SW)
        sigma2_new = xp.trace(S - SW @ M_inv @ W_new.T) / self.data_dim
        return {"W": W_new, "mu": mu, "sigma": xp.sqrt(sigma2_new)}, mean_log_likelihood

    def num_parameters(self) -> int:
        """Free parameters (W up to rotation, μ, σ), for BIC and AIC."""
        D, K = self.data_dim, self.latent_dim
        return D * K - K * (K - 1) // 2 + D + 1

    def _mean_log_likelihood(self, xp, S, W, sigma2, M, M_inv):
        # log|C| = (D-K) log σ² + log|M|;  C^{-1} = (I - W M^{-1} W^T) / σ²  (Woodbury)
        D, K = self.data_dim, self.latent_dim
        logdet_C = (D - K) * xp.log(sigma2) + xp.linalg.slogdet(M)[1]
        trace_Cinv_S = (xp.trace(S) - xp.trace(M_inv @ (W.T @ S @ W))) / sigma2
        return -0.5 * (D * math.log(2 * math.pi) + logdet_C + trace_Cinv_S)

    # ---- programs (one definition, both backends, via the backend's `ppl` facade) ------
    def _likelihood(self, ppl, W, mu, sigma, x=None, num_data=None, index=None, num=None):
        """Observation site ``x`` with z integrated out: x ~ N(μ, W Wᵀ + σ² I).

        Parameters may carry leading batch dimensions (posterior draws)."""
        n = x.shape[0] if x is not None else num
        d = self._marginal(ppl, W, mu, sigma)
        with ppl.plate("data", num_data or n, index=index, subsample_size=n, dim=-1):
            return ppl.sample("x", d, obs=x)

    def _woodbury_log_density(self, xp, W, mu, sigma, x):
        """log N(x | μ_s, W_s W_sᵀ + σ_s² I) for draws s and rows n, shape (S, N).

        The Woodbury identity makes it O(S N D K): C⁻¹ = (I − W M⁻¹ Wᵀ)/σ² and
        log|C| = (D−K) log σ² + log|M| with M = WᵀW + σ²I. (The frameworks' own low-rank
        Gaussians broadcast to one K×K system per (draw, example) pair, 100× slower here.)"""
        D, K = self.data_dim, self.latent_dim
        sigma2 = sigma**2
        M = xp.swapaxes(W, -1, -2) @ W + sigma2[:, None, None] * xp.eye(K, dtype=x.dtype, **_device(xp, x))
        # (x − μ)ᵀ(x − μ) and (x − μ)ᵀW without forming the (S, N, D) residuals
        squared = (x * x).sum(-1)[None, :] - 2 * (mu @ x.T) + (mu * mu).sum(-1)[:, None]   # (S, N)
        projection = x @ W - mu[:, None, :] @ W                                            # (S, N, K)
        solved = xp.swapaxes(xp.linalg.solve(M, xp.swapaxes(projection, -1, -2)), -1, -2)
        quadratic = (squared - (projection * solved).sum(-1)) / sigma2[:, None]
        logdet = (D - K) * xp.log(sigma2) + xp.linalg.slogdet(M)[1]
        return -0.5 * (D * math.log(2 * math.pi) + logdet[:, None] + quadratic)

    def _marginal(self, ppl, W, mu, sigma):
        """N(μ, W Wᵀ + σ² I) as a low-rank Gaussian, batch shape (*draw_shape, 1)."""
        cov_diag = (sigma**2)[..., None] * ppl.ones((self.data_dim,), like=mu)
        return ppl.dist.LowRankMultivariateNormal(mu[..., None, :], W[..., None, :, :], cov_diag[..., None, :])

    def _leaders(self, data: np.ndarray) -> np.ndarray:
        """The K features that anchor the triangular W of the Bayesian form.

        ``identification="first"`` takes features 0..K-1 (classic lower-triangular W).
        ``"pivoted"`` picks K features on which the maximum-likelihood W is best conditioned
        (QR with column pivoting of Wᵀ), so that no diagonal entry sits near zero, where the
        posterior would pile up against the positivity constraint and mix badly."""
        if self.identification == "first":
            return np.arange(self.latent_dim)
        import scipy.linalg

        x = np.asarray(data, dtype=np.float64)
        with np.errstate(all="ignore"):
            cov = np.cov(x.T, bias=True)
        values, vectors = np.linalg.eigh(cov)
        W = vectors[:, ::-1][:, : self.latent_dim] * np.sqrt(np.maximum(values[::-1][: self.latent_dim], 0))
        _, _, pivots = scipy.linalg.qr(W.T, pivoting=True)
        return np.asarray(pivots[: self.latent_dim])

    def _identified_start(self, data, leaders, index, seed: int) -> dict:
        """A starting point for MCMC: the ML estimate rotated into the identified frame.

        With W' = W Q (Q orthogonal) chosen so that W'[leaders] is lower-triangular with a
        positive diagonal, W'W'ᵀ = WWᵀ: the same likelihood, in the basin of the identified
        mode. Starting elsewhere, a chain can stall at a reflected copy of the mode, pinned
        against W_diag > 0. A 5% jitter per chain keeps the chains' starts distinct."""
        x = np.asarray(data, dtype=np.float64)
        ml = {k: np.asarray(v) for k, v in self.closed_form(_NumpyNamespace, x).items()}
        W = ml["W"]
        q, _ = np.linalg.qr(W[leaders].T)
        W = W @ q
        W = W * np.where(np.diag(W[leaders]) < 0, -1.0, 1.0)
        rng = np.random.default_rng(seed)
        W = W * (1 + 0.05 * rng.standard_normal(W.shape))
        diag = np.abs(np.diag(W[leaders])) + 1e-3
        lower = np.zeros(int(index.max()) - self.latent_dim)
        free = index > self.latent_dim
        lower[index[free] - 1 - self.latent_dim] = W[free]
        return {"W_diag": diag, "W_lower": lower,
                "mu": ml["mu"] + 0.05 * ml["sigma"] * rng.standard_normal(self.data_dim),
                "sigma": np.asarray(ml["sigma"] * (1 + 0.05 * rng.standard_normal()))}

    def _triangular_index(self, leaders: np.ndarray):
        """Index of each entry of W in the vector [0, W_diag (K), W_lower (rest)].

        Row ``leaders[j]`` has free entries in columns 0..j-1, a positive diagonal entry in
        column j and zeros after it; every other row is free."""
        D, K = self.data_dim, self.latent_dim
        index = np.zeros((D, K), dtype=np.int64)
        free = 1 + K
        rank = {int(row): j for j, row in enumerate(leaders)}
        for i in range(D):
            width = rank[i] if i in rank else K
            for j in range(width):
                index[i, j] = free
                free += 1
            if i in rank:
                index[i, rank[i]] = 1 + rank[i]
        return index, free - 1 - K

    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None,
              seed: int = 0, device: str = "cpu") -> BuiltProgram:
        be = get_backend(backend)
        ppl = be.ppl
        D, K, N = self.data_dim, self.latent_dim, data.shape[0]
        if form != "bayesian":
            self.check_training_data(data)
        rng = np.random.default_rng(seed)
        data_scale = float(data.std()) or 1.0
        init = {
            "W": rng.normal(0, 0.1 * data_scale, (D, K)),
            "mu": data.mean(0),
            "sigma": np.asarray(data_scale),
            "encoder_weight": rng.normal(0, 0.01, (K, D)),
            "encoder_bias": np.zeros(K),
            "encoder_scale": np.full(K, 0.1),
            "z_loc": np.zeros((N, K)),
            "z_scale": np.full((N, K), 0.1),
        }
        positive = ppl.constraints.positive

        def points(like):
            W = ppl.param("W", ppl.constant(init["W"], like))
            mu = ppl.param("mu", ppl.constant(init["mu"], like))
            sigma = ppl.param("sigma", ppl.constant(init["sigma"], like), constraint=positive)
            return W, mu, sigma

        def marginal_model(x, index=None, num_data=None):
            W, mu, sigma = points(x)
            self._likelihood(ppl, W, mu, sigma, x=x, num_data=num_data, index=index)

        def latent_model(x, index=None, num_data=None):
            W, mu, sigma = points(x)
            with ppl.plate("data", num_data or x.shape[0], index=index, subsample_size=x.shape[0]):
                z = ppl.sample("z", ppl.dist.Normal(ppl.zeros((x.shape[0], K), like=x), 1.0).to_event(1))
                ppl.sample("x", ppl.dist.Normal(z @ W.T + mu, sigma).to_event(1), obs=x)

        def amortized_guide(x, index=None, num_data=None):
            # q(z|x) = N(A x + b, diag(s)^2): linear like the exact posterior, whose mean is
            # M^{-1} Wᵀ(x - μ); diagonal covariance is exact at the ML solution with
            # orthogonal columns of W (the one the closed form returns).
            A = ppl.param("encoder_weight", ppl.constant(init["encoder_weight"], x))
            b = ppl.param("encoder_bias", ppl.constant(init["encoder_bias"], x))
            s = ppl.param("encoder_scale", ppl.constant(init["encoder_scale"], x), constraint=positive)
            with ppl.plate("data", num_data or x.shape[0], index=index, subsample_size=x.shape[0]):
                ppl.sample("z", ppl.dist.Normal(x @ A.T + b, s).to_event(1))

        def per_example_guide(x, index=None, num_data=None):
            loc = ppl.param("z_loc", ppl.constant(init["z_loc"], x))
            scale = ppl.param("z_scale", ppl.constant(init["z_scale"], x), constraint=positive)
            with ppl.plate("data", num_data or x.shape[0], index=index, subsample_size=x.shape[0]):
                ppl.sample("z", ppl.dist.Normal(loc[index], scale[index]).to_event(1))

        lower_index, num_lower = self._triangular_index(self._leaders(data)) if form == "bayesian" else (None, 0)

        def bayesian_model(x, index=None, num_data=None):
            w = self.w_prior_scale
            W_diag = ppl.sample("W_diag", ppl.dist.HalfNormal(w * ppl.ones((K,), like=x)).to_event(1))
            W_lower = ppl.sample(
                "W_lower", ppl.dist.Normal(ppl.zeros((num_lower,), like=x), w).to_event(1))
            flat = ppl.xp.concatenate([ppl.zeros((1,), like=x), W_diag, W_lower])
            W = ppl.deterministic("W", flat[ppl.index(lower_index, like=x)])
            mu = ppl.sample(
                "mu", ppl.dist.Normal(ppl.zeros((D,), like=x), self.mu_prior_scale).to_event(1))
            sigma = ppl.sample("sigma", ppl.dist.HalfNormal(ppl.constant(self.sigma_prior_scale, x)))
            self._likelihood(ppl, W, mu, sigma, x=x, num_data=num_data, index=index)

        if form == "marginal":
            return BuiltProgram(backend, marginal_model, None, form, self, N)
        if form == "latent":
            guides = {"amortized": amortized_guide, "per_example": per_example_guide}
            return BuiltProgram(backend, latent_model, guides[guide or "amortized"], form, self, N)
        if form == "bayesian":
            leaders = self._leaders(data)

            def init_values(chain: int) -> dict:
                return self._identified_start(data, leaders, lower_index, seed * 1000 + chain)

            return BuiltProgram(backend, bayesian_model, None, form, self, N, init_values=init_values)
        raise ValueError(f"PPCA has no form {form!r}; it has {self.forms}")

    # ---- evaluation ----------------------------------------------------------------------
    def point_params(self, draws: dict) -> dict:
        """The likelihood's parameters (W, mu, sigma) from a fit's params or posterior draws."""
        return {k: draws[k] for k in ("W", "mu", "sigma")}

    def log_likelihood(self, backend: str, params: dict, x: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Exact log p(x | W, μ, σ) per example, in float64, computed on ``device``; params may
        have leading draw axes.

        Returns an array of shape (*draw_shape, N)."""
        be = get_backend(backend)
        x = self.check_data(x, "x").astype(np.float64, copy=False)
        params = {k: np.asarray(v, dtype=np.float64) for k, v in self.point_params(params).items()}
        draw_shape = params["sigma"].shape
        flat = {k: v.reshape((-1,) + v.shape[len(draw_shape):]) for k, v in params.items()}
        num_draws = flat["sigma"].shape[0]
        chunk = max(1, int(4e6 // (np.asarray(x).shape[0] * self.latent_dim)))  # bound memory
        out = []
        with be.precise(), be.placed(device):
            xs = be.asarray(np.asarray(x, dtype=np.float64), "float64", device)
            for start in range(0, num_draws, chunk):
                p = {k: be.asarray(v[start:start + chunk], "float64", device) for k, v in flat.items()}
                out.append(be.to_numpy(self._woodbury_log_density(be.xp, p["W"], p["mu"], p["sigma"], xs)))
        return np.concatenate(out).reshape(draw_shape + (xs.shape[0],))

    def sample(self, backend: str, params: dict, num: int, seed: int = 0, device: str = "cpu") -> np.ndarray:
        """Draw ``num`` new rows from p(x | W, μ, σ) on ``device``: shape (*draw_shape, num, D)
        when the params carry leading draw axes, else (num, D)."""
        be = get_backend(backend)
        with be.placed(device):
            p = {k: be.asarray(np.asarray(v, dtype=np.float32), "float32", device)
                 for k, v in self.point_params(params).items()}
            return be.to_numpy(be.trace(self._likelihood, seed, ppl=be.ppl, num=num, **p)["x"]["value"])
