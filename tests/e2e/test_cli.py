"""End-to-end tests of the ``ppgen`` command line, called in-process through ``ppgen.cli.main``.

Fits use small synthetic .npz files written to tmp_path (4x4 "images" and 2-D points), so the
whole file stays fast; the demo runs in quick mode.
"""

import json
import math
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

import ppgen
from ppgen import datasets, inference, models
from ppgen.cli import main


# ---------------------------------------------------------------------------------------
# helpers and shared runs
# ---------------------------------------------------------------------------------------
def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_png(path):
    assert path.exists() and path.stat().st_size > 0, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert len(np.unique(image)) > 1


def read_metrics(run):
    return json.loads((run / "metrics.json").read_text())


def assert_finite_split(entry, count, discrete=False):
    assert entry["num_examples"] == count
    for key in ("log_likelihood", "log_likelihood_se") + (("bits_per_dim",) if discrete else ()):
        assert isinstance(entry[key], float) and math.isfinite(entry[key]), (key, entry)
    if not discrete:  # a density's "bits" are no bits: evaluate reports none for real-valued data
        assert entry["bits_per_dim"] is None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """images.npz: 4x4 images from a rank-3 Gaussian; points.npz: a noisy line in 2-D."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    W = rng.normal(size=(16, 3))
    x = (rng.normal(size=(310, 3)) @ W.T + 0.3 * rng.normal(size=(310, 16))).reshape(310, 4, 4)
    np.savez(folder / "images.npz", train=x[:200], val=x[200:250], test=x[250:])
    z = rng.normal(size=(300, 1))
    p = np.c_[z, 0.5 * z + 0.3] + 0.2 * rng.normal(size=(300, 2))
    np.savez(folder / "points.npz", train=p[:200], val=p[200:250], test=p[250:])
    return folder


@pytest.fixture(scope="module")
def closed_form_run(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cf"
    code = main(["fit", "ppca", "--data", "npz", "--data-path", str(data_dir / "images.npz"),
                 "--inference", "closed_form", "--latent-dim", "3", "--backend", "pyro", "--out", str(run),
                 "--no-progress"])
    assert code == 0
    return run


# ---------------------------------------------------------------------------------------
# models, help, entry points
# ---------------------------------------------------------------------------------------
def test_models_table(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    ppca = {row[1] for row in rows if row and row[0] == "ppca"}
    assert ppca >= {"closed_form", "em", "svi", "nuts", "hmc"}
    assert "\x1b" not in out  # plain text, no colour codes


def test_python_dash_m_ppgen():
    result = subprocess.run([sys.executable, "-m", "ppgen", "models"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "closed_form" in result.stdout and "nuts" in result.stdout


def test_top_level_help_and_errors(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in ("fit", "sample", "evaluate", "inspect", "models", "demo"):
        assert command in out
    code, _, err = run_cli(capsys)
    assert code == 2 and "choose a command" in err
    code, _, err = run_cli(capsys, "fitt")
    assert code == 2 and "invalid choice" in err
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and ppgen.__version__ in out


def test_fit_help_lists_model_and_inference_options(capsys):
    code, out, _ = run_cli(capsys, "fit", "ppca", "--inference", "nuts", "--help")
    assert code == 0
    for option in ("--latent-dim", "--data-dim", "--w-prior-scale", "--identification",
                   "--num-samples", "--num-warmup", "--num-chains", "--target-accept-prob",
                   "--dense-mass", "--no-dense-mass", "--max-tree-depth", "--chain-method",
                   "--data", "--view", "--data-path", "--backend", "--seed", "--out", "--no-progress"):
        assert option in out, option
    assert "(default: 2)" in out           # PPCA latent_dim
    assert "(default: 1000)" in out        # NUTS num_samples / num_warmup
    assert "(default: from the data)" in out
    assert "{pivoted,first}" in out and "sequential" in out
    assert "--steps INT" not in out        # SVI's options only with --inference svi

    code, out, _ = run_cli(capsys, "fit", "ppca", "--inference", "svi", "--help")
    assert code == 0
    assert "--elbo" in out and "meanfield" in out and "--steps" in out and "INT|none" in out
    assert "--num-warmup INT" not in out


def test_fit_help_without_a_model(capsys):
    code, out, _ = run_cli(capsys, "fit", "--help")
    assert code == 0 and "MODEL" in out and "--inference" in out
    code, _, err = run_cli(capsys, "fit")
    assert code == 2 and "MODEL" in err


# ---------------------------------------------------------------------------------------
# fit, sample, evaluate, inspect
# ---------------------------------------------------------------------------------------
def test_fit_closed_form_writes_run_and_matches_python(closed_form_run, data_dir):
    run = closed_form_run
    for name in ("config.json", "fit.safetensors", "history.json", "metrics.json", "samples.npy"):
        assert (run / name).exists(), name
    assert_png(run / "samples.png")
    assert not (run / "curves.png").exists()  # one step: no curve to draw
    samples = np.load(run / "samples.npy")
    assert samples.shape == (64, 4, 4) and np.all(np.isfinite(samples))

    metrics = read_metrics(run)
    assert_finite_split(metrics["test"], 60)
    assert_finite_split(metrics["val"], 50)
    data = datasets.load("npz", path=str(data_dir / "images.npz"))
    fit = ppgen.fit(models.PPCA(data_dim=16, latent_dim=3), data, inference.ClosedForm(),
                    backend="pyro", seed=0)
    for split in ("test", "val"):
        expected = float(np.mean(fit.log_likelihood(getattr(data, split))))
        assert metrics[split]["log_likelihood"] == pytest.approx(expected, rel=1e-6)
    ll = fit.log_likelihood(data.test)
    assert metrics["test"]["log_likelihood_se"] == pytest.approx(np.std(ll, ddof=1) / math.sqrt(60), rel=1e-5)


def test_fit_prints_summary(capsys, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "fit", "ppca", "--data", str(data_dir / "points.npz"),
                             "--inference", "closed-form", "--latent-dim", "1", "--no-progress")
    assert code == 0, err
    run = tmp_path / "runs" / "ppca-closed_form-numpyro"   # the default run folder
    assert (run / "config.json").exists()
    assert "run folder:" in out and "test log-likelihood:" in out and "time:" in out
    assert "\x1b" not in out


def test_sample_command(capsys, closed_form_run, tmp_path):
    out_png = tmp_path / "more" / "grid.png"
    code, _out, err = run_cli(capsys, "sample", closed_form_run, "-n", 16, "--seed", 3, "--out", out_png)
    assert code == 0, err
    assert_png(out_png)
    samples = np.load(tmp_path / "more" / "grid.npy")
    assert samples.shape == (16, 4, 4)
    expected = ppgen.load(closed_form_run).sample(16, seed=3)
    np.testing.assert_allclose(samples, expected, rtol=1e-6)
    code, _, _ = run_cli(capsys, "sample", closed_form_run, "-n", 0)
    assert code == 2


def test_evaluate_merges_metrics(capsys, closed_form_run, data_dir):
    before = read_metrics(closed_form_run)
    code, out, err = run_cli(capsys, "evaluate", closed_form_run, "--split", "train")
    assert code == 0, err
    assert "nats per example" in out and "bits per dimension" in out
    after = read_metrics(closed_form_run)
    assert after["test"] == before["test"]                     # merged, not replaced
    assert_finite_split(after["train"], 200)
    data = datasets.load("npz", path=str(data_dir / "images.npz"))
    expected = float(np.mean(ppgen.load(closed_form_run).log_likelihood(data.train)))
    assert after["train"]["log_likelihood"] == pytest.approx(expected, rel=1e-6)


def test_evaluate_run_fitted_on_arrays_needs_data(capsys, data_dir, tmp_path):
    arrays = np.load(data_dir / "points.npz")
    run = tmp_path / "arrays-run"
    ppgen.fit(models.PPCA(data_dim=2, latent_dim=1),
              datasets.from_arrays(arrays["train"], test=arrays["test"]), "closed_form",
              backend="numpyro", run_dir=run)
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 2 and "ppgen: error:" in err and "--data" in err and "Traceback" not in err
    code, _out, err = run_cli(capsys, "evaluate", run, "--data", "npz", "--data-path", data_dir / "points.npz",
                             "--split", "val")
    assert code == 0, err
    assert_finite_split(read_metrics(run)["val"], 50)


def test_digits_run_reloads_its_data(capsys, tmp_path):
    run = tmp_path / "digits"
    code, out, err = run_cli(capsys, "fit", "ppca", "--inference", "closed_form", "--latent-dim", 4,
                             "--backend", "pyro", "--out", run)
    assert code == 0, err
    assert "digits (unit)" in out
    assert_png(run / "samples.png")
    assert np.load(run / "samples.npy").shape == (64, 8, 8)
    code, out, err = run_cli(capsys, "evaluate", run)   # data reloaded from config.json: digits, unit
    assert code == 0, err
    data = datasets.load("digits", view="unit")
    expected = float(np.mean(ppgen.load(run).log_likelihood(data.test)))
    assert read_metrics(run)["test"]["log_likelihood"] == pytest.approx(expected, rel=1e-6)
    assert read_metrics(run)["test"]["num_examples"] == data.test.shape[0]


def test_toy_run_reloads_its_data(capsys, tmp_path):
    run = tmp_path / "ring"
    code, _, err = run_cli(capsys, "fit", "ppca", "--data", "ring", "--data-n", 400, "--data-seed", 2,
                           "--inference", "closed_form", "--latent-dim", 1, "--backend", "pyro", "--out", run)
    assert code == 0, err
    assert_png(run / "samples.png")
    code, _, err = run_cli(capsys, "evaluate", run, "--split", "val")
    assert code == 0, err
    data = datasets.load("ring", n=400, seed=2)
    assert read_metrics(run)["val"]["num_examples"] == data.val.shape[0]
    expected = float(np.mean(ppgen.load(run).log_likelihood(data.val)))
    assert read_metrics(run)["val"]["log_likelihood"] == pytest.approx(expected, rel=1e-6)
    code, _, err = run_cli(capsys, "sample", run, "-n", 50, "--out", tmp_path / "ring.png")
    assert code == 0, err
    assert_png(tmp_path / "ring.png")
    code, _, err = run_cli(capsys, "fit", "ppca", "--data-n", 10, "--inference", "closed_form")
    assert_clean_error(code, err, "--data-n")


def test_fit_em_on_points_draws_scatter_and_curves(capsys, data_dir, tmp_path):
    run = tmp_path / "em"
    code, _, err = run_cli(capsys, "fit", "ppca", "--data", "npz", "--data-path", data_dir / "points.npz",
                           "--inference", "em", "--latent-dim", "1", "--max-iter", 200, "--backend", "pyro",
                           "--out", run)
    assert code == 0, err
    assert_png(run / "samples.png")
    assert_png(run / "curves.png")
    assert json.loads((run / "config.json").read_text())["inference"]["options"]["max_iter"] == 200
    code, _out, err = run_cli(capsys, "sample", run, "-n", 100)
    assert code == 0, err
    assert np.load(run / "samples.npy").shape == (100, 2)


def test_fit_svi_pyro_with_generated_flags(capsys, data_dir, tmp_path):
    run = tmp_path / "svi"
    code, _out, err = run_cli(capsys, "fit", "ppca", "--data", "npz", "--data-path", data_dir / "points.npz",
                             "--inference", "svi", "--backend", "pyro", "--elbo", "meanfield",
                             "--steps", 50, "--lr", 0.05, "--batch-size", "none", "--latent-dim", 1,
                             "--out", run, "--no-progress")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "pyro"
    assert config["inference"]["options"]["elbo"] == "meanfield"
    assert config["inference"]["options"]["steps"] == 50
    assert config["inference"]["options"]["batch_size"] is None
    assert len(json.loads((run / "history.json").read_text())) == 50
    assert_png(run / "curves.png")
    metrics = read_metrics(run)
    assert_finite_split(metrics["test"], 50)


def test_fit_nuts_then_inspect(capsys, data_dir, tmp_path):
    run = tmp_path / "nuts"
    code, _, err = run_cli(capsys, "fit", "ppca", "--data", "npz", "--data-path", data_dir / "points.npz",
                           "--inference", "nuts", "--num-samples", 30, "--num-warmup", 30, "--num-chains", 1,
                           "--latent-dim", 1, "--backend", "pyro", "--out", run)
    assert code == 0, err
    assert_finite_split(read_metrics(run)["test"], 50)
    code, out, err = run_cli(capsys, "inspect", run)
    assert code == 0, err
    assert "W_diag" in out and "sigma" in out and "r_hat" in out
    assert_png(run / "plots" / "trace.png")
    summary = (run / "plots" / "summary.csv").read_text()
    assert "W_diag" in summary and "sigma" in summary
    code, _, err = run_cli(capsys, "inspect", run, "--var", "nope")
    assert code == 2 and "nope" in err


def test_fit_gmm_em_then_inspect_draws_components(capsys, tmp_path):
    run = tmp_path / "gmm"
    code, out, err = run_cli(capsys, "fit", "gmm", "--data", "ring", "--data-n", 600, "--num-components", 4,
                             "--covariance", "diag", "--inference", "em", "--n-init", 2, "--backend", "pyro",
                             "--out", run)
    assert code == 0, err
    assert "GMM on ring by EM" in out
    assert read_metrics(run)["train"]["num_examples"] == 480   # the toys keep 80% for training
    code, out, err = run_cli(capsys, "inspect", run)
    assert code == 0, err
    assert "weights" in out and "point estimate" in out
    assert_png(run / "plots" / "components.png")


def test_fit_gmm_nuts_then_inspect_draws_rank_plots(capsys, tmp_path):
    run = tmp_path / "gmm-nuts"
    code, _, err = run_cli(capsys, "fit", "gmm", "--data", "ring", "--data-n", 300, "--num-components", 2,
                           "--covariance", "spherical", "--inference", "nuts", "--num-samples", 40,
                           "--num-warmup", 40, "--num-chains", 2, "--backend", "pyro", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "inspect", run)
    assert code == 0, err
    assert "r_hat" in out and "2 chain(s) x 40 draws" in out
    for name in ("trace", "rank", "components"):
        assert_png(run / "plots" / f"{name}.png")


def test_compare_ranks_a_range_of_components(capsys, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, err = run_cli(capsys, "compare", "gmm", "--data", "ring", "--data-n", 600, "--vary",
                             "num_components=1..3", "--covariance", "full", "--inference", "em",
                             "--backend", "pyro", "--out", out_dir)
    assert code == 0, err
    assert "BIC and AIC" in out
    lines = [line for line in out.splitlines() if line.startswith("num_components=")]
    assert [line.split()[0] for line in lines][:1] == ["num_components=3"]   # more components fit a ring better
    assert (out_dir / "comparison.csv").exists() and (out_dir / "num_components=2" / "config.json").exists()
    code, _, err = run_cli(capsys, "compare", "gmm", "--data", "ring", "--vary", "num_compnents=1..3")
    assert_clean_error(code, err, "num_compnents", "num_components")
    code, _, err = run_cli(capsys, "compare", "gmm", "--data", "ring", "--vary", "num_components=3")
    assert_clean_error(code, err, "at least two")


def test_inspect_point_estimate(capsys, closed_form_run):
    code, out, err = run_cli(capsys, "inspect", closed_form_run, "--var", "sigma", "--var", "mu")
    assert code == 0, err
    assert "point estimate" in out and "\nsigma " in out and "scalar" in out
    assert "\nmu " in out and " 16 " in out  # one row per parameter: its shape and size
    assert (closed_form_run / "plots" / "summary.csv").exists()


# ---------------------------------------------------------------------------------------
# errors: a message and exit status 2, never a traceback
# ---------------------------------------------------------------------------------------
def assert_clean_error(code, err, *fragments):
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_unknown_model(capsys):
    code, _, err = run_cli(capsys, "fit", "ppac")
    assert_clean_error(code, err, "ppgen: error:", "unknown model 'ppac'. Did you mean 'ppca'?")


def test_unknown_inference(capsys):
    code, _, err = run_cli(capsys, "fit", "ppca", "--inference", "nutz")
    assert_clean_error(code, err, "unknown inference 'nutz'", "Did you mean 'nuts'?")


def test_latent_dim_too_large(capsys, tmp_path):
    code, _, err = run_cli(capsys, "fit", "ppca", "--latent-dim", 64, "--inference", "closed_form",
                           "--out", tmp_path / "never")
    assert_clean_error(code, err, "ppgen: error:", "latent_dim")
    assert not (tmp_path / "never").exists()


def test_bad_option_values(capsys):
    code, _, err = run_cli(capsys, "fit", "ppca", "--latent-dim", "two")
    assert_clean_error(code, err, "invalid int value")
    code, _, err = run_cli(capsys, "fit", "ppca", "--inference", "svi", "--elbo", "trac")
    assert_clean_error(code, err, "invalid choice")
    code, _, err = run_cli(capsys, "fit", "ppca", "--inference", "closed_form", "--steps", 5)
    assert_clean_error(code, err, "unrecognized arguments: --steps")


def test_missing_run_folder(capsys, tmp_path):
    for command in ("sample", "evaluate", "inspect"):
        code, _, err = run_cli(capsys, command, tmp_path / "no-such-run")
        assert_clean_error(code, err, "ppgen: error:", "no-such-run")


def test_truncated_safetensors(capsys, closed_form_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(closed_form_run, broken)
    data = (broken / "fit.safetensors").read_bytes()
    (broken / "fit.safetensors").write_bytes(data[: len(data) // 2])
    for command in ("sample", "evaluate"):
        code, _, err = run_cli(capsys, command, broken)
        assert_clean_error(code, err, "ppgen: error:", "truncated or corrupt")


# ---------------------------------------------------------------------------------------
# demo (PPCA on the digits, closed form vs NUTS) in quick mode: about a minute
# ---------------------------------------------------------------------------------------
def test_demo_quick(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--quick", "--out", out_dir)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["quick"] is True
    assert set(report["runs"]) == {"closed_form", "nuts", "vae", "ddpm", "gan_ring", "cgan_digits"}
    for key in ("closed_form", "nuts", "vae", "ddpm"):
        assert_png(out_dir / key / "samples.png")
        assert math.isfinite(read_metrics(out_dir / key)["test"]["log_likelihood"])
        assert math.isfinite(report["runs"][key]["test_log_likelihood"])
    for name in ("trace.png", "posterior.png", "pair.png"):
        assert_png(out_dir / "nuts" / "plots" / name)
    assert "W_diag" in (out_dir / "nuts" / "plots" / "summary.csv").read_text()
    assert "closed_form" in out and "nuts" in out and "start:" in out and "done" in out
    for name in ("reconstructions.png", "traversals.png"):
        assert_png(out_dir / "vae" / name)
    assert "VAE on digits (17-level categorical): test NLL" in out
    assert_png(out_dir / "ddpm" / "chain.png")
    assert "DDPM on digits (discretised 17 levels): test bound" in out
    assert math.isfinite(report["runs"]["ddpm"]["frechet_ddim50"])
    ring, cgan = report["runs"]["gan_ring"], report["runs"]["cgan_digits"]
    assert ring["num_modes"] == 8 and 0 <= ring["modes_covered"] <= 8 and 0 <= ring["high_quality"] <= 1
    assert 0 <= cgan["conditional_accuracy"] <= 1 and math.isfinite(cgan["frechet"])
    for key in ("gan_ring", "cgan_digits"):
        assert_png(out_dir / key / "samples.png")
        assert_png(out_dir / key / "curves.png")
        assert list((out_dir / key / "samples").glob("epoch_*.png"))
    assert "GAN on the ring of 8 Gaussians (WGAN-GP)" in out


def test_fit_gan_then_evaluate_and_sample(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "fit", "gan", "--data", "ring", "--loss", "wgan-gp", "--gradient-penalty", "0.1",
                           "--steps", "6", "--batch-size", "64", "--latent-dim", "2", "--hidden-dims", "16",
                           "--backend", "pyro", "--out", tmp_path / "gan")
    assert code == 0 and "modes covered" in out, out
    config = json.loads((tmp_path / "gan" / "config.json").read_text())
    options = config["inference"]["options"]
    assert options["loss"] == "wgan-gp" and options["critic_steps"] == 5 and options["gradient_penalty"] == 0.1
    assert config["model"]["options"]["output"] == "identity"  # read from the data
    for name in ("samples.png", "curves.png", "metrics.json"):
        assert (tmp_path / "gan" / name).exists(), name
    assert list((tmp_path / "gan" / "samples").glob("epoch_*.png"))
    code, out, _ = run_cli(capsys, "evaluate", tmp_path / "gan")
    assert code == 0 and "energy distance" in out and "high quality" in out
    code, out, _ = run_cli(capsys, "sample", tmp_path / "gan", "-n", "30", "--out", tmp_path / "s.png")
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (30, 2)
    code, _, err = run_cli(capsys, "fit", "gan", "--data", "ring", "--critic-steps", "0", "--out", tmp_path / "bad")
    assert code != 0 and "critic_steps" in err and "at least 1" in err
    code, _, err = run_cli(capsys, "fit", "gan", "--data", "ring", "--gradient-penalty", "-1",
                           "--out", tmp_path / "bad")
    assert code != 0 and "gradient_penalty" in err


def test_fit_aae_writes_the_aggregated_posterior(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "fit", "aae", "--data", "digits", "--view", "categorical", "--prior", "mixture",
                           "--steps", "5", "--batch-size", "64", "--hidden-dims", "16", "--backend", "pyro",
                           "--out", tmp_path / "aae")
    assert code == 0 and "latent energy distance" in out, out
    assert_png(tmp_path / "aae" / "aggregated_posterior.png")
    metrics = json.loads((tmp_path / "aae" / "metrics.json").read_text())
    assert math.isfinite(metrics["test"]["latent_energy_distance"])


def test_fit_vae_writes_grids_and_latent_map_and_inspect_shows_q_of_z(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "fit", "vae", "--data", "digits", "--view", "categorical", "--backend", "pyro",
                           "--steps", "20", "--batch-size", "100", "--latent-dim", "2", "--hidden-dims", "32,32",
                           "--eval-samples", "5", "--out", "vae")
    assert code == 0 and "test log-likelihood" in out
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert config["model"]["options"]["likelihood"] == "categorical"  # read from the data
    assert config["model"]["options"]["num_levels"] == 17 and config["model"]["options"]["hidden_dims"] == [32, 32]
    for name in ("samples.png", "reconstructions.png", "traversals.png", "latent_map.png", "metrics.json"):
        assert (tmp_path / "vae" / name).exists(), name
    code, out, _ = run_cli(capsys, "inspect", "vae")
    assert code == 0 and "q(z|x) for the first 4 training examples" in out and "z[0, 0]" in out
    assert (tmp_path / "vae" / "plots" / "ppc.png").exists()


def test_fit_cvae_scores_with_the_split_labels(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "fit", "cvae", "--data", "digits", "--view", "binary", "--backend", "pyro",
                           "--steps", "5", "--batch-size", "100", "--hidden-dims", "16", "--eval-samples", "3",
                           "--out", tmp_path / "cvae")
    assert code == 0
    metrics = json.loads((tmp_path / "cvae" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 447 and math.isfinite(metrics["test"]["log_likelihood"])
    assert np.load(tmp_path / "cvae" / "samples.npy").shape == (100, 8, 8)  # 10 labels x 10 draws


def test_fit_ddpm_then_sample_with_ddim_and_a_chain_strip(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "fit", "ddpm", "--data", "ring", "--elbo", "simple", "--steps", "30",
                           "--batch-size", "128", "--timesteps", "100", "--hidden-dims", "32,32", "--ema", "0.9",
                           "--backend", "pyro", "--out", tmp_path / "ddpm")
    assert code == 0 and "test log-likelihood" in out
    config = json.loads((tmp_path / "ddpm" / "config.json").read_text())
    assert config["inference"]["options"]["elbo"] == "simple"
    assert_png(tmp_path / "ddpm" / "chain.png")
    code, out, _ = run_cli(capsys, "sample", tmp_path / "ddpm", "-n", "50", "--sampler", "ddim", "--steps", "20",
                           "--out", tmp_path / "ddim.png")
    assert code == 0 and "ddim_chain.png" in out
    assert np.load(tmp_path / "ddim.npy").shape == (50, 2)
    assert_png(tmp_path / "ddim_chain.png")
    code, _, err = run_cli(capsys, "sample", tmp_path / "ddpm", "--sampler", "ddim", "--steps", "30")
    assert code != 0 and "must divide T=100" in err
    code, _, err = run_cli(capsys, "fit", "ddpm", "--data", "ring", "--timesteps", "1", "--out", tmp_path / "bad")
    assert code != 0 and "timesteps must be at least 2" in err


# ---- ppgen inspect on every kind of run ---------------------------------------------------------
def _png_size(path):
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


INSPECT_RUNS = {  # a tiny run of each kind a reliability test found ppgen inspect mishandled
    "closed_form": ("digits", lambda: models.PPCA(64, latent_dim=2), "closed_form"),
    "em": ("ring", lambda: models.GMM(2, num_components=3), inference.EM(max_iter=20)),
    "svi_ddpm": ("ring", lambda: models.DDPM(2, timesteps=10, beta_schedule="cosine", hidden_dims=(16,), time_dim=8),
                 inference.SVI(elbo="simple", steps=5, batch_size=64)),
    "aae": ("ring", lambda: models.AAE(2, latent_dim=2, hidden_dims=(16,), discriminator_hidden_dims=(16,)),
            inference.Adversarial(steps=5, batch_size=64)),
    "gan": ("ring", lambda: models.GAN(2, latent_dim=2, hidden_dims=(16,), output="identity"),
            inference.Adversarial(steps=5, batch_size=64, loss="wgan-gp")),
    "vae": ("digits", lambda: models.VAE(64, latent_dim=2, hidden_dims=(16,), likelihood="gaussian"),
            inference.SVI(steps=5, batch_size=64)),
    "nuts": ("ring", lambda: models.GMM(2, num_components=2, covariance="diag"),
             inference.NUTS(num_samples=20, num_warmup=20, num_chains=2)),
}


@pytest.mark.parametrize("kind", sorted(INSPECT_RUNS))
def test_inspect_shows_what_fits_the_run(kind, capsys, tmp_path):
    name, make, alg = INSPECT_RUNS[kind]
    data = datasets.load(name, **({"n": 300} if name == "ring" else {}))
    ppgen.fit(make(), data, alg, backend="numpyro", run_dir=tmp_path / "run")
    code, out, err = run_cli(capsys, "inspect", tmp_path / "run")
    assert code == 0, err
    assert "skipped" not in out + err and "Warning" not in err, out + err
    assert len(out.splitlines()) < 60, out  # a compact table, networks summarised by size
    if kind in ("svi_ddpm", "aae", "gan", "vae"):
        assert "(network)" in out or kind == "vae"
    for png in (tmp_path / "run").rglob("*.png"):
        width, height = _png_size(png)
        assert width <= 4000 and height <= 4000, (png.name, width, height)
    if kind in ("closed_form", "em", "svi_ddpm", "aae", "gan"):  # point estimates: no posterior plots
        assert not any((tmp_path / "run" / "plots" / f"{plot}.png").exists() for plot in ("trace", "posterior", "pair"))
