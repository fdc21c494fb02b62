"""Inference.plan: what a fit is, settled once (form, model-dependent settings, guide, build
options, the loop's sizes), and the declared parts of the protocol the fit loop reads
(learning_rate_options, finished)."""

import math
from typing import NamedTuple

import pytest

from ppgen import inference, models
from ppgen.errors import IncompatibleInference
from ppgen.inference.base import Plan
from ppgen.inference.em import EMInfo


def test_svi_plan_of_a_vae_by_epochs():
    spec = models.VAE(64, latent_dim=2, hidden_dims=(8,))
    plan = inference.SVI(epochs=3, batch_size=64).plan(spec, 1000)
    assert isinstance(plan, Plan)
    assert plan.form == "latent" and plan.guide == spec.local_guides[0] and plan.build_options == {}
    assert plan.batch_size == 64 and plan.steps_per_epoch == math.ceil(1000 / 64) == 16
    assert plan.num_steps == 3 * 16 and plan.num_epochs == 3
    assert plan.num_data == 1000 and plan.inference == inference.SVI(epochs=3, batch_size=64)


def test_full_batch_plan_and_a_batch_larger_than_the_data():
    plan = inference.ClosedForm().plan(models.PPCA(5, 2), 40)
    assert (plan.form, plan.guide, plan.batch_size, plan.num_steps, plan.steps_per_epoch) == ("marginal", None, 40, 1, 1)
    plan = inference.SVI(steps=7, batch_size=500).plan(models.PPCA(5, 2), 40)
    assert plan.batch_size == 40 and plan.steps_per_epoch == 1 and plan.num_steps == 7 and plan.num_epochs == 7


def test_adversarial_plan_holds_the_resolved_settings():
    """The plan's inference has the model's defaults filled in (the run's config records them),
    and its batch holds the critic's k minibatches."""
    alg = inference.Adversarial(batch_size=32, epochs=2)
    plan = alg.plan(models.GAN(2), 1000)
    resolved = alg.resolve_for(models.GAN(2))
    assert plan.inference == resolved and plan.inference.loss is not None and plan.form == "implicit"
    assert plan.batch_size == 32 * resolved.critic_steps
    assert plan.num_steps == 2 * plan.steps_per_epoch == 2 * math.ceil(1000 / plan.batch_size)


def test_plan_refuses_a_mismatch_naming_what_works():
    with pytest.raises(IncompatibleInference, match="SVI"):
        inference.NUTS().plan(models.VAE(64, latent_dim=2), 100)


def test_learning_rate_options_and_finished():
    assert inference.SVI().learning_rate_options() == ("lr",)
    assert inference.Adversarial().learning_rate_options() == ("lr_generator", "lr_discriminator")
    assert inference.NUTS().learning_rate_options() == () and inference.EM().learning_rate_options() == ()
    em = inference.EM()
    assert em.finished(EMInfo(-1.0, 0.0, True, 0, True))
    assert not em.finished(EMInfo(-1.0, 0.5, False, 0, False))
    assert not em.finished(EMInfo(-1.0, 0.0, True, 0, False))  # a restart converged, another one follows

    class Info(NamedTuple):
        loss: float

    assert not inference.SVI().finished(Info(1.0))  # an info without done: the loop runs all its steps
