"""Enabling and disabling versioning: thin calls to the schema generator in sql/20_tables.sql."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from . import _sql
from ._sql import Connected
from .errors import InvalidInputError


def _names(values: Iterable[str] | None, what: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    names = list(values)
    if not all(isinstance(v, str) and v for v in names):
        raise InvalidInputError(f"{what} must be column names")
    return names


def _script(statements: Iterable[str]) -> str:
    return "".join(f"{s};\n" for s in statements)


def enable(db: Connected, table: str, *, key: Sequence[str] | None, triggers: bool,
           ignore: Iterable[str], rewrite: bool | None, progress: Progress | None = None,
           url: str | None = None) -> int:
    args = (table, _names(key, "key"), triggers, _names(ignore, "ignore") or [], rewrite)
    with _sql.transaction(db.conn):
        with _watched(db, url, table, rewrite, progress):
            return int(_sql.value(
                db.conn, "select rowver.enable(%s::regclass, %s::name[], %s, %s::name[], %s::boolean)", args))


# told (bytes copied so far, bytes expected) while enable copies the table (its rewrite), from a
# thread watching on a second connection (``url``): PostgreSQL reports no progress for ALTER
# TABLE's copy, so the copy so far is the growth of the database's files (sql/enable/sizes.sql),
# at most the table's size before it, which is the total; the last call, from the caller's
# thread, is (the copy's size, the same), or what was told if more (the table was bloated and
# its copy is smaller). Nothing when enable does not copy, or when the second connection fails.
Progress = Callable[[int, int | None], Any]
POLL_SECONDS = 0.2


@contextmanager
def _watched(db: Connected, url: str | None, table: str, rewrite: bool | None,
             progress: Progress | None) -> Iterator[None]:
    """Tell ``progress`` how far the copy in the block has gone (see Progress)."""
    if progress is None or url is None:
        yield
        return
    copies, expected, start = _sql.one(db.conn, _sql.query("enable/sizes.sql"), {"rewrite": rewrite, "table": table})
    if not copies:
        yield
        return
    progress(0, expected)
    told = [0]  # the most the watcher has told
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(url, start, expected, progress, stop, told), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    copied = max(told[0], _sql.one(db.conn, _sql.query("enable/sizes.sql"), {"rewrite": True, "table": table})[1])
    progress(copied, copied)


def _watch(url: str, start: int, expected: int, progress: Progress, stop: threading.Event, told: list[int]) -> None:
    try:
        with psycopg.connect(url, autocommit=True, application_name="rowver enable progress") as conn:
            while not stop.wait(POLL_SECONDS):
                size = conn.execute("select pg_catalog.pg_database_size(pg_catalog.current_database())").fetchone()
                # never backwards, nor past the total (the database grows by more than the copy)
                told[0] = min(expected, max(told[0], (size[0] if size else start) - start))
                if not stop.is_set():
                    progress(told[0], expected)
    except psycopg.Error:
        return  # (a nicety: the enable goes on without it)


def ddl(db: Connected, table: str, *, key: Sequence[str] | None, triggers: bool,
        ignore: Iterable[str], rewrite: bool | None) -> str:
    args = (table, _names(key, "key"), triggers, _names(ignore, "ignore") or [], rewrite)
    rows = _sql.rows(db.conn, "select rowver.enable_ddl(%s::regclass, %s::name[], %s, %s::name[], %s::boolean)", args)
    return _script(r[0] for r in rows)


def disable(db: Connected, table: str, *, keep_history: bool) -> None:
    with _sql.transaction(db.conn):
        _sql.execute(db.conn, "select rowver.disable(%s::regclass, %s)", (table, keep_history))


def disable_ddl(db: Connected, table: str, *, keep_history: bool) -> str:
    rows = _sql.rows(db.conn, "select rowver.disable_ddl(%s::regclass, %s)", (table, keep_history))
    return _script(r[0] for r in rows)
