"""Calling rowver's SQL functions: the one place a single row or value is read back."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import psycopg

from .errors import RowverError


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


def one(conn: psycopg.Connection, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The single row a query returns (rowver's functions always return one)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RowverError(f"no row from {query!r}")
    return tuple(row)


def value(conn: psycopg.Connection, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
    """The first column of the single row a query returns."""
    return one(conn, query, params)[0]

