"""Readers for dataset files the user already has: MNIST-style IDX, CIFAR-10 binary, .npz.

Nothing here downloads anything, and nothing unpickles: IDX and CIFAR files are
parsed byte by byte with `np.frombuffer`, .npz files are opened with
``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._core import Dataset, from_arrays
from ._toys import split_counts
from ._views import check_view, pixel_meta, pixel_view

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_HINT = (
    "pass the folder that holds train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
    "(and optionally t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); "
    "ppgen never downloads, so fetch the files first"
)
CIFAR_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_TEST = "test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_HINT = (
    "pass the folder of the CIFAR-10 *binary* version (cifar-10-batches-bin) that holds "
    "data_batch_1.bin ... data_batch_5.bin and test_batch.bin; ppgen never downloads, "
    "and does not read the pickled python version"
)
NPZ_HINT = "pass a .npz file written with np.savez(path, train=..., val=..., test=..., y_train=...)"

# role -> accepted keys in a .npz file (at most one of them may be present)
NPZ_KEYS = {
    "train": ("train", "x", "data", "x_train"),
    "val": ("val", "x_val"),
    "test": ("test", "x_test"),
    "y_train": ("y_train", "labels", "y"),
    "y_val": ("y_val",),
    "y_test": ("y_test",),
}
VAL_SIZE = {"mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 5_000}


# ---------------------------------------------------------------- file access


def _missing(path: Path, hint: str) -> DataError:
    return DataError(f"no such file or directory: {str(path)!r}; {hint}")


def _folder(path: str | os.PathLike, hint: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise _missing(folder, hint)
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is a file, not a folder; {hint}")
    return folder


def _listing(folder: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return "(could not list it)"
    if not names:
        return "nothing (the folder is empty)"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_bytes(path: Path) -> bytes:
    """Read a whole file, gunzipping it when it is gzip-compressed (by content, not name)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"could not read {str(path)!r} ({e}); check that it is a readable file") from e
    if data[:2] == b"\x1f\x8b" or path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"{str(path)!r} is a corrupt or incomplete gzip file ({e}); download it again, "
                "or gunzip a good copy and pass the plain file"
            ) from e
    return data


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def parse_idx(data: bytes, where: str, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (the MNIST format) into a uint8 array.

    Layout: two zero bytes, a dtype code (0x08 = unsigned byte), the number of
    dimensions, each dimension as a big-endian uint32, then the values in C order.

    Args:
        data: the whole (uncompressed) file.
        where: the file's path, for error messages.
        ndim: the number of dimensions expected (3 for images, 1 for labels).

    Returns:
        A read-only uint8 array of the dimensions in the header.

    Raises:
        DataError: wrong magic, dtype code or dimension count; the file is
            truncated or has bytes beyond the declared data.
    """
    if len(data) < 4:
        raise DataError(
            f"{where} is truncated: expected at least a 4-byte IDX header, found {len(data)} bytes; "
            "download the file again"
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{where} is not an IDX file: it starts with bytes 0x{data[0]:02x} 0x{data[1]:02x} "
            "instead of the IDX magic 0x00 0x00; pass the original (optionally .gz) MNIST-format file"
        )
    if data[2] != 0x08:
        raise DataError(
            f"{where} has IDX dtype code 0x{data[2]:02x}; only unsigned-byte data (0x08) is supported "
            "for images and labels; pass the original MNIST-format file"
        )
    if data[3] != ndim:
        kind = "an image file" if ndim == 3 else "a label file"
        raise DataError(
            f"{where} has {data[3]} dimensions but {kind} must have {ndim}; "
            "check that images and labels files are not swapped or renamed"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{where} is truncated: expected at least {header} header bytes, found {len(data)}; "
            "download the file again"
        )
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = math.prod(dims)
    expected = header + count
    if len(data) < expected:
        raise DataError(
            f"{where} is truncated: expected {expected} bytes for dimensions {list(dims)}, "
            f"found {len(data)}; download the file again"
        )
    if len(data) > expected:
        raise DataError(
            f"{where} has {len(data) - expected} bytes beyond the {expected} its header declares "
            f"(dimensions {list(dims)}); it is not a valid IDX file, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / (stem + ".gz")):
        if cand.is_file():
            return cand
    return None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(read_bytes(images_path), repr(str(images_path)), 3)
    labels = parse_idx(read_bytes(labels_path), repr(str(labels_path)), 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{str(images_path)!r} holds {images.shape[0]} images but {str(labels_path)!r} holds "
            f"{labels.shape[0]} labels; the two files must come from the same release"
        )
    if images.shape[0] == 0:
        raise DataError(f"{str(images_path)!r} holds no images; pass a file with at least one image")
    return images, labels


def _val_cut(n: int, fixed: int, val_fraction: float, what: str) -> int:
    """Index where val starts: the last ``fixed`` examples if there are more, else a fraction."""
    if n > fixed:
        return n - fixed
    n_train, n_val, _ = split_counts(n, val_fraction, 0.0)
    if n_train < 1:
        raise DataError(
            f"{what} holds {n} training examples: too few to keep any for training with "
            f"val_fraction={val_fraction}; lower val_fraction"
        )
    return n_train


def _pixel_dataset(
    name: str,
    view: str,
    train_raw: np.ndarray,
    train_y: np.ndarray,
    test_raw: np.ndarray | None,
    test_y: np.ndarray | None,
    cut: int,
    source: Path,
    files: list[str],
) -> Dataset:
    x_train = pixel_view(train_raw, view, 255)
    x_test = None if test_raw is None else pixel_view(test_raw, view, 255)
    y_train = train_y.astype(np.int64)
    y_test = None if test_y is None else test_y.astype(np.int64)
    for y, what in ((y_train, "training"), (y_test, "test")):
        if y is not None and y.size and (int(y.max()) > 9 or int(y.min()) < 0):
            bad = int(np.flatnonzero((y > 9) | (y < 0))[0])
            raise DataError(f"the {what} labels of {source} hold {int(y[bad])} at position {bad}; MNIST and "
                            f"Fashion-MNIST labels are the classes 0..9: the labels file is damaged or not an "
                            f"MNIST-format labels file")
    val = x_train[cut:] if cut < len(x_train) else None
    y_val = y_train[cut:] if val is not None else None
    meta = {
        "view": view,
        "num_classes": 10,
        "source": str(source),
        "files": files,
        **pixel_meta(view, 255),
    }
    return from_arrays(x_train[:cut], val, x_test, (y_train[:cut], y_val, y_test), name=name, meta=meta)


def load_idx(name: str, path: str | os.PathLike, view: str | None, val_fraction: float) -> Dataset:
    """Load MNIST or Fashion-MNIST from a folder of IDX files (see `ppgen.datasets.load`)."""
    view = check_view(view, name)
    folder = _folder(path, IDX_HINT)
    found = {role: _find_idx(folder, stem) for role, stem in IDX_STEMS.items()}
    missing = [IDX_STEMS[r] + "[.gz]" for r in ("train_images", "train_labels") if found[r] is None]
    if missing:
        raise DataError(
            f"folder {str(folder)!r} has no {' and no '.join(missing)} (it holds: {_listing(folder)}); {IDX_HINT}"
        )
    train_raw, train_y = _read_idx_pair(found["train_images"], found["train_labels"])
    test_raw = test_y = None
    if (found["test_images"] is None) != (found["test_labels"] is None):
        have, lack = ("test_images", "test_labels") if found["test_labels"] is None else ("test_labels", "test_images")
        raise DataError(
            f"folder {str(folder)!r} has {found[have].name} but no {IDX_STEMS[lack]}[.gz]; "
            "add the missing test file, or remove both t10k files to load without a test split"
        )
    if found["test_images"] is not None:
        test_raw, test_y = _read_idx_pair(found["test_images"], found["test_labels"])
        if test_raw.shape[1:] != train_raw.shape[1:]:
            raise DataError(
                f"test images in {str(found['test_images'])!r} are {test_raw.shape[1:]} pixels but training "
                f"images in {str(found['train_images'])!r} are {train_raw.shape[1:]}; "
                "use files from the same dataset"
            )
    cut = _val_cut(len(train_raw), VAL_SIZE[name], val_fraction, repr(str(found["train_images"])))
    files = [p.name for p in found.values() if p is not None]
    return _pixel_dataset(name, view, train_raw, train_y, test_raw, test_y, cut, folder, files)


# ---------------------------------------------------------------- CIFAR-10 (binary version)


def parse_cifar(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a CIFAR-10 binary batch into ``(images (N, 3, 32, 32) uint8, labels (N,) uint8)``.

    Each record is 1 label byte followed by 3072 pixel bytes: the 32x32 red
    plane, then green, then blue, each row by row.

    Raises:
        DataError: the size is not a positive multiple of 3073 bytes, or a
            label byte is not in 0..9 (a CIFAR-100 file, or misaligned data).
    """
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise DataError(
            f"{where} is {len(data)} bytes, not a positive multiple of {CIFAR_RECORD} "
            f"(1 label byte + 3072 pixel bytes per image): it is truncated or not a CIFAR-10 "
            f"binary batch; {CIFAR_HINT}"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(
            f"{where} has label byte {int(labels[bad[0]])} in record {int(bad[0])}; CIFAR-10 labels "
            f"are 0..9, so this is not a CIFAR-10 binary batch (CIFAR-100?); {CIFAR_HINT}"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(path: str | os.PathLike, view: str | None, val_fraction: float) -> Dataset:
    """Load CIFAR-10 from a folder of binary batches (see `ppgen.datasets.load`)."""
    view = check_view(view, "cifar10")
    folder = _folder(path, CIFAR_HINT)
    if not any((folder / f).is_file() for f in CIFAR_BATCHES) and (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    batches = [folder / f for f in CIFAR_BATCHES if (folder / f).is_file()]
    if not batches:
        raise DataError(
            f"folder {str(folder)!r} has none of {', '.join(CIFAR_BATCHES)} "
            f"(it holds: {_listing(folder)}); {CIFAR_HINT}"
        )
    parts = [parse_cifar(read_bytes(p), repr(str(p))) for p in batches]
    n = sum(len(y) for _, y in parts)
    train_raw = np.empty((n, 3, 32, 32), dtype=np.uint8)
    train_y = np.empty(n, dtype=np.uint8)
    i = 0
    for imgs, ys in parts:
        train_raw[i : i + len(ys)] = imgs
        train_y[i : i + len(ys)] = ys
        i += len(ys)
    del parts
    test_raw = test_y = None
    files = [p.name for p in batches]
    if (folder / CIFAR_TEST).is_file():
        test_raw, test_y = parse_cifar(read_bytes(folder / CIFAR_TEST), repr(str(folder / CIFAR_TEST)))
        files.append(CIFAR_TEST)
    cut = _val_cut(n, VAL_SIZE["cifar10"], val_fraction, f"folder {str(folder)!r}")
    return _pixel_dataset("cifar10", view, train_raw, train_y, test_raw, test_y, cut, folder, files)


# ---------------------------------------------------------------- .npz


def load_npz(path: str | os.PathLike) -> Dataset:
    """Load arrays saved with ``np.savez`` (see `ppgen.datasets.load` for the keys)."""
    file = Path(path).expanduser()
    if not file.exists():
        raise _missing(file, NPZ_HINT)
    if file.is_dir():
        raise DataError(
            f"{str(file)!r} is a folder, not a .npz file; {NPZ_HINT} "
            "(for a folder of MNIST or CIFAR-10 files use load('mnist', path=...) or load('cifar10', path=...))"
        )
    try:
        npz = np.load(file, allow_pickle=False)
    except ValueError as e:
        raise DataError(
            f"{str(file)!r} holds pickled data ({e}), which ppgen never loads because unpickling "
            f"can run arbitrary code; {NPZ_HINT}"
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"could not read {str(file)!r} as a .npz file ({e}); {NPZ_HINT}") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{str(file)!r} is a single .npy array, not a .npz archive; {NPZ_HINT}")
    with npz:
        keys = list(npz.files)
        accepted = [k for ks in NPZ_KEYS.values() for k in ks]
        unknown = [k for k in keys if k not in accepted]
        if unknown:
            raise DataError(
                f"{str(file)!r} has unrecognised key(s) {unknown} (keys found: {keys}); accepted keys are "
                f"{accepted}; rename or remove them so that no split is silently dropped"
            )
        arrays: dict[str, Any] = {}
        for role, names in NPZ_KEYS.items():
            present = [k for k in names if k in keys]
            if len(present) > 1:
                raise DataError(
                    f"{str(file)!r} has keys {present}, which all mean {role!r}; keep only one of them"
                )
            if present:
                try:
                    arrays[role] = npz[present[0]]
                except ValueError as e:
                    raise DataError(
                        f"key {present[0]!r} of {str(file)!r} is an object array, which needs pickle; "
                        f"pickled object arrays are not accepted ({e}). Save plain numeric arrays instead "
                        "(e.g. np.asarray(x, dtype=np.float32))"
                    ) from e
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                    raise DataError(f"key {present[0]!r} of {str(file)!r} is corrupt ({e}); write the file again") from e
    if "train" not in arrays:
        raise DataError(
            f"{str(file)!r} has no training data: keys found {keys}, expected one of "
            f"{list(NPZ_KEYS['train'])}; {NPZ_HINT}"
        )
    labels = None
    if any(arrays.get(k) is not None for k in ("y_train", "y_val", "y_test")):
        labels = {s: arrays.get("y_" + s) for s in ("train", "val", "test")}
    try:
        return from_arrays(
            arrays["train"],
            arrays.get("val"),
            arrays.get("test"),
            labels,
            name="npz",
            meta={"source": str(file)},
        )
    except DataError as e:
        raise DataError(f"{str(file)!r}: {e}") from e
