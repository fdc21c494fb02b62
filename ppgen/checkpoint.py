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

__all__ = ["FORMAT", "atomic_write_bytes", "write_json", "read_json", "write_arrays", "read_arrays"]

FORMAT = "ppgen-run/1"


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


def write_arrays(path, arrays: dict, metadata: dict | None = None) -> None:
    """Save named numpy arrays as safetensors, atomically."""
    from safetensors.numpy import save

    clean = {k: np.array(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    for k, v in clean.items():
        if v.dtype == bool:
            clean[k] = v.astype(np.uint8)
        if v.dtype == object:
            raise CheckpointError(f"array {k!r} has dtype object, which safetensors cannot store")
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
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
