"""The change stream (``rowver changes --follow``, ``db.follow``): each committed changeset that
touched the followed tables, once, in version order, never above head (so never one that is
still in flight, or one a later commit could slip beneath). A commit wakes it through the
NOTIFY its changeset sends (sql/10_versions.sql, channel ``rowver_changes``); a poll every
``poll`` seconds finds what a lost NOTIFY would have announced. It resumes from a version: a
consumer that stores the last version it handled and passes it as ``since`` misses nothing
and sees nothing twice. A lost connection (a server restart) is opened again, and the stream
goes on from the last changeset it yielded."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from . import _frames, _query, _refs, _sql
from .errors import InvalidInputError, RowverError, ServerError

CHANNEL = "rowver_changes"
STEP = 1_000  # changesets read at a time when the stream is behind
HEARTBEAT = 10.0  # seconds between "still following" (rowver.follower forgets a stream after 60)
_SOON = 0.05  # seconds: the first look again while head is held back


@dataclass(frozen=True)
class Change:
    """One row change: the table as named to follow, insert/update/delete, and the row in the
    table's own columns and types (a delete: its key alone)."""

    table: str
    op: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Committed:
    """A committed changeset's changes to the followed tables, in table order, then key order."""

    version: int
    changes: list[Change]


@dataclass
class _Reader:
    """The connection the reads go through (what ``_query`` takes), and this stream's entry in
    rowver.follower: commits notify only while a stream has said it follows within a minute."""

    conn: psycopg.Connection
    follower: uuid.UUID
    seen_at: float = 0.0

    def still_here(self, force: bool = False) -> None:
        if force or time.monotonic() - self.seen_at >= HEARTBEAT:
            _sql.execute(self.conn, "select rowver.follower_seen(%s)", (self.follower,))
            self.seen_at = time.monotonic()


def follow(url: str, tables: Sequence[str], since: str | int | None = None, *, poll: float = 5.0,
           reconnect: float = 60.0,
           configure: Callable[[psycopg.Connection], None] | None = None) -> Iterator[Committed]:
    """Changesets after ``since`` (a ref; default: head when called), forever. ``poll``: seconds
    between looks when no NOTIFY comes; ``reconnect``: how long to keep trying to connect again
    after the connection is lost before raising ServerError; ``configure``: called on each
    connection the reads go through (the CLI reads jsonb numbers exactly)."""
    tables = list(dict.fromkeys(tables))  # (a table named twice is followed once)
    if not tables:
        raise InvalidInputError("follow needs at least one table")
    if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not poll > 0:
        raise InvalidInputError(f"poll must be a positive number of seconds, not {poll!r}")
    reader, listener = _connect(url, configure)
    try:
        firsts = [_first_version(reader, table) for table in tables]
        seen = _refs.resolve(reader.conn, "head" if since is None else since)  # (now, not at the first next())
    except BaseException:
        _close(reader, listener)
        raise
    return _run(url, tables, firsts, seen, poll, reconnect, configure, reader, listener)


def _run(url: str, tables: Sequence[str], firsts: list[int], seen: int, poll: float, reconnect: float,
         configure: Callable[[psycopg.Connection], None] | None, reader: _Reader,
         listener: psycopg.Connection) -> Iterator[Committed]:
    """The stream; after a lost connection, connected again and going on after ``seen``."""
    try:
        while True:
            try:
                for changeset in _stream(reader, listener, tables, firsts, seen, poll):
                    yield changeset
                    seen = changeset.version  # (a lost connection resumes after it)
            except (psycopg.OperationalError, RowverError) as exc:
                if not _lost(reader, listener, exc):
                    raise
            _close(reader, listener)
            reader, listener = _connect_again(url, reconnect, configure, reader.follower)
    finally:
        _close(reader, listener)


def _stream(reader: _Reader, listener: psycopg.Connection, tables: Sequence[str], firsts: list[int],
            seen: int, poll: float) -> Iterator[Committed]:
    """Changesets after ``seen`` up to head, then wait for a NOTIFY (or ``poll``), and again
    (the listener listens already)."""
    soon = _SOON
    while True:
        head = _head(reader)
        while head > seen:  # (a backlog in steps of STEP changesets: memory holds one step)
            upto = _step(reader, seen, head)
            yield from _between(reader, tables, firsts, seen, upto)
            seen = upto
        # a changeset committed above head waits for a writer below it, whose end may send no
        # NOTIFY (it rolled back, or wrote no versioned table): look again soon, then less soon
        reader.still_here()
        if _held_back(reader, head):
            _wait(listener, soon)
            soon = min(soon * 2, poll)
        else:
            _wait(listener, min(poll, HEARTBEAT))
            soon = _SOON


def _head(reader: _Reader) -> int:
    return int(_sql.value(reader.conn, "select rowver.head()"))


def _step(reader: _Reader, seen: int, head: int) -> int:
    """Where the next read ends: after STEP changesets past ``seen``, or at head."""
    return int(_sql.value(
        reader.conn, "select coalesce((select c.version from rowver.changeset c where c.version > %s"
                     " and c.version <= %s order by c.version offset %s limit 1), %s)",
        (seen, head, STEP - 1, head)))


def _held_back(reader: _Reader, head: int) -> bool:
    """Whether a changeset above head has committed (head waits for a writer below it)."""
    return bool(_sql.value(reader.conn, "select exists (select from rowver.changeset c where c.version > %s)",
                           (head,)))


def _first_version(reader: _Reader, table: str) -> int:
    return int(_sql.value(reader.conn, "select (rowver.registered(%s::regclass)).enabled_version", (table,)))


def _between(reader: _Reader, tables: Sequence[str], firsts: list[int], lo: int, hi: int) -> list[Committed]:
    """The changesets in (lo, hi] that touched the tables, oldest first; every table is read
    before any is yielded, so a connection lost midway yields nothing of the range."""
    by_version: dict[int, list[Change]] = {}
    for table, first in zip(tables, firsts):
        if hi < first:
            continue  # (versioned after hi: nothing of it to read yet)
        found = _query.changes(reader, table, lo, hi)
        names = found.columns[2:]
        for version, op, *values in found.rows:
            by_version.setdefault(version, []).append(Change(table, op, dict(zip(names, values))))
    return [Committed(v, by_version[v]) for v in sorted(by_version)]


def _wait(listener: psycopg.Connection, seconds: float) -> None:
    """Until a NOTIFY comes or ``seconds`` pass; then take every NOTIFY already there (one
    look at head answers them all)."""
    for _ in listener.notifies(timeout=seconds, stop_after=1):
        pass
    for _ in listener.notifies(timeout=0.001):
        pass


def _connect(url: str, configure: Callable[[psycopg.Connection], None] | None = None,
             follower: uuid.UUID | None = None) -> tuple[_Reader, psycopg.Connection]:
    try:
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        _frames.register_loaders(conn)
        if configure is not None:
            configure(conn)
        try:
            listener = psycopg.connect(url, autocommit=True)
            # listening before head is read: a commit after that wakes the stream
            listener.execute(sql.SQL("listen {}").format(sql.Identifier(CHANNEL)))
        except BaseException:
            conn.close()
            raise
    except psycopg.OperationalError as exc:
        raise ServerError(f"cannot connect to follow changes: {str(exc).strip().splitlines()[0]}") from exc
    reader = _Reader(conn, follower or uuid.uuid4())
    try:
        reader.still_here(force=True)  # (before head is read: later commits notify)
    except RowverError as exc:
        _close(reader, listener)
        raise ServerError(f"cannot follow changes: {exc}") from exc
    return reader, listener


def _connect_again(url: str, patience: float, configure: Callable[[psycopg.Connection], None] | None,
                   follower: uuid.UUID) -> tuple[_Reader, psycopg.Connection]:
    """Connect again after a lost connection, trying for ``patience`` seconds."""
    deadline, pause = time.monotonic() + patience, 0.1
    while True:
        try:
            return _connect(url, configure, follower)
        except ServerError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _lost(reader: _Reader, listener: psycopg.Connection, exc: BaseException) -> bool:
    """Whether ``exc`` came from a lost connection (a restart, a network cut), not a bad read."""
    if reader.conn.broken or reader.conn.closed or listener.broken or listener.closed:
        return True
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    return isinstance(cause, psycopg.OperationalError) and (cause.sqlstate is None
                                                            or cause.sqlstate.startswith(("57P", "08")))


def _close(reader: _Reader, listener: psycopg.Connection) -> None:
    """Close both; a stream that ends says so (commits stop notifying for it at once)."""
    if not (reader.conn.closed or reader.conn.broken):
        with contextlib.suppress(psycopg.Error):
            reader.conn.execute("select rowver.follower_gone(%s)", (reader.follower,))
    reader.conn.close()
    listener.close()
