"""Train the digits classifier that ``ppgen.metrics`` ships, and write ``digits_classifier.safetensors``.

Run ``python -m ppgen.metrics._train_classifier`` (about a minute on one CPU thread).

The network is the one of ``ppgen.metrics.classifier`` (`ARCH`), built here in
PyTorch; the inference code there re-implements it in NumPy, and this script
checks that both agree before it writes the file.

Data: ``datasets.load("digits", view="categorical")``; the network sees ``x / 16``.
Training uses the training split only (1000 images), with augmentation drawn
afresh each step: a random affine map (rotation, scale, shear and a translation
of up to one pixel, resampled bilinearly with zero fill) and, for a fraction of
the images, binarisation at ``x > 8`` (so that samples of binary-view models are
classified well too). The validation split picks the epoch whose weights are
kept (highest accuracy, then lowest loss). The test split is only evaluated,
once, at the end; its accuracy is stored in the file's metadata.

Everything is drawn from ``--seed`` (default 0) and run with deterministic
algorithms, so a rerun on the same machine and torch version reproduces the file.
The file is written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets
from .classifier import ARCH, FORMAT, WEIGHTS_PATH, DigitsClassifier, expected_shapes

AUGMENT = {
    "rotation_degrees": 12.0,
    "scale": (0.9, 1.1),
    "shear": 0.15,
    "translate_pixels": 1.0,
    "binarize_fraction": 0.15,
}


class Net(nn.Module):
    """The classifier of `ARCH` (layer names are the tensor names of the safetensors file)."""

    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()
        c1, c2, c3 = ARCH["conv_channels"]
        k, h = ARCH["kernel"], ARCH["hidden"]
        self.conv1 = nn.Conv2d(1, c1, k, padding=k // 2)
        self.conv2 = nn.Conv2d(c1, c2, k, padding=k // 2)
        self.conv3 = nn.Conv2d(c2, c3, k, padding=k // 2)
        self.fc1 = nn.Linear(c3 * (ARCH["image"] // 4) ** 2, h)
        self.fc2 = nn.Linear(h, ARCH["num_classes"])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        h = F.relu(self.fc1(self.drop(h.flatten(1))))
        return self.fc2(self.drop(h))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine jitter and partial binarisation of unit-scale images ``(n, 1, 8, 8)``."""
    n = len(x)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    a = AUGMENT
    angle = uniform(-a["rotation_degrees"], a["rotation_degrees"]) * math.pi / 180
    scale = uniform(*a["scale"])
    shear = uniform(-a["shear"], a["shear"])
    # translation in grid units: one pixel is 2 / 8 of the [-1, 1] extent
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * a["translate_pixels"] * 2 / ARCH["image"]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    binarize = torch.rand(n, generator=g) < a["binarize_fraction"]
    out[binarize] = (out[binarize] > 0.5).float()
    return out


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` (in eval mode) on ``x``, ``y``."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def train(seed: int = 0, epochs: int = 150, batch_size: int = 50, lr: float = 3e-3, weight_decay: float = 5e-4):
    """Train from ``seed``; return the selected model, the metadata dict, and the data splits."""
    torch.manual_seed(seed)  # (main also switches torch to deterministic algorithms)
    g = torch.Generator().manual_seed(seed)
    ds = datasets.load("digits", view="categorical")

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(getattr(ds, split).astype(np.float32) / 16.0)[:, None]
        return x, torch.from_numpy(getattr(ds.labels, split))

    (xtr, ytr), (xva, yva) = tensors("train"), tensors("val")
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    best = (-1.0, math.inf)
    best_state, best_epoch = None, -1
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(augment(xtr[idx], g)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val_acc, val_loss = evaluate(model, xva, yva)
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best, best_state, best_epoch = (val_acc, val_loss), copy.deepcopy(model.state_dict()), epoch
        if epoch % 10 == 0 or epoch == 1:
            print(
                f"epoch {epoch:4d}  train loss {total / len(xtr):.4f}  val acc {val_acc:.4f}  val loss {val_loss:.4f}"
                f"  best val {best[0]:.4f} (epoch {best_epoch})  {time.perf_counter() - t0:.1f}s",
                flush=True,
            )
    seconds = time.perf_counter() - t0
    model.load_state_dict(best_state)
    meta = {
        "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in ARCH.items()},
        "layers": "conv3x3(1->32) relu, conv3x3(32->32) relu maxpool2, conv3x3(32->64) relu maxpool2, "
        "flatten(C,H,W) 256 -> fc 64 relu (features) -> fc 10 (logits)",
        "input": "x / 16 for 0..16 pixel counts of sklearn's 8x8 digits, float32, shape (N, 1, 8, 8), rows top to "
        "bottom; ppgen.metrics.classifier converts the 'counts', 'unit', 'symmetric' and 'binary' (x * 16) scales",
        "seed": seed,
        "epochs": epochs,
        "selected_epoch": best_epoch,
        "selection": "highest validation accuracy, then lowest validation loss",
        "batch_size": batch_size,
        "optimizer": {"name": "AdamW", "max_lr": lr, "weight_decay": weight_decay, "schedule": "one-cycle"},
        "dropout": 0.25,
        "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENT.items()},
        "data": "datasets.load('digits'): trained on train [:1000], selected on val [1000:1350], "
        "test [1350:] only evaluated",
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    return model, meta, ds


def save_atomic(state: dict[str, np.ndarray], meta: dict, path: Path) -> DigitsClassifier:
    """Write the tensors and metadata to a temporary file next to ``path``, check it loads, then move it in place."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": FORMAT, "ppgen": json.dumps(meta, sort_keys=True)})
        clf = DigitsClassifier(tmp)  # raises if the file does not load as the expected architecture
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    clf.path = path
    return clf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ppgen.metrics._train_classifier", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this small net)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help=f"output file (default {WEIGHTS_PATH})")
    args = parser.parse_args(argv)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    try:
        _train_and_write(args)
    finally:  # leave the process as it was (this also runs inside test processes)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train_and_write(args: argparse.Namespace) -> None:
    model, meta, ds = train(seed=args.seed, epochs=args.epochs)
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == expected_shapes()

    # accuracies with the torch model, then check the NumPy re-implementation agrees on every split
    acc = {}
    clf_check = None
    for split in ("train", "val", "test"):
        x = getattr(ds, split)
        y = getattr(ds.labels, split)
        xt = torch.from_numpy(x.astype(np.float32) / 16.0)[:, None]
        acc[split], _ = evaluate(model, xt, torch.from_numpy(y))
        if clf_check is None:
            with tempfile.TemporaryDirectory() as d:
                clf_check = save_atomic(state, {}, Path(d) / "check.safetensors")
        model.eval()
        with torch.no_grad():
            p_torch = torch.softmax(model(xt).double(), 1).numpy()
        p_numpy = clf_check.predict_proba(x)
        gap = float(np.abs(p_torch - p_numpy).max())
        if gap > 1e-4:
            raise RuntimeError(f"NumPy inference disagrees with torch on {split} (max probability gap {gap:.2e})")
    binary = (ds.test > 8).astype(np.float32)
    acc["test_binary_view"] = float((clf_check.predict(binary, scale="binary") == ds.labels.test).mean())
    meta["accuracy"] = {k: round(v, 5) for k, v in acc.items()}

    save_atomic(state, meta, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} kB) in {meta['train_seconds']:.0f}s of training")
    print(
        f"accuracy: train {acc['train']:.4f}  val {acc['val']:.4f}  test {acc['test']:.4f}  "
        f"(test, binary view {acc['test_binary_view']:.4f}); selected epoch {meta['selected_epoch']}"
    )


if __name__ == "__main__":
    main()
