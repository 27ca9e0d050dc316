"""Installing and upgrading the rowver catalog from the SQL files shipped in the package."""

from __future__ import annotations

from importlib import resources

import psycopg

# The catalog version these SQL files install (rowver.meta 'schema_version').
SCHEMA_VERSION = "1"

# Serialises concurrent installs (two-int advisory lock space, rowver's tag).
_INSTALL_LOCK = ((0x5256 << 16) | 0xFFFE, 0)


def sql_files() -> list[tuple[str, str]]:
    """(name, text) of each catalog file, in the order psql would run them."""
    root = resources.files("rowver.sql")
    files = sorted((p for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def installed_version(conn: psycopg.Connection) -> str | None:
    """The installed catalog version, or None when rowver is not installed."""
    row = conn.execute("select to_regclass('rowver.meta') is not null").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("select value from rowver.meta where key = 'schema_version'").fetchone()
    return found[0] if found else None


def install(conn: psycopg.Connection) -> None:
    """Install or upgrade the catalog in one transaction; idempotent."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s, %s)", _INSTALL_LOCK)
        for _name, text in sql_files():
            conn.execute(text)
