"""Checkpoints survive ``kill -9`` at any moment: every resume continues bit for bit.

A fit with ``checkpoint_every=1`` runs in a process that is killed (SIGKILL, no clean-up) after a
random number of steps and a random part of the next (which may be writing a checkpoint), 20
times over; each new process resumes the same run folder.
The run that finally completes must equal, bit for bit, the same fit run without interruption.

To keep this fast, one launcher process imports ppgen and the framework once and forks a fresh
process for each attempt (nothing has run a computation before the fork, so no framework threads
are copied); JAX's compilation cache on disk spares the forks most of their compiling.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20

_LAUNCHER = """
import os, sys, traceback
import numpy as np
import ppgen
from ppgen import inference, models

backend, folder = sys.argv[1], sys.argv[2]
if backend == "pyro":
    import torch, pyro  # noqa: F401  imported before the forks, not run
else:
    import jax, numpyro  # noqa: F401
    jax.config.update("jax_compilation_cache_dir", os.path.join(folder, "jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
rng = np.random.default_rng(0)
W = rng.normal(0, 0.5, (6, 2))
x = (rng.normal(size=(300, 2)) @ W.T + 0.2 * rng.normal(size=(300, 6))).astype(np.float32)
svi = inference.SVI(steps=400, batch_size=50, lr=0.02, lr_decay=0.5)


def run(run_dir, out):
    options = dict(run_dir=run_dir, checkpoint_every=1, resume=True) if run_dir else {}
    fit = ppgen.fit(models.PPCA(data_dim=6, latent_dim=2), x, svi, backend=backend, seed=5,
                    callbacks=[lambda event: print("step", event.step, flush=True)], **options)
    np.savez(out, loss=np.array([h["loss"] for h in fit.history]), step=np.array([h["step"] for h in fit.history]),
             **{k: np.asarray(v) for k, v in fit.params.items()})


for command in sys.stdin:
    what = command.split()
    if not what or what[0] == "quit":
        break
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run(None if what[0] == "reference" else os.path.join(folder, "run"), os.path.join(folder, what[0] + ".npz"))
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        os._exit(code)
    print("pid", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("exit", os.waitstatus_to_exitcode(status), flush=True)
"""


class _Launcher:
    def __init__(self, backend: str, folder: Path):
        self.process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, backend, str(folder)], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, command: str) -> int:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return int(self.expect("pid").split()[1])

    def expect(self, *prefixes) -> str:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the launcher ended early (exit code {self.process.poll()})")
            if line.startswith(prefixes):
                return line

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_every_resume_after_kill_9_is_bit_exact(backend, tmp_path):
    launcher = _Launcher(backend, tmp_path)
    try:
        launcher.send("reference")
        assert launcher.expect("exit").split()[1] == "0", "the uninterrupted run failed"
        chooser = random.Random(1234)
        killed, steps_at_kill = 0, []
        for _ in range(KILLS):
            pid = launcher.send("resumed")
            line = first = launcher.expect("step", "exit")
            for _ in range(chooser.randint(0, 20)):  # let it run a random number of steps ...
                if line.startswith("exit"):
                    break
                line = launcher.expect("step", "exit")
            if line.startswith("exit"):  # the run was already complete
                break
            time.sleep(chooser.uniform(0.0, 0.02))  # ... and a random part of the next one
            os.kill(pid, signal.SIGKILL)  # no clean-up: possibly in the middle of writing a checkpoint
            code = int(launcher.expect("exit").split()[1])
            if code == -signal.SIGKILL:
                killed += 1
                steps_at_kill.append(int(line.split()[1]))
                assert int(first.split()[1]) <= int(line.split()[1])
        launcher.send("resumed")
        assert launcher.expect("exit").split()[1] == "0", "the last resume failed"
    finally:
        launcher.close()
    expected = dict(np.load(tmp_path / "reference.npz"))
    got = dict(np.load(tmp_path / "resumed.npz"))
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} processes were killed mid-run"
    assert len(set(steps_at_kill)) > KILLS // 4, steps_at_kill  # killed at many different points
    np.testing.assert_array_equal(got["step"], np.arange(1, 401))
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=f"{key} differs after {killed} kills at steps "
                                                                f"{steps_at_kill}")
