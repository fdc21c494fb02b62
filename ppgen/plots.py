"""Figures of fits, saved as PNG files: image grids, 2-D scatter plots, training curves.

Every function draws on its own ``matplotlib.figure.Figure`` with the Agg (raster, no display)
canvas, so it works on machines without a screen and leaves pyplot's global state and the
user's chosen backend alone. matplotlib is imported inside the functions, never when ``ppgen``
is imported. Files are written atomically: a reader never sees half a PNG, and an interrupted
write leaves the previous file intact.

Example:
    >>> from ppgen import plots
    >>> plots.image_grid(fit.sample(64), "runs/ppca/samples.png", title="PPCA samples")
    >>> plots.scatter(fit.sample(1000), "runs/ring/samples.png", reference=data.train)
    >>> plots.curves(fit.history, "runs/ppca/curves.png")
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_bytes
from .errors import ConfigError, DataError

__all__ = ["curves", "image_grid", "scatter", "scatter_strip", "mixture"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi: int = 100) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"figures are written as PNG; give a path ending in .png, not {str(path)!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _as_images(images, shape) -> np.ndarray:
    """(n, H, W) grey or (n, H, W, 3) colour images from (n, H, W), (n, C, H, W) or (n, D)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"image_grid needs at least one image; got an array of shape {x.shape}")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != math.prod(x.shape[1:]):
            raise DataError(f"cannot show examples of shape {x.shape[1:]} as images of shape {shape}: "
                            f"{math.prod(x.shape[1:])} values each, not {math.prod(shape)}")
        x = x.reshape((x.shape[0],) + shape)
    elif x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(f"flat examples of {x.shape[1]} values are not square images; pass "
                            f"shape=(H, W) or shape=(C, H, W)")
        x = x.reshape(x.shape[0], side, side)
    if x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):  # channels-last (n, H, W, C)
            x = x.transpose(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x[:, 0]
        elif x.shape[1] == 3:
            x = x.transpose(0, 2, 3, 1)
        else:
            raise DataError(f"images of shape {x.shape[1:]} have {x.shape[1]} channels; image_grid "
                            f"shows 1 (grey) or 3 (RGB) channels, as (n, C, H, W)")
    elif x.ndim != 3:
        raise DataError(f"image_grid takes (n, H, W), (n, C, H, W) or flat (n, D) with shape=; "
                        f"got an array of shape {np.shape(images)}")
    if not np.all(np.isfinite(x)):
        raise DataError("image_grid got NaN or infinite pixel values; check the samples")
    return x


def image_grid(images, path, shape: Sequence[int] | None = None, title: str | None = None) -> Path:
    """Save images side by side in a near-square grid as one PNG.

    Values are shown on one scale for the whole grid, from its smallest to its largest value
    (clip samples to the data's range first so that outliers do not wash the grid out).

    Args:
        images: ``(n, H, W)`` grey images, ``(n, C, H, W)`` with C = 1 or 3, or flat ``(n, D)``
            with ``shape`` (a flat square image needs no shape).
        path: the ``.png`` file to write (folders are created).
        shape: the shape of one image, ``(H, W)`` or ``(C, H, W)``, for flat input.
        title: a title above the grid.

    Returns:
        Path: ``path``.

    Example:
        >>> image_grid(fit.sample(64), "samples.png", title="PPCA, K = 8")
    """
    x = _as_images(images, shape)
    n, height, width = x.shape[:3]
    colour = x.ndim == 4
    low, high = float(x.min()), float(x.max())
    scaled = (x - low) / (high - low) if high > low else np.zeros_like(x)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 1
    mosaic = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad) + ((3,) if colour else ()))
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        mosaic[top:top + height, left:left + width] = scaled[i]
    inches = min(12.0, max(3.0, 0.6 * cols))
    fig = _figure(inches, inches * mosaic.shape[0] / mosaic.shape[1] + (0.4 if title else 0.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(mosaic, cmap=None if colour else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def image_rows(rows: Sequence, path, shape: Sequence[int] | None = None, row_names: Sequence[str] | None = None,
               title: str | None = None) -> Path:
    """Save rows of images (e.g. data over their reconstructions, or latent traversals) as one PNG.

    Args:
        rows: a list of image arrays, each (n, ...) as :func:`image_grid` takes; rows may differ in n.
        path: the ``.png`` file to write.
        shape: the shape of one image for flat input.
        row_names: a label at the left of each row.
        title: a title above the figure.

    Returns:
        Path: ``path``.
    """
    images = [_as_images(r, shape) for r in rows]
    low = min(float(x.min()) for x in images)
    high = max(float(x.max()) for x in images)
    cols = max(len(x) for x in images)
    height, width = images[0].shape[1:3]
    colour = images[0].ndim == 4
    pad = 1
    mosaic = np.ones((len(images) * (height + pad) + pad, cols * (width + pad) + pad) + ((3,) if colour else ()))
    for r, x in enumerate(images):
        scaled = (x - low) / (high - low) if high > low else np.zeros_like(x)
        for c in range(len(x)):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            mosaic[top:top + height, left:left + width] = scaled[c]
    inches = min(14.0, max(3.0, 0.6 * cols))
    fig = _figure(inches + 1.0, inches * mosaic.shape[0] / mosaic.shape[1] + (0.4 if title else 0.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(mosaic, cmap=None if colour else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + r * (height + pad) + height / 2 for r in range(len(images))])
    ax.set_yticklabels(list(row_names) if row_names else [""] * len(images))
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def latent_map(points, labels, decoded, path, title: str | None = None) -> Path:
    """A 2-D latent space: encoded points coloured by label, next to images decoded on a grid.

    Args:
        points: (N, 2) posterior means of q(z|x).
        labels: (N,) integer labels or None.
        decoded: (rows, cols, ...) images decoded at a regular grid of z (top row: largest z₂).
        path: the ``.png`` file to write.
        title: a title above the figure.

    Returns:
        Path: ``path``.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise DataError(f"latent_map needs (N, 2) latent points; got shape {points.shape}")
    decoded = np.asarray(decoded)
    rows, cols = decoded.shape[:2]
    images = _as_images(decoded.reshape((rows * cols,) + decoded.shape[2:]), None)
    height, width = images.shape[1:3]
    low, high = float(images.min()), float(images.max())
    scaled = (images - low) / (high - low) if high > low else np.zeros_like(images)
    mosaic = np.ones((rows * height, cols * width) + images.shape[3:])
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        mosaic[r * height:(r + 1) * height, c * width:(c + 1) * width] = scaled[i]
    fig = _figure(11.0, 5.2)
    ax = fig.add_subplot(1, 2, 1)
    colours = None if labels is None else np.asarray(labels)
    sc = ax.scatter(points[:, 0], points[:, 1], c=colours, s=6, cmap="tab10" if colours is not None else None)
    if colours is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("encoded data (means of q(z|x))")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.imshow(mosaic, cmap=None if mosaic.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax2.set_axis_off()
    ax2.set_title("decoded on a grid of z")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def scatter(points, path, reference=None, title: str | None = None, limits=None) -> Path:
    """Save 2-D points as a scatter plot, optionally over the data they should resemble.

    Args:
        points: ``(n, 2)`` samples, drawn in colour.
        path: the ``.png`` file to write.
        reference: ``(m, 2)`` data (e.g. the training set), drawn in grey behind the samples.
        title: a title above the plot.
        limits: ``((x_min, x_max), (y_min, y_max))`` to hold the axes fixed (e.g. over a series
            of pictures); default: fitted to what is drawn.

    Returns:
        Path: ``path``.

    Example:
        >>> scatter(fit.sample(1000), "samples.png", reference=data.train, title="ring")
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise DataError(f"scatter needs points of shape (n, 2); got {p.shape}")
    ref = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or ref.shape[1] != 2:
            raise DataError(f"scatter's reference must have shape (m, 2); got {ref.shape}")
    fig = _figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    size = max(1.0, min(12.0, 3000.0 / max(len(p), 1)))
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=size, c="0.7", alpha=0.5, linewidths=0, label="data")
    ax.scatter(p[:, 0], p[:, 1], s=size, c="tab:blue", alpha=0.7, linewidths=0, label="samples")
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    if ref is not None:
        ax.legend(loc="best", markerscale=max(1.0, 6.0 / size), frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def aggregated_posterior(codes, prior, path, labels=None, title: str | None = None) -> Path:
    """Save 2-D codes of data (an AAE's aggregated posterior q(z)) over draws of the prior p(z).

    Args:
        codes: (N, 2) codes of the data, coloured by ``labels`` when given.
        prior: (M, 2) draws of the prior, drawn underneath in grey.
        path: the ``.png`` file to write.
        labels: optional (N,) integer labels.
        title: optional figure title.

    Returns:
        Path: ``path``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    for name, value in (("codes", codes), ("prior", prior)):
        if value.ndim != 2 or value.shape[1] != 2:
            raise DataError(f"{name} has shape {value.shape}; aggregated_posterior draws 2-D points, shape (N, 2)")
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(prior[:, 0], prior[:, 1], s=3, color="0.75", alpha=0.5, label="prior p(z)", rasterized=True)
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=5, color="tab:blue", alpha=0.7, label="codes q(z)")
    else:
        labels = np.asarray(labels)
        from matplotlib import colormaps

        cmap = colormaps["tab10"]
        for k in np.unique(labels):
            pick = labels == k
            ax.scatter(codes[pick, 0], codes[pick, 1], s=5, color=cmap(int(k) % 10), alpha=0.8, label=str(k))
    ax.set_aspect("equal")
    ax.legend(fontsize=7, markerscale=2, loc="upper right", framealpha=0.8)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def scatter_strip(panels: Sequence, path, names: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Save a row of scatter panels of 2-D points that share axes (e.g. a diffusion chain from
    noise to data, one panel per step).

    Args:
        panels: a list of ``(n, 2)`` arrays, one per panel, left to right.
        path: the ``.png`` file to write.
        names: a label above each panel.
        title: a title above the figure.

    Returns:
        Path: ``path``.
    """
    arrays = [np.asarray(p, dtype=np.float64) for p in panels]
    if not arrays or any(a.ndim != 2 or a.shape[1] != 2 for a in arrays):
        raise DataError(f"scatter_strip needs a list of (n, 2) arrays; got shapes {[a.shape for a in arrays]}")
    if names is not None and len(names) != len(arrays):
        raise DataError(f"scatter_strip got {len(names)} names for {len(arrays)} panels")
    everything = np.concatenate(arrays)
    low, high = np.quantile(everything, 0.005, axis=0), np.quantile(everything, 0.995, axis=0)
    pad = 0.05 * (high - low + 1e-9)
    fig = _figure(2.2 * len(arrays), 2.6)
    for i, points in enumerate(arrays):
        ax = fig.add_subplot(1, len(arrays), i + 1)
        ax.scatter(points[:, 0], points[:, 1], s=3, c="tab:blue", alpha=0.6, linewidths=0)
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
        ax.set_xticks([])
        ax.set_yticks([])
        if names is not None:
            ax.set_title(names[i], fontsize=8)
    if title:
        fig.suptitle(title, y=1.06)
    return _save(fig, path)


def mixture(x, weights, locs, covariances, path, labels=None, title: str | None = None) -> Path:
    """Save a Gaussian mixture's components over the data: ellipses at 1 and 2 standard deviations.

    Data of more than two dimensions are projected on their first two principal components (the
    means and covariances with them: P μ and P Σ Pᵀ); the axes say so.

    Args:
        x: ``(n, d)`` data, coloured by ``labels`` when given (e.g. ``fit.predict(x)``).
        weights: ``(k,)`` mixture weights (ellipse opacity follows them).
        locs: ``(k, d)`` component means.
        covariances: ``(k, d, d)`` component covariances.
        path: the ``.png`` file to write.
        labels: ``(n,)`` integer component of each point, or None.
        title: a title above the plot.

    Returns:
        Path: ``path``.
    """
    from matplotlib.patches import Ellipse

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    locs = np.asarray(locs, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    k, d = locs.shape
    if x.shape[1] != d or covariances.shape != (k, d, d) or weights.shape != (k,):
        raise DataError(f"mixture needs x (n, {d}), weights ({k},), locs ({k}, {d}) and covariances "
                        f"({k}, {d}, {d}); got {x.shape}, {weights.shape}, {locs.shape}, {covariances.shape}")
    if d == 1:
        raise DataError("mixture draws 2-D ellipses; for 1-D data plot a histogram of x instead")
    axes_label = ("x[0]", "x[1]")
    if d > 2:
        centre = x.mean(0)
        _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
        P = vt[:2]
        x, locs = (x - centre) @ P.T, (locs - centre) @ P.T
        covariances = P @ covariances @ P.T
        axes_label = ("principal component 1", "principal component 2")
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    size = max(1.0, min(12.0, 3000.0 / max(len(x), 1)))
    colours = [f"C{i % 10}" for i in range(k)]
    if labels is None:
        ax.scatter(x[:, 0], x[:, 1], s=size, c="0.6", alpha=0.5, linewidths=0)
    else:
        labels = np.asarray(labels, dtype=int)
        ax.scatter(x[:, 0], x[:, 1], s=size, c=[colours[i] for i in labels], alpha=0.4, linewidths=0)
    top = weights.max() if weights.max() > 0 else 1.0
    for j in range(k):
        values, vectors = np.linalg.eigh(covariances[j])
        angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1]))
        for n_sd in (1, 2):
            width, height = 2 * n_sd * np.sqrt(np.maximum(values[::-1], 0))
            ax.add_patch(Ellipse(locs[j], width, height, angle=angle, fill=False, lw=1.5 if n_sd == 1 else 0.8,
                                 ec=colours[j], alpha=0.3 + 0.7 * weights[j] / top))
        ax.plot(*locs[j], marker="x", color="k", ms=6)
        ax.annotate(f"{j}: {weights[j]:.2f}", locs[j], textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(axes_label[0])
    ax.set_ylabel(axes_label[1])
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _records(history) -> list:
    if hasattr(history, "to_dict"):  # a pandas DataFrame
        return list(history.to_dict("records"))
    return list(history)


def curves(history, path, keys: Sequence[str] = ("loss", "log_likelihood")) -> Path:
    """Save training curves: one panel per metric in ``keys`` that the history records.

    Args:
        history: ``fit.history`` (a list of dicts with ``step`` and metrics, or a DataFrame).
        path: the ``.png`` file to write.
        keys: metrics to draw; those absent from the history are skipped.

    Returns:
        Path: ``path``.

    Raises:
        DataError: the history records none of ``keys``.

    Example:
        >>> curves(fit.history, "curves.png")
    """
    records = _records(history)

    def series(key):
        steps, values = [], []
        for i, record in enumerate(records):
            value = record.get(key) if isinstance(record, dict) else None
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
                steps.append(record.get("step", i + 1))
                values.append(float(value))
        return np.asarray(steps), np.asarray(values)

    panels = []
    for key in keys:
        steps, values = series(key)
        if values.size and np.any(values != 0):  # a metric that is always 0 (no penalty, say) gets no panel
            panels.append((key, steps, values))
    if not panels:
        present = sorted({k for r in records if isinstance(r, dict) for k in r})
        raise DataError(f"the history ({len(records)} steps) records none of {list(keys)}; "
                        f"it has {present}. Pass keys= naming one of those")
    fig = _figure(4.5 * len(panels), 3.2)
    for i, (key, steps, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(steps, values, color="tab:blue", linewidth=0.8, alpha=0.5 if len(values) > 50 else 1.0)
        if len(values) > 50:  # a moving average shows the trend of noisy minibatch losses
            width = max(2, len(values) // 50)
            smooth = np.convolve(values, np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1:], smooth, color="tab:blue", linewidth=1.5)
        validation = {"loss": "val_loss", "log_likelihood": "val_log_likelihood"}.get(key)
        if validation is not None:  # early stopping's evaluations, on the validation split
            val_steps, val_values = series(validation)
            if val_values.size:
                ax.plot(val_steps, val_values, "o-", color="tab:orange", markersize=3, linewidth=1,
                        label="validation")
                ax.plot([], [], color="tab:blue", label="training")
                ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(key.replace("_", " "))
        ax.ticklabel_format(axis="y", useOffset=False)  # a flat curve shows its values, not an offset
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
