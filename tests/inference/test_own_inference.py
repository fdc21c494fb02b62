"""The inference protocol is public: a person's own algorithm (an Inference configuration whose
``bind`` gives a Kernel over a NamedTuple state) runs in ``ppgen.fit`` like a built-in one.

The algorithm here is self-normalised importance sampling with the prior as proposal, followed
by resampling, on the conjugate model of tests/ppgen/test_program.py, so the posterior is known.
"""

import dataclasses
from typing import ClassVar, NamedTuple, Optional

import numpy as np
import pytest

import ppgen
from ppgen import inference

Y = np.random.default_rng(0).normal(1.5, 1.0, size=(40, 1)).astype(np.float32)
POST_VAR = 1.0 / (1.0 / 100.0 + len(Y))
POST_MEAN = POST_VAR * Y.sum()


class ImportanceState(NamedTuple):
    seed: int
    draws: Optional[dict] = None
    ess: float = float("nan")


class ImportanceInfo(NamedTuple):
    effective_sample_size: float


@dataclasses.dataclass(frozen=True)
class PriorImportance(inference.Inference):
    """Draws from the prior, weighs them by the likelihood and resamples ``num_draws``."""

    num_proposals: int = 20000
    num_draws: int = 2000

    name: ClassVar[str] = "prior_importance"
    title: ClassVar[str] = "PriorImportance"

    def form_for(self, model) -> str:
        if model.family != "program":
            self.refuse(model, "this example serves user programs only")
        return "user"

    def bind(self, program):
        return PriorImportanceKernel(self, program)


class PriorImportanceKernel(inference.Kernel):
    def init(self, batch, seed):
        return ImportanceState(seed=seed)

    def step(self, state, batch):
        import jax
        import numpyro.infer as ni

        model = self.program.model
        key_prior, key_resample = jax.random.split(jax.random.PRNGKey(state.seed))
        prior = ni.Predictive(model, num_samples=self.inference.num_proposals)(key_prior, x=batch["x"])
        latents = {k: v for k, v in prior.items() if k != "x"}
        log_w = sum(v.reshape(v.shape[0], -1).sum(1) for v in ni.log_likelihood(model, latents, x=batch["x"]).values())
        w = np.exp(np.asarray(log_w) - np.max(log_w))
        w /= w.sum()
        pick = np.asarray(jax.random.choice(key_resample, len(w), (self.inference.num_draws,), p=w))
        draws = {k: np.asarray(v)[pick][None] for k, v in latents.items()}  # one chain
        ess = float(1.0 / np.sum(w ** 2))
        return state._replace(draws=draws, ess=ess), ImportanceInfo(ess)

    def result(self, state, batch=None):
        return inference.Result(params={}, posterior=state.draws)


def _program():
    import numpyro
    import numpyro.distributions as dist

    def model(x):
        m = numpyro.sample("m", dist.Normal(0.0, 10.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(m, 1.0).expand(x.shape).to_event(1), obs=x)

    return ppgen.Program(model, backend="numpyro")


def test_a_persons_own_algorithm_fits_through_ppgen_fit(tmp_path):
    fit = ppgen.fit(_program(), Y, PriorImportance(), seed=3, run_dir=tmp_path / "run")
    draws = fit.posterior["m"]
    assert draws.shape == (1, 2000)
    ess = fit.history[-1]["effective_sample_size"]
    assert ess > 200  # enough proposals land near the posterior for the check below
    # resampled draws: their mean's error is about sd / sqrt(ess); 4 of those is the tolerance
    assert abs(draws.mean() - POST_MEAN) < 4 * np.sqrt(POST_VAR / ess), (draws.mean(), POST_MEAN, ess)
    assert abs(draws.std() / np.sqrt(POST_VAR) - 1) < 0.15
    assert "m" in fit.to_arviz().posterior
    ll = fit.log_likelihood(Y[:3], pointwise_draws=True)
    assert ll.shape == (2000, 3)
    # run folders keep the options, never the code: the algorithm is passed again, as the program is
    with pytest.raises(ppgen.ConfigError, match=r"pass it again: ppgen.load\(path, inference=YourAlgorithm"):
        ppgen.load(tmp_path / "run", program=_program())
    with pytest.raises(ppgen.ConfigError, match="must be the algorithm named 'prior_importance', not NUTS"):
        ppgen.load(tmp_path / "run", program=_program(), inference=inference.NUTS())
    back = ppgen.load(tmp_path / "run", program=_program(), inference=PriorImportance())
    np.testing.assert_array_equal(back.posterior["m"], draws)
    assert back.inference == PriorImportance()


def test_a_persons_own_algorithm_is_refused_where_it_says():
    from ppgen import models
    from ppgen.errors import IncompatibleInference

    with pytest.raises(IncompatibleInference, match="PriorImportance cannot fit PPCA: this example serves"):
        ppgen.fit(models.PPCA(2, 1), Y.repeat(2, 1), PriorImportance())
