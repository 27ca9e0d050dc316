"""Reading versioned tables: as of a ref, a row's history, diffs, the log and tags.

Refs are resolved first, in their own statement, and the read follows: a snapshot taken
after head was known sees every version at or below it, so the read is repeatable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from . import _frames, _sql
from .errors import InvalidInputError, translated

if TYPE_CHECKING:
    import pandas as pd

    from ._database import Database


Rows = list[tuple[Any, ...]]
Described = list[Any]


def frame(db: Database, query: Any, params: Any = None, *, raw: bool = False) -> pd.DataFrame:
    """A query's rows as a frame; ``raw``: SQL rowver generated, with $1-style parameters
    (a % in a quoted name is then no placeholder)."""
    def fetch(fast: bool) -> pd.DataFrame:
        with (psycopg.RawCursor(db.conn) if raw else db.conn.cursor()) as cur:
            if fast:
                _frames.fast_loaders(cur)
            cur.execute(query, params)
            rows, described = cur.fetchall(), cur.description or []
        return _frames.to_frame(rows, [d.name for d in described], [d.type_code for d in described],
                                tz=db.conn.info.timezone)

    with translated():
        try:
            return fetch(fast=True)
        except (psycopg.DataError, _frames.NotISO) as exc:  # (the client's loading failed: nothing changed)
            if isinstance(exc, psycopg.DataError) and not _frames.is_infinite_value(exc):
                raise
            return fetch(fast=False)


def _plain_frame(rows: Rows, described: Described) -> pd.DataFrame:
    return _frames.to_frame(rows, [d.name for d in described], [d.type_code for d in described])


def chunks(db: Database, query: Any, chunksize: int,
           to_frame: Callable[[Rows, Described], pd.DataFrame] = _plain_frame) -> Iterator[pd.DataFrame]:
    """A query's result in frames of at most ``chunksize`` rows, through a server-side cursor
    (so memory stays bounded), in one transaction (so every chunk reads the same snapshot)."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise InvalidInputError(f"chunksize must be a positive whole number, not {chunksize!r}")
    with translated(), db.conn.transaction(), db.conn.cursor(name="rowver_chunks") as cur:
        cur.execute(query)
        while rows := cur.fetchmany(chunksize):
            yield to_frame(rows, cur.description or [])


def as_of_query(db: Database, table: str, ref: str | int) -> sql.Composed:
    """The query that reads ``table`` as of a ref, ordered by key."""
    version = db.resolve_for(table, ref)  # its own statement: the read below sees every version up to it
    with translated():
        fn, keys = _sql.one(
            db.conn, "select rowver.as_of_sql(%s::regclass, %s), (rowver.registered(%s::regclass)).key_columns",
            (table, version, table))
    # fn comes from rowver.as_of_sql, which quotes catalog names with format('%I')
    return sql.SQL("select * from {} order by {}").format(sql.SQL(fn), sql.SQL(", ").join(map(sql.Identifier, keys)))


def key_object(db: Database, table: str, key: Any) -> dict[str, Any]:
    """A key as {column: value}: from a dict, a tuple (in key order), or a single value."""
    with translated():
        columns = _sql.value(db.conn, "select (rowver.registered(%s::regclass)).key_columns", (table,))
    if isinstance(key, Mapping):
        if sorted(key) != sorted(columns):
            raise InvalidInputError(f"{table} is keyed by ({', '.join(columns)}); got ({', '.join(key)})")
        return dict(key)
    values = tuple(key) if isinstance(key, (tuple, list)) else (key,)
    if len(values) != len(columns):
        raise InvalidInputError(f"{table} is keyed by ({', '.join(columns)}); got {len(values)} value(s)")
    return dict(zip(columns, values))


def history(db: Database, table: str, key: Any) -> pd.DataFrame:
    """Every version of one row, oldest first, with its changeset's time, author and message."""
    where = key_object(db, table, key)
    with translated():
        query = _sql.value(db.conn, "select rowver.history_sql(%s::regclass)", (table,))
    try:  # the key travels as JSON, read into the key columns' own types by the server
        key_json = json.dumps(where, default=str, allow_nan=False)  # dates, decimals, uuids: as text
    except ValueError:
        raise InvalidInputError(f"a key of {table} cannot be NaN or infinite: {where!r}") from None
    # built by rowver.history_sql: names quoted, operators and functions qualified
    return frame(db, query, [key_json], raw=True)


def diff_query(db: Database, table: str, ref_a: str | int,
               ref_b: str | int) -> tuple[sql.Composed, list[str], tuple[int, int]]:
    """The query for the rows added, removed and changed between two refs, the key, and the
    two versions the refs resolved to."""
    with translated():
        keys = _sql.value(db.conn, "select (rowver.registered(%s::regclass)).key_columns", (table,))
    a, b = db.resolve_for(table, ref_a), db.resolve_for(table, ref_b)  # (their own statements, as above)
    with translated():
        query = _sql.value(db.conn, "select rowver.diff_sql(%s::regclass, %s, %s)", (table, a, b))
    return sql.Composed([sql.SQL(query)]), keys, (a, b)  # built by rowver.diff_sql with format('%I')


def diff_frame(keys: list[str]) -> Callable[[Rows, Described], pd.DataFrame]:
    """Rows of rowver.diff_sql (op, the key columns, changed, the old columns, the new
    columns) as a frame, in the table's own types: ``op``; ``key`` ({column: value});
    ``changed`` (the names of the columns whose values differ); then ``old_<column>`` for
    every column but rv_version as of the first ref (missing for an added row) and
    ``new_<column>`` as of the second (missing for a removed one). Every table column is
    prefixed, so no two names can collide."""
    n = len(keys)

    def to_frame(rows: Rows, described: Described) -> pd.DataFrame:
        columns = described[n + 2:]
        half = len(columns) // 2
        names = ["op", "key", "changed", *(f"old_{d.name}" for d in columns[:half]),
                 *(f"new_{d.name}" for d in columns[half:])]
        records = [(r[0], dict(zip(keys, r[1:n + 1])), *r[n + 1:]) for r in rows]
        return _frames.to_frame(records, names, [0, 0, 0, *(d.type_code for d in columns)])
    return to_frame


def diff(db: Database, table: str, ref_a: str | int, ref_b: str | int) -> pd.DataFrame:
    """Rows added, removed and changed between two refs, ordered by key (see diff_frame);
    ``frame.attrs["versions"]`` holds the two versions that were read."""
    query, keys, versions = diff_query(db, table, ref_a, ref_b)
    with translated():
        cur = db.conn.execute(query)
        rows = cur.fetchall()
    frame = diff_frame(keys)(rows, cur.description or [])
    frame.attrs["versions"] = versions
    return frame


def changes(db: Database, table: str, since: str | int, until: str | int) -> pd.DataFrame:
    """Every row change after ``since`` up to ``until`` (at most head), in version order."""
    import pandas as pd

    feed = frame(db, "select * from rowver.changes(%s::regclass, %s, %s)", (table, str(since), str(until)))
    rows = [{**key, **(row or {})} for key, row in zip(feed["key"], feed["row"])]
    values = pd.DataFrame.from_records(rows, index=feed.index)
    return pd.concat([feed[["rv_version", "op"]], values], axis=1)


def log(db: Database, *, limit: int | str | None, table: str | None) -> pd.DataFrame:
    if limit is None:
        limit = 50
    if isinstance(limit, str) and limit.strip().lstrip("-").isdigit():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError(f"limit must be a whole number, not {limit!r}")
    return frame(db, "select * from rowver.log(%s::integer, %s::regclass)", (limit, table))


def tags(db: Database) -> pd.DataFrame:
    return frame(db, "select name, version, protected, created_at, db_user from rowver.tag order by version, name")


def tag_log(db: Database) -> pd.DataFrame:
    return frame(db, "select at, name, action, old_version, new_version, protected, db_user, db_role"
                     " from rowver.tag_log order by at, name")
