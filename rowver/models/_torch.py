"""The optional PyTorch adapter: state dicts to numpy arrays and back.

torch is imported only here, and only when a tensor or ``Model.state_dict()`` asks for it.
Tensors whose dtype numpy lacks (bfloat16, float8) travel as their raw bits in an
unsigned integer array, with the torch dtype kept in the manifest ('torch.bfloat16').
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import RowverError

# torch-only dtypes -> the numpy dtype that carries their bits
RAW = {"torch.bfloat16": "<u2", "torch.float8_e4m3fn": "|u1", "torch.float8_e5m2": "|u1",
       "torch.float8_e4m3fnuz": "|u1", "torch.float8_e5m2fnuz": "|u1"}


def raw_dtype(label: str) -> str:
    try:
        return RAW[label]
    except KeyError:
        raise RowverError(f"unknown stored dtype {label!r}") from None


def to_numpy(tensor: Any) -> tuple[np.ndarray, str | None]:
    """A tensor's bytes as a numpy array (sharing memory where it can), and the torch dtype
    label when numpy has no such dtype."""
    import torch

    t = tensor.detach().cpu().contiguous()
    label = "torch." + str(t.dtype).removeprefix("torch.")
    if label in RAW:
        bits = torch.int16 if t.element_size() == 2 else torch.uint8
        return t.view(bits).numpy().view(RAW[label]), label
    return t.numpy(), None


def state_dict(weights: Mapping[str, np.ndarray], dtypes: Mapping[str, str]) -> dict[str, Any]:
    """numpy weights as torch tensors (sharing memory), torch-only dtypes restored."""
    import torch

    out: dict[str, Any] = {}
    for name, array in weights.items():
        label = dtypes.get(name, "")
        if label in RAW:
            bits = array.view(np.int16 if array.itemsize == 2 else np.uint8)
            out[name] = torch.from_numpy(bits).view(getattr(torch, label.removeprefix("torch.")))
        else:
            native = array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
            out[name] = torch.from_numpy(native)
    return out
