"""Run folders and checkpoints: JSON for configuration, safetensors for arrays; never pickle.

Every file is written atomically (a temporary file in the same folder, flushed, fsynced and
renamed over the target), so an interrupted write leaves the previous version intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError

__all__ = ["FORMAT", "CHECKPOINT_FORMAT", "atomic_write_bytes", "write_json", "read_json", "write_arrays",
           "read_arrays", "write_checkpoint", "read_checkpoint", "CHECKPOINT_FILE"]

FORMAT = "ppgen-run/1"
#: a checkpoint is one safetensors file: the algorithm's arrays, and in its header the JSON of the
#: run's config, the step, the algorithm's metadata and the history up to that step
CHECKPOINT_FORMAT = "ppgen-checkpoint/2"
CHECKPOINT_FILE = "checkpoint.safetensors"


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def read_json(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: not a ppgen run folder or checkpoint "
                              f"(it should hold config.json written by fit.save)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the file is truncated or corrupt. "
                              f"Re-run the fit, or resume from an intact checkpoint") from e


def write_arrays(path, arrays: dict, metadata: dict | None = None, raw_metadata: dict | None = None) -> None:
    """Save named numpy arrays as safetensors, atomically; ``metadata`` values are stored as JSON,
    ``raw_metadata`` (strings) as they are."""
    from safetensors.numpy import save

    clean = {k: np.array(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    for k, v in clean.items():
        if v.dtype == bool:
            clean[k] = v.astype(np.uint8)
        if v.dtype == object:
            raise CheckpointError(f"array {k!r} has dtype object, which safetensors cannot store")
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in (metadata or {}).items()}, **(raw_metadata or {})}
    atomic_write_bytes(path, save(clean, metadata=meta))


def read_arrays(path) -> dict:
    """Load a safetensors file written by :func:`write_arrays`, refusing damaged files."""
    from safetensors.numpy import load

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; the run folder is incomplete")
    data = path.read_bytes()
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types for bad headers/lengths
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it is truncated or "
                              f"corrupt. Re-run the fit, or resume from an intact checkpoint") from e


def write_checkpoint(folder, arrays: dict, info: dict) -> Path:
    """Write a checkpoint as ONE file, ``folder/checkpoint.safetensors``, atomically: the arrays
    and, in the same file's header, ``info`` (``config``, ``step``, ``meta``, ``history``). A
    process killed at any moment leaves either the previous checkpoint or this one, never a mix."""
    folder = Path(folder)
    path = folder / CHECKPOINT_FILE
    header = {"checkpoint": json.dumps(_jsonable(info), sort_keys=True), "num_arrays": str(len(arrays))}
    write_arrays(path, arrays, raw_metadata={"format": CHECKPOINT_FORMAT, **header})
    for stale in ("state.safetensors", "state.json"):  # the two files of format 1, now superseded
        if (folder / stale).exists():
            (folder / stale).unlink()
    return path


def read_checkpoint(folder) -> tuple[dict, dict] | None:
    """The arrays and info of the checkpoint in ``folder``, or None when it holds none; a file
    that is damaged, of another format, or whose parts disagree is refused."""
    from safetensors import safe_open

    folder = Path(folder)
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        if (folder / "state.json").exists():
            raise CheckpointError(f"{folder} holds a checkpoint of an older ppgen (state.json and "
                                  f"state.safetensors, written one after the other); start a new run_dir")
        return None
    arrays = read_arrays(path)
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata() or {}
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a checkpoint of format {header.get('format')!r}, and this ppgen reads "
                              f"{CHECKPOINT_FORMAT!r}; resume it with the ppgen that wrote it, or start a new run_dir")
    try:
        info = json.loads(header["checkpoint"])
        count = int(header["num_arrays"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} has no readable checkpoint header ({e}); it is not a ppgen checkpoint") from e
    step, history = info.get("step"), info.get("history")
    if count != len(arrays) or not isinstance(step, int) or not isinstance(history, list) or len(history) != step:
        raise CheckpointError(f"the parts of {path} disagree ({len(arrays)} arrays of {count}, step {step}, "
                              f"{len(history) if isinstance(history, list) else '?'} history records); the file "
                              f"is corrupt: start a new run_dir")
    return arrays, info


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        value = float(obj)
        return value if np.isfinite(value) else None
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj
