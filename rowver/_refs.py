"""Refs (DESIGN §3): a version number, tag, ISO-8601 time or 'head', resolved by the server to a
version at most head. Each resolution is its own statement: the read that follows sees every
version up to it, so it is repeatable."""

from __future__ import annotations

import psycopg

from . import _sql


def resolve(conn: psycopg.Connection, ref: str | int) -> int:
    """The version a ref names."""
    return int(_sql.value(conn, "select rowver.resolve(%s)", (str(ref),)))


def resolve_for(conn: psycopg.Connection, table: str, ref: str | int) -> int:
    """``ref`` as the version to read ``table`` at: an error naming the table's first version
    when it predates it (versions count across all tables)."""
    return int(_sql.value(conn, "select rowver.resolve_for(%s::regclass, %s)", (table, str(ref))))
