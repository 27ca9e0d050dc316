"""The model store (DESIGN §5): models as versioned rows, weights as content-addressed chunks.

    _types    what the store returns (ModelVersion, Model, AliasMove, ...), no numpy needed
    _chunks   chunks: hashed by threads, written by COPY in transactions of their own
    _blobs    weights and artifacts as blobs to chunk (dtype codec, arrays, files)
    _torch    the optional PyTorch adapter
    _dir      a model version as a directory (export, import)
    _store    ``Models``, the API behind ``db.models``

The value types import without numpy, so ``import rowver`` stays light; ``Models`` (numpy,
the chunk writer) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._types import AliasMove, Comparison, Lineage, Model, ModelSummary, ModelVersion, Tensor

if TYPE_CHECKING:
    from ._store import Models

__all__ = ["AliasMove", "Comparison", "Lineage", "Model", "ModelSummary", "ModelVersion", "Models", "Tensor"]


def __getattr__(name: str) -> Any:
    if name == "Models":
        from ._store import Models

        return Models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
