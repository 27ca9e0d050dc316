"""The write layer: changesets, and rows staged by COPY then applied set-based.

A changeset is one transaction, so one version. Each call stages its rows (COPY into a
temporary table), validates them and only then writes to the versioned table, so the
version is allocated as late as possible. The capture triggers write history; this module
never does. Each call is kept as a value (WriteOp): when rowver._retry's policy says an
error is cured by a replay (a serialization failure or deadlock; an upsert's or sync's unique
violation), the transaction is rolled back, begun again, and the calls made so far replayed.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from . import _frames, _guards, _retry, _sql
from ._guards import ChangesetCheck, Guards, Limit
from ._sql import Connected
from .errors import (
    CheckFailedError,
    ConflictError,
    InvalidInputError,
    RowverError,
    from_database,
    shorten,
    translated,
)

# told (done, total) as a write call sends its rows to the server: rows sent so far (a CSV file:
# bytes read, its size the total), and how many in all (None while unknown); the last call is
# (total, total). The server's diff and writes follow it. A replay after a serialization
# failure counts again from 0. Called from the calling thread, every PROGRESS_EVERY rows.
Progress = Callable[[int, int | None], Any]
PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class WriteResult:
    """What one write call did, and the version its changeset writes (None: nothing yet)."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    version: int | None = None
    stage: str | None = None  # the stage it was kept under, unwritten (cs.sync(..., stage=))


class Changeset:
    """``with db.changeset(message=..., author=...) as cs:`` — every call inside is one version.

    ``checks``: rowver.Check values and functions of the changeset's counts, judged just before
    the commit (see rowver._guards); a write call's own limits (``max_deleted=`` ...) are judged
    by the server after its diff, before it writes. A refusal rolls the whole changeset back, even
    if the error is caught inside the block (it is raised again at the end)."""

    def __init__(self, db: Connected, *, message: str | None = None, author: str | None = None,
                 retries: int = 5, dry_run: bool = False, checks: Iterable[ChangesetCheck] | None = None):
        self._db = db
        self.message = message
        self.author = author
        self._policy = _retry.Policy(retries=retries)
        self.dry_run = dry_run  # run every call, count what it does, and roll it all back
        self.checks = _guards.checks_given(checks)
        self._ops: list[WriteOp] = []  # the calls so far, replayed after a retryable error
        self._results: list[tuple[str, WriteResult]] = []  # (table as named, what the call did), for checks
        self._refused: CheckFailedError | None = None  # a check refused it: it can only roll back
        self._tx: ExitStack | None = None  # holds the open transaction
        self.version: int | None = None

    # -- the transaction ------------------------------------------------------------

    def __enter__(self) -> Changeset:
        self._begin()
        try:
            for check in self.checks:  # an unknown or unversioned table fails before any write
                if isinstance(check, _guards.Check):
                    _sql.one(self._db.conn, "select rowver.registered(%s::regclass)", (check.table,))
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self._tx is not None and self._refused is None:
            try:
                with translated():
                    self._judge()
            except BaseException as error:
                self.__exit__(type(error), error, error.__traceback__)
                raise
        tx, self._tx = self._tx, None
        if tx is None:
            return
        with translated():
            if exc_type is None and self._refused is not None:  # its error was caught: roll back, say it again
                tx.__exit__(CheckFailedError, self._refused, None)
                raise self._refused
            if exc_type is None and self.dry_run:
                tx.__exit__(psycopg.Rollback, psycopg.Rollback(), None)  # (nothing stays; the version is burnt)
                return
            tx.__exit__(exc_type, exc, tb)  # commits, or rolls back on an exception
            if exc_type is None:
                self._db.conn.execute("select rowver.publish_head()")

    def _begin(self) -> None:
        conn = self._db.conn
        with translated():
            self._tx = ExitStack()
            self._tx.enter_context(conn.transaction())
            try:
                # transaction-local only: a session-level SET would leak through connection poolers
                conn.execute("select set_config('rowver.message', %s, true), set_config('rowver.author', %s, true),"
                             " set_config('rowver.capture', 'on', true)",
                             (self.message or "", self.author or ""))
            except BaseException:
                tx, self._tx = self._tx, None
                tx.close()  # roll back now: a transaction left open would swallow later ones
                raise

    def _rollback(self) -> None:
        """Roll the transaction back now, freeing its locks (before a retry's wait)."""
        if self._tx is not None:
            tx, self._tx = self._tx, None
            with translated():
                tx.__exit__(ConflictError, ConflictError("retry"), None)

    def _replay(self) -> None:
        """Begin again and replay the calls so far (after a rollback)."""
        self._rollback()
        self._begin()
        self._results = []
        for op in self._ops:
            self._count(op, op.run())

    def _count(self, op: WriteOp, result: WriteResult) -> None:
        if result.stage is None:  # (a staged call wrote nothing: no check judges it)
            self._results.append((op.table, result))
            self.version = result.version

    def _run(self, op: WriteOp) -> WriteResult:
        if self._refused is not None:
            raise _guards.refused_again(self._refused)
        if self._tx is None:
            raise RowverError("this changeset is closed; open a new one with db.changeset()")

        def attempt(replay: int) -> WriteResult:
            try:
                with translated():
                    if replay:
                        self._replay()
                    with self._db.conn.transaction():  # a savepoint: a failed call changes nothing
                        return op.run()
            except CheckFailedError as exc:
                self._refused = exc
                raise

        result = self._policy.run(attempt, op.retryable, before_wait=self._rollback)
        self._ops.append(op)
        self._count(op, result)
        return result

    # -- writes -----------------------------------------------------------------------

    # Each call below takes limits on what it may do, judged after its diff and before it writes
    # (a refusal rolls the whole changeset back): max_deleted and max_changed (updated or
    # deleted), an int a number of rows, a float in [0, 1] a fraction of the rows the table held
    # before the call; expect_rows=(lo, hi), the rows it holds after (None: open).
    # sync, upsert, delete and load take stage="name": the diff is computed and kept under that
    # name (rowver.staged), the table is not written and no version is taken; db.publish(name)
    # writes it later (sql/32_stage.sql). A name that exists is refused unless replace=True.
    # Each takes progress=, a function told (rows sent, rows in all) as it goes (see Progress).

    def insert(self, table: str, rows: Any, *, max_deleted: Limit | None = None, max_changed: Limit | None = None,
               expect_rows: tuple[int | None, int | None] | None = None,
               progress: Progress | None = None) -> WriteResult:
        """Insert new rows (a DataFrame or dicts); an existing key is an error."""
        return self._run(WriteOp("insert", table, self._load, (table, rows, "insert",
                                                               Guards(max_deleted, max_changed, expect_rows), None,
                                                               progress)))

    def upsert(self, table: str, rows: Any, *, max_deleted: Limit | None = None, max_changed: Limit | None = None,
               expect_rows: tuple[int | None, int | None] | None = None, stage: str | None = None,
               replace: bool = False, progress: Progress | None = None) -> WriteResult:
        """Insert new keys and update changed rows; unchanged rows cost nothing."""
        return self._run(WriteOp("upsert", table, self._load, (table, rows, "upsert",
                                                               Guards(max_deleted, max_changed, expect_rows),
                                                               _kept(stage, replace), progress)))

    def delete(self, table: str, rows: Any, *, max_deleted: Limit | None = None, max_changed: Limit | None = None,
               expect_rows: tuple[int | None, int | None] | None = None, stage: str | None = None,
               replace: bool = False, progress: Progress | None = None) -> WriteResult:
        """Delete the rows with these keys (tombstones in history)."""
        return self._run(WriteOp("delete", table, self._load, (table, rows, "delete",
                                                               Guards(max_deleted, max_changed, expect_rows),
                                                               _kept(stage, replace), progress)))

    def sync(self, table: str, rows: Any, *, max_deleted: Limit | None = None, max_changed: Limit | None = None,
             expect_rows: tuple[int | None, int | None] | None = None, stage: str | None = None,
             replace: bool = False, progress: Progress | None = None) -> WriteResult:
        """Make ``table`` equal this full snapshot: only differences become versions.
        ``max_deleted=0.05`` refuses a snapshot that would delete more than 5% of the rows.
        ``stage="name"``: keep the diff under that name for a look, write nothing (see above)."""
        return self._run(WriteOp("sync", table, self._load, (table, rows, "sync",
                                                               Guards(max_deleted, max_changed, expect_rows),
                                                               _kept(stage, replace), progress)))

    def publish(self, name: str) -> WriteResult:
        """Write the stage ``name`` in this changeset, then drop it; refused (StaleStageError,
        nothing written) when a key it stages changed in the table after it was staged."""
        table = _sql.value(self._db.conn, "select (select v.relid::text from rowver.staged s join rowver.versioned v"
                                          " on v.id = s.table_id where s.name = %s)", (name,))
        return self._run(WriteOp("publish", table or name, self._publish, (table or name, name)))

    def revert(self, table: str, to: str | int) -> WriteResult:
        """Restore ``table`` as of ``to``; the reverted-from state stays readable."""
        return self._run(WriteOp("revert", table, self._revert, (table, str(to))))

    def truncate(self, table: str, *, cascade: bool = False) -> int:
        """Delete every row of ``table`` (tombstones in history), then give the space back."""
        return int(self._run(WriteOp("truncate", table, self._truncate, (table, cascade))).deleted)

    def load(self, table: str, path: str | os.PathLike[str], mode: str = "sync", *,
             max_deleted: Limit | None = None, max_changed: Limit | None = None,
             expect_rows: tuple[int | None, int | None] | None = None, stage: str | None = None,
             replace: bool = False, key: Sequence[str] | None = None,
             progress: Progress | None = None) -> WriteResult:
        """Rows from a CSV file whose header line names the columns (or a .parquet file), streamed
        to the server by COPY (which reads each value into its column's type), then applied as
        ``mode`` (sync, upsert, insert or delete) like the calls above, with the same limits. A bad
        value is one error naming the file's line and column; nothing is written. ``key``: the
        columns rows are matched by, stated to be sure: they must be the table's key as versioned
        (rowver matches rows by no other), else an error naming both, before anything is read.
        ``progress``: told the bytes read of a CSV file, the rows sent of a Parquet file."""
        return self._run(WriteOp(mode, table, self._load_file,
                                 (table, os.fspath(path), mode, Guards(max_deleted, max_changed, expect_rows),
                                  _kept(stage, replace), progress, None if key is None else _key_names(key))))

    # -- the statements behind them ------------------------------------------------------

    def _load(self, table: str, rows: Any, mode: str, guards: Guards, kept: Kept = None,
              progress: Progress | None = None) -> WriteResult:
        conn = self._db.conn
        keys, known, json_cols = _table_shape(conn, table)
        columns, records = _frames.to_records(rows)
        _frames.check_rows(table, columns, records, keys, known)
        stage = _sql.value(conn, "select rowver.stage(%s::regclass, %s::name[])", (table, columns))
        copy = sql.SQL("copy {} ({}) from stdin").format(
            sql.Identifier(*stage.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns)))
        try:
            with conn.cursor().copy(copy) as cp:
                for row in _with_progress(_frames.adapt_json(columns, json_cols, records), len(records), progress):
                    cp.write_row(row)
        except (TypeError, ValueError, UnicodeError) as exc:  # a value psycopg cannot send
            raise InvalidInputError(f"a value for {table} cannot be sent: {shorten(str(exc))}") from exc
        return _apply(conn, table, stage, mode, guards, kept)

    def _load_file(self, table: str, path: str, mode: str, guards: Guards, kept: Kept = None,
                   progress: Progress | None = None, key: list[str] | None = None) -> WriteResult:
        conn = self._db.conn
        keys, known, _ = _table_shape(conn, table)
        if key is not None:
            _check_key(table, key, keys, known)
        if path.lower().endswith(".parquet"):
            return self._load_parquet(table, path, mode, guards, kept, progress)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeError, csv.Error) as exc:
            raise InvalidInputError(f"cannot read {path}: {exc}") from exc
        if not header:
            raise InvalidInputError(f"{path} is empty: a CSV file starts with a line naming its columns")
        _frames.check_rows(table, header, [], keys, known)
        stage = _sql.value(conn, "select rowver.stage(%s::regclass, %s::name[])", (table, header))
        copy = sql.SQL("copy {} ({}) from stdin (format csv, header true)").format(
            sql.Identifier(*stage.split(".")), sql.SQL(", ").join(map(sql.Identifier, header)))
        try:
            with open(path, "rb") as f, conn.cursor().copy(copy) as cp:
                size, done = os.fstat(f.fileno()).st_size, 0
                while block := f.read(1 << 20):
                    cp.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, max(size, done))
                if progress is not None and done != size:  # (the file changed size while read)
                    progress(done, done)
        except psycopg.Error as exc:  # the server's words, naming the file's line and column
            error = from_database(exc)
            raise type(error)(str(error).replace(f"(COPY {stage.split('.')[-1]}, ", f"({path}: "),
                              sqlstate=error.sqlstate, hint=error.hint) from exc
        _sql.one(conn, "select rowver.check_staged(%s::regclass, %s::regclass)", (table, stage))
        return _apply(conn, table, stage, mode, guards, kept)

    def _load_parquet(self, table: str, path: str, mode: str, guards: Guards, kept: Kept = None,
                      progress: Progress | None = None) -> WriteResult:
        """A Parquet file, a record batch at a time, by COPY into the stage (each value sent as its
        Python value, read by the server into its column's type)."""
        conn = self._db.conn
        keys, known, json_cols = _table_shape(conn, table)
        batches, header = _frames.parquet_batches(path)
        _frames.check_rows(table, header, [], keys, known)
        stage = _sql.value(conn, "select rowver.stage(%s::regclass, %s::name[])", (table, header))
        copy = sql.SQL("copy {} ({}) from stdin").format(
            sql.Identifier(*stage.split(".")), sql.SQL(", ").join(map(sql.Identifier, header)))
        rows = itertools.chain.from_iterable(batches)
        try:
            with conn.cursor().copy(copy) as cp:
                for row in _with_progress(_frames.adapt_json(header, json_cols, rows),
                                          _parquet_rows(path) if progress else None, progress):
                    cp.write_row(row)
        except psycopg.Error as exc:  # the server's words, naming the row (its line in COPY) and column
            error = from_database(exc)
            raise type(error)(str(error).replace(f"(COPY {stage.split('.')[-1]}, line ", f"({path}: row "),
                              sqlstate=error.sqlstate, hint=error.hint) from exc
        except (TypeError, ValueError, UnicodeError, OSError) as exc:  # a value psycopg cannot send, a bad page
            raise InvalidInputError(f"a value in {path} cannot be sent to {table}: {shorten(str(exc))}") from exc
        _sql.one(conn, "select rowver.check_staged(%s::regclass, %s::regclass)", (table, stage))
        return _apply(conn, table, stage, mode, guards, kept)

    def _publish(self, table: str, name: str) -> WriteResult:
        inserted, updated, deleted, unchanged, version = _sql.one(
            self._db.conn, "select * from rowver.publish(%s)", (name,))
        return WriteResult(inserted, updated, deleted, unchanged, version=version)

    def _revert(self, table: str, ref: str) -> WriteResult:
        return WriteResult(*_sql.one(self._db.conn, "select * from rowver.revert(%s::regclass, %s)", (table, ref)))


    def _truncate(self, table: str, cascade: bool) -> WriteResult:
        conn = self._db.conn
        deleted = _sql.value(conn, "select rowver.truncate(%s::regclass, %s)", (table, cascade))
        return WriteResult(deleted=deleted, version=_current_version(conn))

    def _judge(self) -> None:
        """Run the changeset's checks over what its calls did (tables named as PostgreSQL prints them)."""
        if not self.checks:
            return
        conn = self._db.conn
        results: dict[str, WriteResult] = {}
        for named, result in self._results:
            table = str(_sql.value(conn, "select %s::regclass::text", (named,)))
            seen = results.get(table, WriteResult())
            results[table] = WriteResult(seen.inserted + result.inserted, seen.updated + result.updated,
                                         seen.deleted + result.deleted, seen.unchanged + result.unchanged,
                                         version=result.version)
        effect = {table: dict(zip(COUNTS, _counted(r), strict=True)) for table, r in results.items()}
        _guards.run_checks(conn, self.checks, effect, results)


@dataclass(frozen=True)
class WriteOp:
    """One write call of a changeset, kept as a value so that a retry can replay it: what it is
    (``kind``: insert, upsert, delete or sync, of rows or a file; publish, revert, truncate), the
    table as named, and the statement behind it with its arguments."""

    kind: str
    table: str
    call: Callable[..., WriteResult]
    args: tuple[Any, ...] = ()

    def run(self) -> WriteResult:
        return self.call(*self.args)

    @property
    def retry_on_unique_violation(self) -> bool:
        """An upsert or sync diffs, then inserts: a concurrent insert of the same key after its
        diff fails it, and its next diff sees that row. (An insert's is the caller's duplicate.)"""
        return self.kind in ("upsert", "sync")

    def retryable(self, exc: Exception) -> bool:
        """Whether replaying the changeset can cure ``exc`` (rowver._retry)."""
        return _retry.transient(exc) or (self.retry_on_unique_violation
                                         and _retry.sqlstate(exc) == _retry.UNIQUE_VIOLATION)


COUNTS = ("inserted", "updated", "deleted", "unchanged")


def _counted(result: WriteResult) -> tuple[int, int, int, int]:
    return result.inserted, result.updated, result.deleted, result.unchanged




Kept = tuple[str, bool] | None  # (stage name, replace) for a call kept for a look, not written


def _kept(stage: str | None, replace: bool) -> Kept:
    if stage is None:
        if replace:
            raise InvalidInputError("replace=True is for a call with stage='name'")
        return None
    if not isinstance(stage, str):
        raise InvalidInputError(f"stage takes a name, not {stage!r}")
    return stage, bool(replace)


def _apply(conn: psycopg.Connection, table: str, stage: str, mode: str, guards: Guards | None = None,
           kept: Kept = None) -> WriteResult:
    """Apply the staged rows to ``table`` as ``mode``, unless they pass a limit of ``guards``
    (CheckFailedError, nothing written); what it did. With ``kept``, compute it and keep it as a
    stage instead (rowver.stage_write): nothing written."""
    limits = guards.as_json() if guards is not None else None
    if kept is not None:
        if mode not in ("sync", "upsert", "delete"):
            raise InvalidInputError(f"a stage holds a sync, upsert or delete, not {mode!r}")
        inserted, updated, deleted, unchanged = _sql.one(
            conn, "select * from rowver.stage_write(%s::regclass, %s::regclass, %s, %s::jsonb, %s, %s)",
            (table, stage, mode, limits, *kept))
        return WriteResult(inserted, updated, deleted, unchanged, stage=kept[0])
    if limits is None:
        inserted, updated, deleted, unchanged = _sql.one(
            conn, "select * from rowver.load(%s::regclass, %s::regclass, %s)", (table, stage, mode))
    else:
        inserted, updated, deleted, unchanged = _sql.one(
            conn, "select * from rowver.load(%s::regclass, %s::regclass, %s, %s::jsonb)", (table, stage, mode, limits))
    return WriteResult(inserted, updated, deleted, unchanged, version=_current_version(conn))


def _table_shape(conn: psycopg.Connection, table: str) -> tuple[list[str], list[str], set[str]]:
    """(key columns, writable columns, json columns) of a versioned table."""
    keys = _sql.value(conn, "select (rowver.registered(%s::regclass)).key_columns", (table,))
    cols = conn.execute("select * from rowver.writable_columns(%s::regclass)", (table,)).fetchall()
    return list(keys), [c for c, _ in cols], {c for c, is_json in cols if is_json}


def _current_version(conn: psycopg.Connection) -> int | None:
    value: int | None = _sql.value(conn, "select rowver.current_version()")
    return value


Row = TypeVar("Row")


def _with_progress(rows: Iterable[Row], total: int | None, progress: Progress | None) -> Iterable[Row]:
    """``rows`` as they are, telling ``progress`` (if any) every PROGRESS_EVERY rows and, when they
    end, (how many, how many)."""
    return rows if progress is None else _telling(rows, total, progress)


def _telling(rows: Iterable[Row], total: int | None, progress: Progress) -> Iterator[Row]:
    done = 0
    for done, row in enumerate(rows, 1):
        yield row
        if done % PROGRESS_EVERY == 0:
            progress(done, total)
    progress(done, done)


def _parquet_rows(path: str) -> int:
    """How many rows a Parquet file holds (from its footer)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _key_names(key: Sequence[str]) -> list[str]:
    names = [key] if isinstance(key, str) else list(key)
    if not names or not all(isinstance(k, str) and k for k in names):
        raise InvalidInputError(f"key must be column names, not {key!r}")
    return names


def _check_key(table: str, given: list[str], keys: list[str], known: list[str]) -> None:
    """The key a load was told to match rows by must be the one ``table`` is versioned by:
    history and the diff are keyed by it, so rows are matched by no other."""
    unknown = [k for k in given if k not in known]
    if unknown:
        raise InvalidInputError(f"{table} has no column {unknown[0]!r} (given as the key)")
    if len(set(given)) != len(given) or set(given) != set(keys):
        raise InvalidInputError(
            f"{table} is versioned by the key ({', '.join(keys)}), not ({', '.join(given)}): rows are matched by "
            "the key it was enabled with; leave the key out, or enable the table with another key")
