"""Installing and upgrading the rowver catalog from the SQL files shipped in the package."""

from __future__ import annotations

import hashlib
from importlib import resources

import psycopg

from . import _sql

# Serialises concurrent installs (two-int advisory lock space, rowver's tag).
_INSTALL_LOCK = ((0x5256 << 16) | 0xFFFE, 0)


def sql_files() -> list[tuple[str, str]]:
    """(name, text) of each catalog file, in the order psql would run them."""
    root = resources.files("rowver.sql")
    files = sorted((p for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def installed_version(conn: psycopg.Connection) -> str | None:
    """The installed catalog version, or None when rowver is not installed."""
    if not _sql.value(conn, "select to_regclass('rowver.meta') is not null"):
        return None
    found: str | None = _sql.value(conn, "select (select value from rowver.meta where key = 'schema_version')")
    return found


def files_hash() -> str:
    """A hash of the SQL this package installs: a catalog installed from other files is outdated."""
    digest = hashlib.sha256()
    for name, text in sql_files():
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def is_current(conn: psycopg.Connection) -> bool:
    """Whether the installed catalog came from exactly this package's SQL files."""
    if installed_version(conn) is None:
        return False
    return bool(_sql.value(conn, "select (select value from rowver.meta where key = 'files_hash')") == files_hash())


def install(conn: psycopg.Connection) -> None:
    """Install or upgrade the catalog in one transaction; idempotent."""
    with _sql.transaction(conn):
        _sql.execute(conn, "select pg_advisory_xact_lock(%s, %s)", _INSTALL_LOCK)
        for _name, text in sql_files():
            _sql.execute(conn, text)
        _sql.execute(conn, "insert into rowver.meta values ('files_hash', %s)"
                            " on conflict (key) do update set value = excluded.value", (files_hash(),))
