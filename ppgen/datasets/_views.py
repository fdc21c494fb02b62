"""Views of integer pixel data (digits 0..16, images 0..255) as model-ready arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

PIXEL_VIEWS = ("unit", "symmetric", "binary", "categorical")


def check_view(view: str | None, name: str) -> str:
    """Return the pixel view to use (default ``"unit"``) or raise ConfigError."""
    if view is None:
        return "unit"
    if view not in PIXEL_VIEWS:
        choices = ", ".join(repr(v) for v in PIXEL_VIEWS)
        raise ConfigError(f"unknown view {view!r} for {name!r}; choose one of {choices} (default 'unit')")
    return view


def pixel_view(raw: np.ndarray, view: str, top: int) -> np.ndarray:
    """Map integer pixels in ``0..top`` to the representation ``view`` names.

    ``unit``: float32 ``x / top`` in [0, 1]; ``symmetric``: float32
    ``x / (top / 2) - 1`` in [-1, 1]; ``binary``: float32 ``x > top // 2``
    (threshold at half the range: ``x > 8`` for digits, ``x > 127`` for bytes);
    ``categorical``: the raw codes as int64.
    """
    if view == "categorical":
        return raw.astype(np.int64)
    if view == "binary":
        return (raw > top // 2).astype(np.float32)
    out = raw.astype(np.float32)
    if view == "unit":
        out /= np.float32(top)
    else:  # symmetric
        out /= np.float32(top / 2)
        out -= np.float32(1.0)
    return out


def pixel_meta(view: str, top: int) -> dict[str, Any]:
    """The ``support``/``levels``/``low``/``high`` meta entries of a pixel view."""
    if view == "unit":
        return {"support": "real", "levels": None, "low": 0.0, "high": 1.0}
    if view == "symmetric":
        return {"support": "real", "levels": None, "low": -1.0, "high": 1.0}
    if view == "binary":
        return {"support": "binary", "levels": None, "low": 0.0, "high": 1.0}
    return {"support": "categorical", "levels": top + 1, "low": 0.0, "high": float(top)}
