"""rowver: versioned rows inside PostgreSQL.

    import rowver
    db = rowver.connect()            # URL, else ROWVER_URL, else the embedded default
    db.enable("customers")
    with db.changeset(message="nightly load") as cs:
        cs.sync("customers", frame)
    db.as_of("customers", "train-2026-11")

Importing rowver connects to nothing and imports neither pandas nor SQLAlchemy.
"""

from ._database import Database, connect
from ._export import ExportResult
from ._follow import Change, Committed
from ._guards import Check
from ._query import Result
from ._write import Changeset, WriteResult
from .errors import (
    AboveHeadError,
    BadKeyError,
    CheckFailedError,
    ConflictError,
    InvalidInputError,
    ModelIntegrityError,
    NotInstalledError,
    NotVersionedError,
    PermissionDeniedError,
    PredatesTableError,
    PromotionRefusedError,
    PrunedError,
    RowverError,
    ServerError,
    StaleStageError,
    UnknownModelError,
    UnknownRefError,
    UnknownStageError,
    UnknownTableError,
    UnknownTagError,
    UnsupportedError,
)
from .models import AliasMove, Comparison, Lineage, Model, ModelSummary, ModelVersion, Tensor

__version__ = "0.1.0"

__all__ = [
    "AboveHeadError",
    "AliasMove",
    "BadKeyError",
    "Change",
    "Changeset",
    "Check",
    "CheckFailedError",
    "Comparison",
    "Committed",
    "ConflictError",
    "Database",
    "ExportResult",
    "InvalidInputError",
    "Lineage",
    "Model",
    "ModelIntegrityError",
    "ModelSummary",
    "ModelVersion",
    "NotInstalledError",
    "NotVersionedError",
    "PermissionDeniedError",
    "PredatesTableError",
    "PromotionRefusedError",
    "PrunedError",
    "Result",
    "RowverError",
    "ServerError",
    "StaleStageError",
    "Tensor",
    "UnknownModelError",
    "UnknownRefError",
    "UnknownStageError",
    "UnknownTableError",
    "UnknownTagError",
    "UnsupportedError",
    "WriteResult",
    "connect",
]
