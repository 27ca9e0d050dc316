"""Weights and artifacts as blobs save streams from, and dtypes as text both ways (never pickle)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelIntegrityError
from . import _torch
from ._chunks import Blob

# -- dtypes: text both ways, never pickle ---------------------------------------------------


def dtype_text(dtype: np.dtype) -> str:
    """numpy's dtype.str ('<f4'); a structured dtype as its JSON descr."""
    if dtype.hasobject:
        raise InvalidInputError(f"dtype {dtype} holds Python objects, which cannot be stored as raw bytes")
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return json.dumps(np.lib.format.dtype_to_descr(dtype))


def dtype_from_text(text: str) -> np.dtype:
    """The numpy dtype stored as ``text``; raw unsigned ints for torch-only dtypes."""

    if text.startswith("torch."):
        return np.dtype(_torch.raw_dtype(text))
    try:
        dtype = np.lib.format.descr_to_dtype(_tuples(json.loads(text))) if text.startswith("[") else np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise ModelIntegrityError(f"unknown stored dtype {text!r}") from exc
    if dtype.hasobject:
        raise ModelIntegrityError(f"stored dtype {text!r} holds Python objects; refusing to load it")
    return dtype


def _tuples(descr: Any) -> Any:
    """A JSON descr back in numpy's shape: fields are tuples, shapes tuples of ints."""
    if not isinstance(descr, list):
        return descr
    out = []
    for name, fmt, *rest in descr:
        out.append((tuple(name) if isinstance(name, list) else name, _tuples(fmt),
                    *(tuple(r) for r in rest)))
    return out


# -- blobs: what save streams from --------------------------------------------------------------


def array_blob(name: str, value: Any) -> Blob:
    if type(value).__module__.split(".")[0] == "torch":
        from . import _torch

        value, label = _torch.to_numpy(value)
    else:
        label = None
    if not isinstance(value, np.ndarray):
        raise InvalidInputError(f"weights[{name!r}] is a {type(value).__name__}, not a numpy array "
                                "(weights map names to numpy arrays or torch tensors)")
    text = label or dtype_text(value.dtype)
    flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)

    def slices(size: int) -> Iterator[memoryview]:
        view = flat.data
        for start in range(0, flat.nbytes, size):
            yield view[start:start + size]

    return Blob("weight", name, text, tuple(int(n) for n in value.shape), int(value.nbytes), slices)


def artifact_blob(name: str, value: Any) -> Blob:
    if isinstance(value, os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise InvalidInputError(f"artifacts[{name!r}]: {path} is not a file")
        return file_blob("artifact", name, "|u1", None, path, 0, path.stat().st_size)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = memoryview(value).cast("B")

        def slices(size: int) -> Iterator[memoryview]:
            for start in range(0, len(data), size):
                yield data[start:start + size]

        return Blob("artifact", name, "|u1", (len(data),), len(data), slices)
    raise InvalidInputError(f"artifacts[{name!r}] is a {type(value).__name__}; "
                            "an artifact is bytes or a pathlib.Path to a file")


def file_blob(kind: str, name: str, dtype: str, shape: tuple[int, ...] | None, path: Path,
               offset: int, nbytes: int, expect: list[bytes] | None = None) -> Blob:
    """A blob read from ``path`` at ``offset``, one fresh buffer per slice (never mapped:
    a mapping would count against a memory limit the whole file at once)."""

    def slices(size: int) -> Iterator[bytearray]:
        with path.open("rb") as f:
            f.seek(offset)
            left = nbytes
            while left > 0:
                buf = bytearray(min(size, left))
                got = f.readinto(buf)
                if got != len(buf):
                    raise InvalidInputError(f"{path} is truncated: {nbytes - left + (got or 0)} of "
                                            f"{nbytes} bytes of {kind} {name!r}")
                left -= got
                yield buf

    return Blob(kind, name, dtype, shape if shape is not None else (nbytes,), nbytes, slices, expect)
