"""What the model store returns: value types, no behaviour beyond small properties."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tensor:
    """A weight or artifact of a model version, as its manifest records it."""

    kind: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    chunk_size: int
    chunks: tuple[bytes, ...] = field(repr=False)

    @property
    def same_bytes_as(self) -> tuple[str, tuple[int, ...], tuple[bytes, ...]]:
        """What makes two tensors equal: dtype, shape and content."""
        return (self.dtype, self.shape, self.chunks)


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model: its metadata and manifest (no weights)."""

    model: str
    version: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    tags: list[str]
    description: str | None
    data_version: int | None
    data_ref: str | None
    code_revision: str | None
    author: str | None
    db_user: str
    created_at: dt.datetime
    nbytes: int
    content_hash: str
    changeset: int                 # the rowver version that recorded this model version
    aliases: list[str]
    tensors: list[Tensor] = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: its data version and the changesets around it."""

    model: str
    version: int
    data_version: int | None
    data_ref: str | None
    data_changeset: dict[str, Any] | None   # the newest changeset at or below data_version
    saved_in: dict[str, Any]                # the changeset that recorded the model version
    code_revision: str | None


@dataclass(frozen=True)
class Model(ModelVersion):
    """A loaded model version: metadata plus weights (numpy arrays) and artifacts (bytes)."""

    weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)
    lineage: Lineage | None = None

    def state_dict(self) -> Any:
        """The weights as a PyTorch state dict (needs torch)."""
        from . import _torch

        return _torch.state_dict(self.weights, {t.name: t.dtype for t in self.tensors})


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    description: str | None
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    old_version: int | None
    new_version: int
    changeset: int | None          # None: nothing moved, so no changeset


@dataclass(frozen=True)
class Comparison:
    a: ModelVersion
    b: ModelVersion
    params: list[tuple[str, Any, Any]]      # (key, a, b) for every key in either
    metrics: list[tuple[str, Any, Any]]
    tensors: list[tuple[str, str, str]]     # (kind/name, 'same'|'changed'|'added'|'removed', detail)

    @property
    def changed_tensors(self) -> list[str]:
        return [name for name, state, _ in self.tensors if state != "same"]


__all__ = ["AliasMove", "Comparison", "Lineage", "Model", "ModelSummary", "ModelVersion", "Tensor"]
