"""Where Python calls rowver's SQL: every statement the operations run goes through ``one``,
``value``, ``rows`` or ``execute`` here, which translate a database error into rowver's exception
tree once (rowver.errors.from_database: by SQLSTATE, rowver's own RVnnn codes included), so call
sites do not repeat ``with translated()``. Static queries are read from sql/ by ``query``."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Protocol

import psycopg

from .errors import RowverError, translated


@functools.cache
def query(path: str) -> str:
    """A static query from sql/ (``ui/tables.sql``, ``models/list.sql``): SQL lives in files, with
    its comments; placeholders are psycopg's named ones, %(name)s."""
    return (resources.files("rowver.sql") / path).read_text(encoding="utf-8")


class Connected(Protocol):
    """What the layers under ``Database`` take: something holding the connection to use (the
    facade passes itself; they never call back into it)."""

    @property
    def conn(self) -> psycopg.Connection: ...


Params = Sequence[Any] | Mapping[str, Any] | None


def execute(conn: psycopg.Connection, query: Any, params: Params = None) -> psycopg.Cursor[Any]:
    """Run a statement; its cursor (rows not fetched). A database error is a RowverError."""
    with translated():
        return conn.execute(query, params)


def rows(conn: psycopg.Connection, query: Any, params: Params = None) -> list[tuple[Any, ...]]:
    """Every row a query returns, as tuples."""
    with translated():
        return [tuple(row) for row in conn.execute(query, params).fetchall()]


def one(conn: psycopg.Connection, query: Any, params: Params = None) -> tuple[Any, ...]:
    """The single row a query returns (rowver's functions always return one)."""
    with translated():
        row = conn.execute(query, params).fetchone()
    if row is None:
        raise RowverError(f"no row from {query!r}")
    return tuple(row)


def value(conn: psycopg.Connection, query: Any, params: Params = None) -> Any:
    """The first column of the single row a query returns."""
    return one(conn, query, params)[0]


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction (a savepoint inside one) whose errors, its commit's included, are RowverErrors."""
    with translated(), conn.transaction():
        yield
