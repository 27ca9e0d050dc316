"""rowver's exceptions: one tree rooted at RowverError.

Database errors are mapped here, in one place, keeping their SQLSTATE, so callers can
catch by meaning (`except rowver.ConflictError`) and the CLI can print one clear line.
Python meets the database through rowver._sql, which applies the mapping once.

Errors a caller needs to tell apart carry rowver's own SQLSTATEs (class ``RV``), raised by
the functions in sql/ and mapped to their classes below; each is a subclass of the broader
class it was before, so ``except rowver.InvalidInputError`` still catches them:

=====  ======================  ====================  =================================================
code   class                   subclass of           raised when
=====  ======================  ====================  =================================================
RV001  CheckFailedError        RowverError           a guarded changeset's check refused it
RV002  StaleStageError         RowverError           a staged key changed after the stage's base
RV003  UnknownRefError         InvalidInputError     a ref names no version (unknown, empty, a time
                                                     before the first published head)
RV004  AboveHeadError          InvalidInputError     a version above head
RV005  PredatesTableError      InvalidInputError     a version before the table's first version
RV006  PrunedError             InvalidInputError     a version whose history retention pruned
RV007  UnknownTagError         UnknownRefError       no tag of that name (untag, tag moves)
RV008  NotVersionedError       RowverError           the table is not versioned (also PostgreSQL's 42704)
RV009  BadKeyError             InvalidInputError     a key missing columns, or given twice in a write
RV010  UnknownStageError       InvalidInputError     no stage of that name, or of another table
RV011  UnknownModelError       InvalidInputError     no model, model version or alias of that name
=====  ======================  ====================  =================================================

PostgreSQL's own codes keep their meaning: 40001/40P01 ConflictError (what rowver._retry
replays), 42501 PermissionDeniedError, 42P01/42703 UnknownTableError, 0A000 UnsupportedError,
classes 22, 23 and 42 InvalidInputError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class RowverError(Exception):
    """Any error rowver reports. `sqlstate` is set when the database raised it."""

    sqlstate: str | None = None

    def __init__(self, message: str, *, sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate or self.sqlstate
        self.hint = hint


class NotInstalledError(RowverError):
    """The database has no rowver catalog yet (run `rowver init`)."""


class ServerError(RowverError):
    """The server could not be reached or started."""


class UnknownTableError(RowverError):
    """The table (or one of its columns) does not exist."""

    sqlstate = "42P01"


class NotVersionedError(RowverError):
    """The table exists but versioning is not enabled on it."""

    sqlstate = "RV008"


class InvalidInputError(RowverError):
    """A ref, key, frame or option that cannot be used as given."""

    sqlstate = "22023"


class UnknownRefError(InvalidInputError):
    """A ref that names no version: no such tag, an empty ref, a time before any published head."""

    sqlstate = "RV003"


class AboveHeadError(InvalidInputError):
    """A version above head: it is not (yet) safe to read."""

    sqlstate = "RV004"


class PredatesTableError(InvalidInputError):
    """A version before the table's first version (the hint names that version)."""

    sqlstate = "RV005"


class PrunedError(InvalidInputError):
    """A version whose history retention pruned: it can no longer be read."""

    sqlstate = "RV006"


class UnknownTagError(UnknownRefError):
    """No tag of that name."""

    sqlstate = "RV007"


class BadKeyError(InvalidInputError):
    """A key that cannot be used: columns of it missing, or the same key given twice in one write."""

    sqlstate = "RV009"


class UnknownStageError(InvalidInputError):
    """No stage of that name (or it stages another table)."""

    sqlstate = "RV010"


class UnknownModelError(InvalidInputError):
    """No model, model version or alias of that name."""

    sqlstate = "RV011"


class ConflictError(RowverError):
    """PostgreSQL could not serialize this transaction with a concurrent one (SQLSTATE 40001,
    under REPEATABLE READ or SERIALIZABLE) or found a deadlock (40P01); retry."""

    sqlstate = "40001"


class PermissionDeniedError(RowverError):
    """The role lacks a privilege rowver needs (SQLSTATE 42501)."""

    sqlstate = "42501"


class UnsupportedError(RowverError):
    """Something rowver deliberately does not do (yet)."""

    sqlstate = "0A000"


class ModelIntegrityError(RowverError):
    """Stored model data is missing or does not match its hash."""

    sqlstate = "XX001"  # data_corrupted


class PromotionRefusedError(RowverError):
    """``promote`` found the candidate worse than the alias's current holder; nothing changed."""


class CheckFailedError(RowverError):
    """A guarded changeset's check refused it and the whole changeset was rolled back: nothing
    was written. ``check`` names the check, ``table`` the table it judged (None for a check
    over the whole changeset), ``counts`` what the writes did (inserted, updated, deleted,
    unchanged; rows before and after where counted) and ``sample_keys`` up to 5 keys."""

    sqlstate = "RV001"  # rowver's own: a guard refused the write (rowver.check_guards)

    def __init__(self, message: str, *, check: str = "", table: str | None = None,
                 counts: dict[str, int] | None = None, sample_keys: list[dict[str, object]] | None = None,
                 sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message, sqlstate=sqlstate, hint=hint)
        self.check = check
        self.table = table
        self.counts = dict(counts or {})
        self.sample_keys = list(sample_keys or [])


class StaleStageError(RowverError):
    """A stage could not be published: keys it stages changed in the table after the version
    it was computed against (``base``); nothing was written. ``keys`` holds up to 5 of them,
    ``count`` how many changed."""

    sqlstate = "RV002"  # rowver's own: rowver.refuse_stale_stage

    def __init__(self, message: str, *, stage: str = "", table: str | None = None, base: int | None = None,
                 count: int = 0, keys: list[dict[str, object]] | None = None,
                 sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message, sqlstate=sqlstate, hint=hint)
        self.stage = stage
        self.table = table
        self.base = base
        self.count = count
        self.keys = list(keys or [])


# The one rule for the catalog: `rowver init` installs or upgrades it, and so does `rowver enable`
# (db.enable), the first step on a new database; every other command on a database without it
# (or with an older one) says so, in these words.
NOT_INSTALLED = ("rowver is not installed in this database, or is older than this package; run `rowver init` "
                 "(or `rowver enable TABLE`, which installs it)")
# a catalog table missing (a relation of schema rowver that rowver makes, not one a user names)
_CATALOG = re.compile(r'relation "rowver\.(meta|slot|allocation|tracked|changeset|changeset_table|versioned|'
                      r'column_life|retention|head_mark|head_log|tag|tag_log|follower|staged|staged_row|model|model_version|'
                      r'model_tensor|model_alias|model_chunk)" does not exist')

# SQLSTATE (exact, or its two-character class) -> exception class.
_BY_SQLSTATE: dict[str, type[RowverError]] = {
    "42P01": UnknownTableError,
    "42703": UnknownTableError,
    "3F000": UnknownTableError,
    "42704": NotVersionedError,
    "RV003": UnknownRefError,
    "RV004": AboveHeadError,
    "RV005": PredatesTableError,
    "RV006": PrunedError,
    "RV007": UnknownTagError,
    "RV008": NotVersionedError,
    "RV009": BadKeyError,
    "RV010": UnknownStageError,
    "RV011": UnknownModelError,
    "40001": ConflictError,
    "40P01": ConflictError,
    "42501": PermissionDeniedError,
    "0A000": UnsupportedError,
    "22": InvalidInputError,
    "23": InvalidInputError,
    "42": InvalidInputError,
}


def shorten(text: str, limit: int = 300) -> str:
    """A message part cut to a readable length (inputs can be megabytes)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def from_database(exc: psycopg.Error) -> RowverError:
    """The RowverError for a database error: its message, SQLSTATE and hint kept."""
    state = exc.sqlstate or ""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    message = message.removeprefix("rowver: ")
    if state == CheckFailedError.sqlstate:  # its detail holds what it says, as JSON
        said = json.loads(diag.message_detail or "{}")
        return CheckFailedError(message, check=said.get("check", ""), table=said.get("table"),
                                counts=said.get("counts"), sample_keys=said.get("keys"))
    if state == StaleStageError.sqlstate:  # its detail holds the keys, as JSON
        said = json.loads(diag.message_detail or "{}")
        return StaleStageError(message, stage=said.get("stage", ""), table=said.get("table"), base=said.get("base"),
                               count=int(said.get("count") or 0), keys=said.get("keys"), hint=diag.message_hint)
    if diag.context and "COPY" in diag.context:
        # a value the table's type cannot take: name the column and line it came from
        message = f"{message} ({diag.context.splitlines()[0]})"
    if diag.message_detail:
        message = f"{message}: {diag.message_detail}"
    message = shorten(message, 500)
    if isinstance(exc, psycopg.OperationalError) and not state:
        return ServerError(message)
    if (state in ("3F000", "42883") and "rowver" in message) or (state == "42P01" and _CATALOG.search(message)):
        return NotInstalledError(NOT_INSTALLED, sqlstate=state)
    cls = _BY_SQLSTATE.get(state) or _BY_SQLSTATE.get(state[:2], RowverError)
    return cls(message, sqlstate=state or None, hint=diag.message_hint)


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors inside the block as RowverError (the cause is kept)."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_database(exc) from exc
    except UnicodeError as exc:  # text the connection's encoding cannot carry (e.g. a lone surrogate)
        raise InvalidInputError(f"text that cannot be sent to the database: {shorten(str(exc))}") from exc
