"""A user's own program is first-class: SVI and NUTS fit it; answers match conjugate closed forms."""

import numpy as np
import pytest

import ppgen
from ppgen import inference

# y_i ~ N(m, 1), m ~ N(0, 10^2): posterior N(mean, var) in closed form
Y = np.random.default_rng(0).normal(1.5, 1.0, size=(40, 1)).astype(np.float32)
POST_VAR = 1.0 / (1.0 / 100.0 + len(Y))
POST_MEAN = POST_VAR * Y.sum()


def numpyro_program(with_guide: bool):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    def model(x):
        m = numpyro.sample("m", dist.Normal(0.0, 10.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(m, 1.0).expand(x.shape).to_event(1), obs=x)

    def guide(x):
        loc = numpyro.param("loc", 0.0)
        scale = numpyro.param("scale", 1.0, constraint=constraints.positive)
        numpyro.sample("m", dist.Normal(loc, scale))

    return ppgen.Program(model, guide if with_guide else None, backend="numpyro")


def pyro_program(with_guide: bool):
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.distributions import constraints

    def model(x):
        m = pyro.sample("m", dist.Normal(torch.tensor(0.0), 10.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(m, 1.0).expand([x.shape[0], 1]).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        pyro.sample("m", dist.Normal(loc, scale))

    return ppgen.Program(model, guide if with_guide else None, backend="pyro")


PROGRAMS = {"numpyro": numpyro_program, "pyro": pyro_program}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nuts_on_a_user_program(backend):
    fit = ppgen.fit(PROGRAMS[backend](False), Y, inference.NUTS(num_samples=400, num_warmup=300, num_chains=2))
    draws = fit.posterior["m"].ravel()
    assert abs(draws.mean() - POST_MEAN) < 4 * np.sqrt(POST_VAR / 200)
    assert abs(draws.var() / POST_VAR - 1) < 0.25
    ll = fit.log_likelihood(Y, pointwise_draws=True)
    assert ll.shape == (800, 40)
    m = fit.posterior["m"].ravel()[7]
    expected = -0.5 * np.log(2 * np.pi) - 0.5 * (Y[:, 0] - m) ** 2
    np.testing.assert_allclose(ll[7], expected, rtol=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("with_guide", [True, False])
def test_svi_on_a_user_program(backend, with_guide):
    fit = ppgen.fit(PROGRAMS[backend](with_guide), Y, inference.SVI(steps=1500, lr=0.05, lr_decay=0.1,
                                                                     num_samples=2000), seed=1)
    draws = fit.posterior["m"].ravel()
    assert abs(draws.mean() - POST_MEAN) < 0.05
    assert abs(draws.std() / np.sqrt(POST_VAR) - 1) < 0.2
    if with_guide:
        assert set(fit.params) == {"loc", "scale"}
        assert abs(float(fit.params["loc"]) - POST_MEAN) < 0.05


def test_program_validation():
    with pytest.raises(ppgen.ConfigError, match="must be a function"):
        ppgen.Program(3, backend="pyro")
    with pytest.raises(ppgen.ConfigError, match="backend='torch'"):
        ppgen.Program(lambda x: None, backend="torch")
    with pytest.raises(ppgen.ConfigError, match="is a guide of ppgen's model families"):
        ppgen.fit(numpyro_program(False), Y, inference.SVI(guide="amortized"))
