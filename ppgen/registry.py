"""One registry of model families and inference algorithms, read by ``ppgen.fit`` and the CLI."""

from __future__ import annotations

from .config import suggest
from .errors import ConfigError

__all__ = ["model_classes", "inference_classes", "resolve_model", "resolve_inference", "default_inference",
           "model_from_config",
           "inference_from_config", "working_inference", "support_table"]

_ALIASES = {"closed-form": "closed_form", "closedform": "closed_form", "ml": "closed_form",
            "mle": "closed_form"}


def model_classes() -> dict:
    """Family name -> spec class."""
    from ppgen.models import AAE, CGAN, CVAE, DDPM, GAN, GMM, HVAE, PPCA, VAE

    return {cls.family: cls for cls in (PPCA, GMM, VAE, CVAE, HVAE, DDPM, GAN, CGAN, AAE)}


def inference_classes() -> dict:
    """Inference name -> class."""
    from ppgen.inference import EM, HMC, NUTS, SVI, Adversarial, ClosedForm

    return {cls.name: cls for cls in (ClosedForm, EM, SVI, NUTS, HMC, Adversarial)}


def resolve_model(model, data_dim: int | None = None, meta: dict | None = None, **options):
    """A spec from a spec, a Program, or a family name plus options (data_dim from the data, and
    for a name, options the family reads from the data's ``meta``, e.g. a VAE's likelihood)."""
    if not isinstance(model, str):
        if options:
            raise ConfigError(f"options {sorted(options)} were given with a ready-made model {model!r}; "
                              f"set them on the spec instead (e.g. spec.replace(...))")
        return model
    classes = model_classes()
    key = model.lower().replace("-", "_")
    if key not in classes:
        raise ConfigError(f"unknown model {model!r}.{suggest(key, classes)} Known models: {sorted(classes)}")
    cls = classes[key]
    if data_dim is not None and "data_dim" not in options:
        options = dict(options, data_dim=data_dim)
    if meta:
        derived = cls.options_from_data(meta)
        if "likelihood" in options and derived.get("likelihood") != options["likelihood"]:
            derived = {}  # the user chose another likelihood; the data's levels do not apply
        options = {**derived, **options}
    return cls.from_options(options)


def resolve_inference(inference, **options):
    """An inference object from an object or a name such as "svi", "nuts", "em", "closed_form"."""
    if not isinstance(inference, str):
        if options:
            raise ConfigError(f"options {sorted(options)} were given with a ready-made {inference!r}")
        return inference
    classes = inference_classes()
    key = _ALIASES.get(inference.lower(), inference.lower().replace("-", "_"))
    if key not in classes:
        raise ConfigError(f"unknown inference {inference!r}.{suggest(key, classes)} "
                          f"Known inference: {sorted(classes)}")
    return classes[key].from_options(options)


def _from_config(config, classes: dict, what: str):
    if not isinstance(config, dict) or not isinstance(config.get("name"), str) \
            or not isinstance(config.get("options", {}), dict):
        raise ConfigError(f"a {what} config is {{'name': ..., 'options': {{...}}}}; got {config!r}")
    name = config["name"]
    if name not in classes:
        raise ConfigError(f"unknown {what} {name!r} in the config.{suggest(name, classes)} Known: {sorted(classes)}")
    return classes[name].from_options(config.get("options", {}))


def model_from_config(config: dict):
    """The spec that ``spec.to_config()`` describes, every option as it was."""
    return _from_config(config, model_classes(), "model")


def inference_from_config(config: dict):
    """The inference object that ``alg.to_config()`` describes, every option as it was (a function
    a person passed, such as a custom loss, comes back as a ``ppgen.config.CodeReference``)."""
    return _from_config(config, inference_classes(), "inference")


def default_inference(model) -> str:
    """The name of the inference a family is fitted with when none is named: ``"adversarial"`` for
    the implicit families (GAN, CGAN, AAE), else ``"svi"``."""
    return "adversarial" if "adversarial" in model.methods else "svi"


def working_inference(model) -> list[str]:
    """Names of the inference algorithms that can fit ``model``."""
    from .errors import IncompatibleInference

    names = []
    for name, cls in inference_classes().items():
        if model.refusals.get(name):
            continue
        try:
            _check_without_hint(cls(), model)
        except IncompatibleInference:
            continue
        names.append(f"inference.{cls.__name__}")
    return names


def _check_without_hint(alg, model):
    from .errors import IncompatibleInference

    if model.family == "program":
        if alg.name in ("closed_form", "em", "adversarial"):
            raise IncompatibleInference(alg.name)
        return
    needs = {"closed_form": "closed_form" in model.methods, "em": "em" in model.methods,
             "svi": bool(set(model.forms) & {"latent", "bayesian"}), "nuts": "bayesian" in model.forms,
             "hmc": "bayesian" in model.forms, "adversarial": "adversarial" in model.methods}
    if not needs.get(alg.name, True):
        raise IncompatibleInference(alg.name)


def support_table() -> list[tuple[str, str, str]]:
    """(family, inference, backends) for every pair that works — the ``ppgen models`` table."""
    from .backends import BACKENDS

    rows = []
    for family, cls in model_classes().items():
        for name, inf in inference_classes().items():
            try:
                _check_without_hint(inf(), cls)
            except Exception:
                continue
            rows.append((family, name, ", ".join(BACKENDS)))
    for name in ("svi", "nuts", "hmc"):
        rows.append(("program (your own)", name, "the Program's backend"))
    return rows
