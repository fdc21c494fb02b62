"""ppgen: deep generative models as probabilistic programs (Pyro and NumPyro).

Declare a model, fit it with an inference algorithm you can swap, inspect the result::

    import ppgen
    from ppgen import datasets, models, inference

    data = datasets.load("digits")
    fit = ppgen.fit(models.PPCA(data_dim=64, latent_dim=8), data, inference.NUTS(), backend="numpyro")
    fit.log_likelihood(data.test); fit.sample(16); fit.to_arviz(); fit.save("runs/ppca")
"""

__version__ = "0.1.0"

from . import datasets  # noqa: E402
from .errors import (CheckpointError, ConfigError, DataError, Diverged,  # noqa: E402
                     IncompatibleInference, PPGenError)
from .fit import EarlyStopping, Fit, StepEvent, compare, fit, load  # noqa: E402
from .program import ModelSpec, Program  # noqa: E402
from . import arviz, inference, metrics, models, networks  # noqa: E402  (ppgen.arviz imports arviz lazily)

__all__ = ["fit", "load", "compare", "Fit", "EarlyStopping", "StepEvent", "Program", "ModelSpec", "datasets",
           "models", "inference", "arviz", "metrics", "networks", "PPGenError", "ConfigError", "DataError", "IncompatibleInference",
           "CheckpointError", "Diverged", "__version__"]
