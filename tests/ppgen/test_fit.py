"""The fit loop: minibatches, early stopping, callbacks, checkpoints, resume, divergence."""

import importlib
import json

import numpy as np
import pytest

import ppgen
from ppgen import checkpoint, datasets, inference, models
from ppgen.errors import CheckpointError, ConfigError, DataError, Diverged, IncompatibleInference

BACKENDS = ["pyro", "numpyro"]


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.5, (6, 2))
    def draw(n):
        return (rng.normal(size=(n, 2)) @ W.T + 0.2 * rng.normal(size=(n, 6))).astype(np.float32)
    return datasets.from_arrays(draw(300), val=draw(100), test=draw(100))


@pytest.mark.parametrize("backend", BACKENDS)
def test_minibatch_svi_improves_and_counts_epochs(small, backend):
    svi = inference.SVI(epochs=20, batch_size=64, lr=0.02)
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, svi, backend=backend)
    assert len(fit.history) == 20 * 5
    assert fit.history[-1]["epoch"] == 19
    first = np.mean([h["loss"] for h in fit.history[:5]])
    last = np.mean([h["loss"] for h in fit.history[-5:]])
    assert last < first - 1.0
    assert all(np.isfinite(h["loss"]) for h in fit.history)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_continues_exactly(small, backend, tmp_path):
    spec = models.PPCA(data_dim=6, latent_dim=2)
    svi = inference.SVI(steps=40, batch_size=100, lr=0.02)
    whole = ppgen.fit(spec, small, svi, backend=backend, seed=3)

    def interrupt(event):
        if event.step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ppgen.fit(spec, small, svi, backend=backend, seed=3, run_dir=tmp_path, checkpoint_every=10,
                  callbacks=[interrupt])
    _, state = checkpoint.read_checkpoint(tmp_path / "checkpoint")
    assert state["step"] == 20  # written once step 21 proved its state finite
    resumed = ppgen.fit(spec, small, svi, backend=backend, seed=3, run_dir=tmp_path, checkpoint_every=10,
                        resume=True)
    assert len(resumed.history) == 40
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in whole.history],
                               rtol=1e-5)
    np.testing.assert_allclose(resumed.params["W"], whole.params["W"], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_another_model(small, tmp_path):
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="numpyro",
              run_dir=tmp_path, checkpoint_every=5)
    with pytest.raises(CheckpointError, match="model option latent_dim=2 in the checkpoint, 3 here"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=3), small, inference.SVI(steps=10), backend="numpyro",
                  run_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="backend 'numpyro' in the checkpoint, 'pyro' here"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="pyro",
                  run_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="inference option guide='auto' in the checkpoint, 'normal' here"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10, guide="normal"),
                  backend="numpyro", run_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="inference 'svi' in the checkpoint, 'em' here"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "em", backend="numpyro", run_dir=tmp_path,
                  resume=True)


def _exploding_program(backend, threshold=3.0):
    """A one-parameter program whose likelihood turns NaN once its location passes ``threshold``."""
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist
        import torch

        def model(x):
            m = pyro.param("m", torch.tensor(0.0))
            scale = torch.where(m > threshold, torch.tensor(float("nan")), torch.tensor(1.0))
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", dist.Normal(m, scale, validate_args=False).expand(x.shape).to_event(1), obs=x)
    else:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model(x):
            m = numpyro.param("m", 0.0)
            scale = jnp.where(m > threshold, jnp.nan, 1.0)
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("x", dist.Normal(m, scale).expand(x.shape).to_event(1), obs=x)

    def guide(x):
        pass

    return ppgen.Program(model, guide, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_stops_and_keeps_last_good_checkpoint(backend, tmp_path):
    x = np.full((50, 2), 10.0, dtype=np.float32)
    with pytest.raises(Diverged, match="diverged at step") as err:
        ppgen.fit(_exploding_program(backend), x, inference.SVI(steps=100, lr=0.5), backend=backend,
                  run_dir=tmp_path, checkpoint_every=2)
    assert str(tmp_path / "checkpoint") in str(err.value)
    _, state = checkpoint.read_checkpoint(tmp_path / "checkpoint")
    assert 2 <= state["step"] < 100
    assert all(np.isfinite(h["loss"]) for h in state["history"])
    assert len(state["history"]) == state["step"]


def test_early_stopping_restores_best(small):
    rule = ppgen.EarlyStopping(metric="val_log_likelihood", every=10, patience=2)
    seen = []
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=3000, lr=0.05),
                    backend="numpyro", early_stopping=rule, callbacks=[lambda e: seen.append(e.step)])
    evaluated = [h for h in fit.history if "val_log_likelihood" in h]
    assert len(fit.history) < 3000, "the rule should stop before the step budget"
    best = max(h["val_log_likelihood"] for h in evaluated)
    np.testing.assert_allclose(fit.log_likelihood(small.val).mean(), best, rtol=1e-5)
    assert seen[-1] == len(fit.history)


def test_early_stopping_on_val_loss_and_needs_val_split(small):
    rule = ppgen.EarlyStopping(metric="val_loss", every=5, patience=3)
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=200), backend="pyro",
                    early_stopping=rule)
    assert any("val_loss" in h for h in fit.history)
    with pytest.raises(DataError, match="validation split"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small.train, inference.SVI(steps=10),
                  early_stopping=rule)


def test_callback_can_stop(small):
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=100), backend="numpyro",
                    callbacks=[lambda event: event.step >= 7])
    assert len(fit.history) == 7


def test_string_shorthands_and_family_names(small):
    fit = ppgen.fit("ppca", small, "closed-form", latent_dim=2)
    assert fit.model == models.PPCA(data_dim=6, latent_dim=2)
    assert isinstance(fit.inference, inference.ClosedForm)
    with pytest.raises(ConfigError, match="unknown model 'ppac'. Did you mean 'ppca'"):
        ppgen.fit("ppac", small, "svi")
    with pytest.raises(ConfigError, match="unknown inference 'nutz'. Did you mean 'nuts'"):
        ppgen.fit("ppca", small, "nutz", latent_dim=2)
    with pytest.raises(ConfigError, match="unknown backend 'jax'"):
        ppgen.fit("ppca", small, "svi", backend="jax", latent_dim=2)
    with pytest.raises(ConfigError, match="PPCA has no option 'latent'. Did you mean 'latent_dim'"):
        ppgen.fit("ppca", small, "svi", latent=2)


def test_inference_mismatch_is_refused_before_work(small):
    import numpyro
    import numpyro.distributions as dist

    def model(x):
        m = numpyro.sample("m", dist.Normal(0, 1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(m, 1).to_event(1), obs=x)

    program = ppgen.Program(model, backend="numpyro")
    with pytest.raises(IncompatibleInference, match="EM cannot fit a user Program: EM needs a model family "
                                                    "with closed-form E and M steps.*use inference.SVI"):
        ppgen.fit(program, small, "em")
    with pytest.raises(IncompatibleInference, match="ClosedForm cannot fit a user Program"):
        ppgen.fit(program, small, inference.ClosedForm())
    with pytest.raises(ConfigError, match="written for backend='numpyro'"):
        ppgen.fit(program, small, "svi", backend="pyro")


def test_run_folder_round_trip(small, tmp_path):
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.NUTS(num_samples=50, num_warmup=50,
                    num_chains=1), backend="numpyro", run_dir=tmp_path / "run")
    back = ppgen.load(tmp_path / "run")
    assert back.model == fit.model and back.inference == fit.inference and back.backend == "numpyro"
    for k, v in fit.posterior.items():
        np.testing.assert_array_equal(back.posterior[k], v)
    np.testing.assert_allclose(back.log_likelihood(small.test), fit.log_likelihood(small.test), rtol=1e-6)
    assert back.history == json.loads(json.dumps(fit.history))
    assert back.sample(5, seed=1).shape == (5, 6)
    assert "pickle" not in (tmp_path / "run" / "config.json").read_text()


def test_truncated_and_foreign_run_folders_are_refused(small, tmp_path):
    run = tmp_path / "run"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="pyro").save(run)
    data = (run / "fit.safetensors").read_bytes()
    (run / "fit.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ppgen.load(run)
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="pyro").save(run)
    with pytest.raises(CheckpointError, match="holds a 'ppca' fit, not a 'gmm' one"):
        ppgen.load(run, model="gmm")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({"format": "something-else/3", "model": config["model"]}))
    with pytest.raises(CheckpointError, match="is not a ppgen run"):
        ppgen.load(run)
    (run / "config.json").write_text('{"format": "ppgen-run/1", "mod')
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ppgen.load(run)
    with pytest.raises(CheckpointError, match="no run folder"):
        ppgen.load(tmp_path / "nowhere")


def test_foreign_parameters_are_refused(small, tmp_path):
    run = tmp_path / "run"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="pyro").save(run)
    checkpoint.write_arrays(run / "fit.safetensors", {"params/encoder.weight": np.zeros((3, 3))})
    with pytest.raises(CheckpointError, match="belongs to another model"):
        ppgen.load(run)


def test_nonexistent_data_path_is_refused(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        ppgen.fit("ppca", datasets.load("mnist", path=tmp_path / "missing"), "closed_form")


# ---- resuming with other settings ---------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_finished_run_extends_with_more_steps(small, backend, tmp_path):
    spec = models.PPCA(data_dim=6, latent_dim=2)
    whole = ppgen.fit(spec, small, inference.SVI(steps=30, batch_size=100, lr=0.02), backend=backend, seed=1)
    ppgen.fit(spec, small, inference.SVI(steps=20, batch_size=100, lr=0.02), backend=backend, seed=1,
              run_dir=tmp_path, checkpoint_every=10)
    extended = ppgen.fit(spec, small, inference.SVI(steps=30, batch_size=100, lr=0.02), backend=backend, seed=1,
                         run_dir=tmp_path, checkpoint_every=10, resume=True)
    assert [h["step"] for h in extended.history] == list(range(1, 31))
    # the first 20 steps are the short run's; the constant learning rate makes the rest the long run's too
    np.testing.assert_allclose([h["loss"] for h in extended.history], [h["loss"] for h in whole.history], rtol=1e-5)
    assert ppgen.load(tmp_path).inference.steps == 30


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_takes_a_new_learning_rate(small, backend, tmp_path):
    spec = models.PPCA(data_dim=6, latent_dim=2)
    ppgen.fit(spec, small, inference.SVI(steps=10, batch_size=100, lr=0.02), backend=backend, seed=1,
              run_dir=tmp_path, checkpoint_every=10)
    slow = ppgen.fit(spec, small, inference.SVI(steps=20, batch_size=100, lr=1e-6), backend=backend, seed=1,
                     run_dir=tmp_path, checkpoint_every=10, resume=True)
    fast = ppgen.fit(spec, small, inference.SVI(steps=10, batch_size=100, lr=0.02), backend=backend, seed=1)
    np.testing.assert_allclose([h["loss"] for h in slow.history[:10]], [h["loss"] for h in fast.history], rtol=1e-5)
    # with lr=1e-6 the parameters hardly move after the checkpoint (Adam moves each by about lr per step)
    assert slow.inference.lr == 1e-6
    for name in ("W", "mu", "sigma"):
        np.testing.assert_allclose(slow.params[name], fast.params[name], atol=1e-4)
    moved = ppgen.fit(spec, small, inference.SVI(steps=20, batch_size=100, lr=0.02), backend=backend, seed=1)
    assert np.abs(moved.params["W"] - fast.params["W"]).max() > 1e-3


def test_resume_without_a_checkpoint_starts_afresh(small, tmp_path, capsys):
    spec = models.PPCA(data_dim=6, latent_dim=2)
    fit = ppgen.fit(spec, small, inference.SVI(steps=15), backend="numpyro", seed=2, run_dir=tmp_path / "new",
                    checkpoint_every=5, resume=True)
    assert "no checkpoint in" in capsys.readouterr().err
    again = ppgen.fit(spec, small, inference.SVI(steps=15), backend="numpyro", seed=2)
    np.testing.assert_array_equal(fit.params["W"], again.params["W"])


def test_a_fresh_run_in_a_used_run_dir_drops_the_old_checkpoint(small, tmp_path):
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="numpyro",
              run_dir=tmp_path, checkpoint_every=5)
    assert (tmp_path / "checkpoint" / checkpoint.CHECKPOINT_FILE).exists()
    ppgen.fit(models.GMM(data_dim=6, num_components=2), small, "em", backend="numpyro", run_dir=tmp_path)
    assert checkpoint.read_checkpoint(tmp_path / "checkpoint") is None
    assert ppgen.load(tmp_path).model.family == "gmm"


def test_a_checkpoint_whose_parts_disagree_is_refused(small, tmp_path):
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="numpyro",
              run_dir=tmp_path, checkpoint_every=5)
    folder = tmp_path / "checkpoint"
    arrays, info = checkpoint.read_checkpoint(folder)
    checkpoint.write_checkpoint(folder, arrays, dict(info, step=info["step"] - 1))  # history one record longer
    with pytest.raises(CheckpointError, match="disagree"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="numpyro",
                  run_dir=tmp_path, resume=True)
    path = folder / checkpoint.CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=10), backend="numpyro",
                  run_dir=tmp_path, resume=True)


# ---- blow-ups ------------------------------------------------------------------------------------
BLOWUPS = {  # the cases a reliability test found returned without a word (or with a raw error)
    "vae": (lambda: models.VAE(6, latent_dim=2, hidden_dims=(16,), likelihood="gaussian"), {"lr": 1e6}),
    "ppca": (lambda: models.PPCA(data_dim=6, latent_dim=2), {"lr": 10.0}),
    "gmm": (lambda: models.GMM(data_dim=6, num_components=2), {"lr": 1e6}),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", sorted(BLOWUPS))
def test_a_blow_up_is_diverged_with_the_last_good_checkpoint_kept(small, family, backend, tmp_path):
    make, options = BLOWUPS[family]
    svi = inference.SVI(steps=300, batch_size=100, **options)
    with pytest.raises(Diverged, match="diverged at step") as err:
        ppgen.fit(make(), small, svi, backend=backend, seed=0, run_dir=tmp_path, checkpoint_every=1)
    assert "smaller learning rate" in str(err.value)
    found = checkpoint.read_checkpoint(tmp_path / "checkpoint")
    if found is not None:  # the run may blow up before its first checkpoint proved good
        arrays, info = found
        assert str(tmp_path / "checkpoint") in str(err.value)
        assert all(np.all(np.isfinite(v)) for v in arrays.values() if v.dtype.kind == "f")
        assert all(abs(h["loss"]) < 1e4 * max(1.0, abs(info["history"][0]["loss"])) for h in info["history"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_diverged_run_resumes_with_a_smaller_learning_rate(backend, tmp_path):
    # m moves by about lr per Adam step towards the data at 10 and the likelihood turns NaN past 3.2:
    # lr=0.5 diverges at m = 3.5 with the checkpoint at m = 3.0 kept; ten steps of lr=0.01 stay below 3.2
    x = np.full((50, 2), 10.0, dtype=np.float32)
    program = _exploding_program(backend, threshold=3.2)
    with pytest.raises(Diverged, match="smaller learning rate"):
        ppgen.fit(program, x, inference.SVI(steps=100, lr=0.5), backend=backend, run_dir=tmp_path, checkpoint_every=1)
    _, info = checkpoint.read_checkpoint(tmp_path / "checkpoint")
    fit = ppgen.fit(program, x, inference.SVI(steps=info["step"] + 10, lr=0.01), backend=backend, run_dir=tmp_path,
                    checkpoint_every=1, resume=True)
    assert len(fit.history) == info["step"] + 10 and np.all(np.isfinite([h["loss"] for h in fit.history]))
    assert 3.0 < float(fit.params["m"]) < 3.2


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_form_refuses_degenerate_data(backend):
    for x in (np.ones((20, 4)), np.random.default_rng(0).normal(size=(2, 4))):
        with pytest.raises(DataError, match="span only .* dimension"):
            ppgen.fit(models.PPCA(data_dim=4, latent_dim=1), x, "closed_form", backend=backend)


# ---- run folders that were edited ---------------------------------------------------------------
def _edit_config(run, **changes):
    config = json.loads((run / "config.json").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("option,value", [("latent_dim", 3), ("data_dim", 5)])
def test_an_edited_dimension_is_refused_on_load(small, tmp_path, option, value):
    run = tmp_path / "run"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="numpyro").save(run)
    _edit_config(run, **{f"model.options.{option}": value})
    with pytest.raises(CheckpointError, match="inconsistent: params '(W|mu)' in fit.safetensors has shape \\(6"):
        ppgen.load(run)


def test_arrays_of_the_wrong_shape_are_refused_on_load(small, tmp_path):
    run = tmp_path / "run"
    fit = ppgen.fit(models.GMM(data_dim=6, num_components=2, covariance="diag"), small, "em", backend="numpyro")
    fit.save(run)
    arrays = checkpoint.read_arrays(run / "fit.safetensors")
    arrays["params/locs"] = np.zeros((2, 5), np.float32)
    checkpoint.write_arrays(run / "fit.safetensors", arrays)
    with pytest.raises(CheckpointError, match="'locs' .* has shape \\(2, 5\\), but the gmm .* needs \\(2, 6\\)"):
        ppgen.load(run)


def test_an_edited_family_is_an_inconsistent_run_folder(small, tmp_path):
    run = tmp_path / "run"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="numpyro").save(run)
    _edit_config(run, **{"model.name": "gmm"})
    with pytest.raises(CheckpointError, match="run folder .* is inconsistent: .*GMM has no option"):
        ppgen.load(run)


def test_a_run_folder_of_a_newer_format_names_its_version(small, tmp_path):
    run = tmp_path / "run"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, "closed_form", backend="numpyro").save(run)
    _edit_config(run, format="ppgen-run/7")
    with pytest.raises(CheckpointError, match="newer ppgen \\(run format version 7; this ppgen .* reads version 1\\)"):
        ppgen.load(run)


# ---- what a new user hit ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wrap", ["array", "dataset"])
def test_float64_data_stays_float64_for_closed_form(backend, wrap):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4)) * 1e-3 + 1e3  # small spread on a large offset
    data = x if wrap == "array" else datasets.from_arrays(x)
    fit = ppgen.fit(models.PPCA(data_dim=4, latent_dim=1), data, "closed_form", backend=backend)
    eigenvalues = np.linalg.eigvalsh(np.cov(x.T, bias=True))  # Tipping & Bishop: σ² = mean of the D − K smallest
    np.testing.assert_allclose(float(fit.params["sigma"]) ** 2, eigenvalues[:3].mean(), rtol=1e-6)


def test_data_in_the_wrong_container_points_to_from_arrays(small):
    for data in ((small.train, small.val), [small.train, small.val], {"train": small.train}):
        with pytest.raises(DataError, match="datasets.from_arrays"):
            ppgen.fit("ppca", data, "closed_form", latent_dim=2)


@pytest.mark.parametrize("seed", [None, -1, 1.5, True, "0"])
def test_a_seed_is_a_non_negative_integer(small, seed):
    with pytest.raises(ConfigError, match="seed=.*non-negative integer"):
        ppgen.fit("ppca", small, "closed_form", latent_dim=2, seed=seed)


def test_an_implicit_family_gets_its_own_inference_and_a_clean_refusal(small):
    spec = models.GAN(6, latent_dim=2, hidden_dims=(8,), output="identity")
    fit = ppgen.fit(spec, small, backend="numpyro", callbacks=[lambda event: event.step >= 2])
    assert isinstance(fit.inference, inference.Adversarial)
    with pytest.raises(IncompatibleInference) as err:
        ppgen.fit(spec, small, "svi")
    message = str(err.value)
    assert message.startswith("SVI cannot fit GAN: it is an implicit model") and message.count("use inference.") == 1


def test_a_misspelled_option_is_refused_with_the_likely_one():
    with pytest.raises(ConfigError, match="SVI has no option 'step'. Did you mean 'steps'"):
        inference.SVI(step=10)
    with pytest.raises(ConfigError, match="NUTS has no option 'num_sample'. Did you mean 'num_samples'"):
        inference.NUTS(num_sample=10)


def test_num_samples_zero_is_refused(small):
    fit = ppgen.fit(models.VAE(6, latent_dim=2, hidden_dims=(8,), likelihood="gaussian"), small,
                    inference.SVI(steps=2), backend="numpyro")
    with pytest.raises(ConfigError, match="num_samples must be at least 1; got 0"):
        fit.log_likelihood(small.test, num_samples=0)


# ---- progress ------------------------------------------------------------------------------------
def test_progress_without_a_terminal_is_a_periodic_line(small, capsys, monkeypatch):
    monkeypatch.setenv("PPGEN_LOG_EVERY", "0")  # a line at every step
    assert importlib.import_module("ppgen.fit").display() == "log"  # pytest captures stderr: no terminal
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=5), backend="pyro")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ppgen: ppca · SVI · pyro")]
    assert lines[0].startswith("ppgen: ppca · SVI · pyro: step 1/5 (20%)") and "s left; loss" in lines[0]
    assert lines[-1].startswith("ppgen: ppca · SVI · pyro: done, 5 steps in")
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=5), backend="pyro", progress=False)
    assert "ppgen:" not in capsys.readouterr().err


def test_progress_in_a_notebook_is_tqdm(small, monkeypatch, capsys):
    import sys
    import types

    kernel = types.SimpleNamespace(kernel=object())  # what IPython.get_ipython() is inside a Jupyter kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # no widgets: tqdm's text bar, which Jupyter shows
    assert importlib.import_module("ppgen.fit").display() == "notebook"
    ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), small, inference.SVI(steps=5), backend="pyro")
    err = capsys.readouterr().err
    assert "ppca · SVI · pyro:   0%|" in err and "/5 [" in err and "ppgen: ppca" not in err  # a tqdm bar
