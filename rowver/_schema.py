"""Enabling and disabling versioning: thin calls to the schema generator in sql/20_tables.sql."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import _sql
from ._sql import Connected
from .errors import InvalidInputError, translated


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
           ignore: Iterable[str], rewrite: bool | None) -> int:
    args = (table, _names(key, "key"), triggers, _names(ignore, "ignore") or [], rewrite)
    with translated(), db.conn.transaction():
        return int(_sql.value(
            db.conn, "select rowver.enable(%s::regclass, %s::name[], %s, %s::name[], %s::boolean)", args))


def ddl(db: Connected, table: str, *, key: Sequence[str] | None, triggers: bool,
        ignore: Iterable[str], rewrite: bool | None) -> str:
    args = (table, _names(key, "key"), triggers, _names(ignore, "ignore") or [], rewrite)
    with translated():
        rows = db.conn.execute(
            "select rowver.enable_ddl(%s::regclass, %s::name[], %s, %s::name[], %s::boolean)", args).fetchall()
    return _script(r[0] for r in rows)


def disable(db: Connected, table: str, *, keep_history: bool) -> None:
    with translated(), db.conn.transaction():
        db.conn.execute("select rowver.disable(%s::regclass, %s)", (table, keep_history))


def disable_ddl(db: Connected, table: str, *, keep_history: bool) -> str:
    with translated():
        rows = db.conn.execute("select rowver.disable_ddl(%s::regclass, %s)",
                               (table, keep_history)).fetchall()
    return _script(r[0] for r in rows)
