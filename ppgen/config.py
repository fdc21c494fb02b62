"""Typed, frozen, validated configuration objects: model specs and inference objects.

Every hyperparameter is a dataclass field with a type. ``Literal`` fields are checked against
their choices, numbers against their types, and each class adds its own checks in
``_validate``. ``to_config``/``from_config`` give the JSON form a run folder stores, and the CLI
builds one ``--flag`` per field from the same type hints.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from .errors import ConfigError

__all__ = ["Config", "CodeReference", "field_specs", "suggest", "register_option_object", "NameOrObject"]

#: a field holding a name (a string, a ``--flag`` on the command line) or, from Python, an object
#: (a loss); the class's ``_validate`` checks the object
NameOrObject = Annotated[str, "name or object"]

#: how an option that is itself a configuration object (a loss) comes back from JSON: its
#: class's ``option_tag`` -> ``decode(name, options)`` (registered by the module that defines them)
_OPTION_OBJECTS: dict = {}


def register_option_object(tag: str, decode) -> None:
    """Let options tagged ``tag`` in a run's JSON (``{tag: name, "options": {...}}``, written for
    a Config whose class has ``option_tag = tag``) come back as ``decode(name, options)``."""
    _OPTION_OBJECTS[tag] = decode


def suggest(name: str, choices) -> str:
    """' Did you mean X?' when ``name`` is close to one of ``choices``, else ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _strip_optional(tp):
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def field_specs(cls) -> list[tuple[str, Any, bool, Any]]:
    """(name, base type, optional?, default) for each public field of a Config class."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_") or not f.init:
            continue
        tp, optional = _strip_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        out.append((f.name, tp, optional, default))
    return out


def _object_fields(cls) -> frozenset:
    """Names of the fields of ``cls`` typed :data:`NameOrObject` (or Optional of it)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = set()
    for name, hint in hints.items():
        args = get_args(hint) if get_origin(hint) is Union else (hint,)
        if any(get_origin(a) is Annotated and "name or object" in a.__metadata__ for a in args):
            out.add(name)
    return frozenset(out)


def _check_value(owner: str, name: str, tp, optional: bool, value):
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{owner}.{name} must be set; got None")
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{owner}.{name}={value!r} is not one of {list(choices)}.{suggest(value, choices)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{owner}.{name} must be True or False; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{owner}.{name} must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}.{name} must be a number; got {value!r}")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{owner}.{name} must be a string; got {value!r}")
    if tp is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not float(v).is_integer() for v in value):
            raise ConfigError(f"{owner}.{name} must be a sequence of integers such as (256, 256); "
                              f"got {value!r}")
        return tuple(int(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class CodeReference:
    """What a run folder keeps of a function a person passed as an option (a custom loss, say):
    its name. Code is never stored, so a loaded run holds this record in its place; calling it
    says how to bring the function back (``ppgen.load(path, inference=...)``)."""

    name: str

    def __call__(self, *args, **kwargs):
        raise ConfigError(f"this run used the function {self.name!r}, and run folders never store code; pass "
                          f"the object that holds it again, e.g. ppgen.load(path, inference=SVI(elbo={self.name}, "
                          f"...)), or fit anew")

    def __repr__(self):
        return f"CodeReference({self.name!r})"


def _to_json(value):
    from .networks import Network

    if isinstance(value, Network):
        return {"network": value.describe()}
    if isinstance(value, CodeReference):
        return {"callable": value.name}
    if isinstance(value, Config) and type(value).option_tag:  # a loss object: its name and options
        return {type(value).option_tag: value.name,
                "options": {fname: _to_json(getattr(value, fname)) for fname, *_ in field_specs(type(value))}}
    if callable(value) and not isinstance(value, (int, float, str, bool)):
        name = getattr(value, "name", None)  # a loss object's own name
        return {"callable": getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
                or (name if isinstance(name, str) else None) or type(value).__name__}
    return list(value) if isinstance(value, tuple) else value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"callable"}:
        return CodeReference(str(value["callable"]))
    if isinstance(value, dict) and set(value) == {"network"}:
        from .networks import NetworkReference

        return NetworkReference(str(value["network"]))
    if isinstance(value, dict) and len(value) == 2 and "options" in value:
        (tag,) = set(value) - {"options"}
        if tag in _OPTION_OBJECTS:
            return _OPTION_OBJECTS[tag](str(value[tag]), value["options"])
    return value


class _Checked(type):
    """Refuses unknown keyword arguments with the options a class has (and the likely one meant),
    before the dataclass's own ``__init__`` would raise a bare TypeError."""

    def __call__(cls, *args, **kwargs):
        if dataclasses.is_dataclass(cls):
            known = [f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
            unknown = [k for k in kwargs if k not in known]
            if unknown:
                raise ConfigError(f"{cls.__name__} has no option {unknown[0]!r}.{suggest(unknown[0], known)} "
                                  f"Its options are: {sorted(known)}")
        return super().__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Config(metaclass=_Checked):
    """Base of model specs and inference objects (frozen dataclasses validated on construction)."""

    kind: ClassVar[str] = "config"   # "model" or "inference"
    name: ClassVar[str] = "config"   # registry name, e.g. "ppca", "nuts"
    #: set (e.g. "loss") for objects that are options of other objects: a run's JSON records
    #: them as ``{option_tag: name, "options": {...}}`` (see :func:`register_option_object`)
    option_tag: ClassVar[str] = ""

    def __post_init__(self):
        owner = type(self).__name__
        objects = _object_fields(type(self))
        for fname, tp, optional, _ in field_specs(type(self)):
            if fname in objects and not isinstance(getattr(self, fname), (str, type(None))):
                continue
            value = _check_value(owner, fname, tp, optional, getattr(self, fname))
            object.__setattr__(self, fname, value)
        self._validate()

    def _validate(self) -> None:
        """Class-specific checks; raise ConfigError naming the value and the fix."""

    def _require(self, condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(f"{type(self).__name__}: {message}")

    def to_config(self) -> dict:
        """JSON-ready dict: ``{"name": ..., "options": {...}}`` that ``from_config`` inverts."""
        options = {fname: _to_json(getattr(self, fname)) for fname, *_ in field_specs(type(self))}
        return {"kind": self.kind, "name": self.name, "options": options}

    @classmethod
    def from_options(cls, options: dict):
        """The object from its options, as ``to_config`` wrote them (a function option comes back
        as a :class:`CodeReference`)."""
        known = {f[0] for f in field_specs(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no option {unknown[0]!r}.{suggest(unknown[0], known)} "
                f"Its options are: {sorted(known)}")
        return cls(**{k: _from_json(v) for k, v in options.items()})

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
