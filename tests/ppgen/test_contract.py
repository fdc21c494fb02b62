"""The family contract (ppgen.program.ModelSpec): declared capabilities match the methods."""

import dataclasses
from typing import ClassVar

import pytest

import models
from ppgen.errors import ConfigError
from ppgen.program import CAPABILITIES, ModelSpec
from ppgen.registry import model_classes


def test_every_family_declares_exactly_what_it_defines():
    for name, cls in model_classes().items():
        for capability in CAPABILITIES:
            defined = getattr(cls, capability) is not getattr(ModelSpec, capability)
            assert defined == (capability in cls.capabilities), (name, capability)


def test_a_family_that_defines_an_undeclared_capability_is_refused_at_definition():
    with pytest.raises(TypeError, match="defines encode.*does not list"):
        @dataclasses.dataclass(frozen=True)
        class Quiet(ModelSpec):
            def encode(self, backend, params, x):
                return x

    with pytest.raises(TypeError, match="lacks sample.*lists"):
        @dataclasses.dataclass(frozen=True)
        class Boastful(ModelSpec):
            capabilities: ClassVar[frozenset] = frozenset({"sample"})

    with pytest.raises(TypeError, match="not among"):
        @dataclasses.dataclass(frozen=True)
        class Unknown(ModelSpec):
            capabilities: ClassVar[frozenset] = frozenset({"teleport"})


def test_a_missing_capability_is_refused_naming_the_families_that_have_it():
    spec = models.PPCA(4)
    assert spec.supports("sample") and not spec.supports("encode")
    with pytest.raises(ConfigError, match="PPCA has no encode.*aae, cvae, hvae, vae"):
        spec.encode("pyro", {}, None)
    with pytest.raises(ConfigError, match="GAN has no log_likelihood: it is an implicit model"):
        models.GAN(4).log_likelihood("pyro", {}, None)
    with pytest.raises(ConfigError, match="unknown capability 'teleport'"):
        spec.supports("teleport")
