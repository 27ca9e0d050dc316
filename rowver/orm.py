"""SQLAlchemy ORM: read mapped versioned classes as of a ref; changeset metadata for ORM writes.

    import rowver.orm

    with rowver.orm.as_of_session(engine, "train-2026-11") as s:
        customer = s.get(Customer, 7)
        customer.orders                      # lazy, selectin and joined loads: same version

    with Session(engine) as s, s.begin():
        rowver.orm.changeset_info(s, message="fix addresses", author="etl")
        s.add(...)                           # committed as one version, with that message

    class Customer(rowver.orm.Versioned, Base): ...  # maps rv_version, which rowver writes

An as-of session compiles every statement with each versioned table ``T`` read from
``T__as_of(v)`` instead (``FROM public.customers__as_of(42) AS customers``). The swap
happens in the SQL compiler, not in the statement, because the ORM adds tables while
compiling (joined eager loads, relationship joins); there the swap sees them all, and
no WHERE criteria a user adds can reach a superseded row. Nothing here is installed at
import time: each helper acts on the session or engine it is given.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import BigInteger, FetchedValue, event, func, select, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import LRUCache

from .errors import RowverError, from_database

__all__ = ["AsOfWriteError", "Versioned", "as_of_session", "changeset_info"]

# session.info keys
VERSION_KEY = "rowver_version"
_CHANGESET_KEY = "rowver_changeset"


class AsOfWriteError(RowverError):
    """A write was attempted in an as-of session, which reads the past and never writes."""

    sqlstate = "25006"  # read_only_sql_transaction


class Versioned:
    """Mixin for mapped classes of versioned tables: maps the ``rv_version`` column.

    rowver's stamp trigger writes ``rv_version``; SQLAlchemy never sends it and reads it
    back (RETURNING after INSERT; after UPDATE, on next access, or at once with
    ``eager_defaults=True``). ``system=True`` keeps it out of ``create_all`` and
    Alembic autogenerate: ``rowver.enable`` adds it, so create the table, then enable.
    """

    rv_version: Mapped[int] = mapped_column(
        BigInteger, nullable=False, system=True, sort_order=10_000,
        server_default=FetchedValue(), server_onupdate=FetchedValue())


# -- reading as of a version ---------------------------------------------------------


@dataclass(frozen=True)
class _AsOf:
    """What an as-of compiler needs: the version and each versioned table's function."""

    version: int
    # (schema, table) -> (schema, as_of function); schema None where the name is visible
    # on the search_path, as SQLAlchemy tables without a schema are
    functions: tuple[tuple[tuple[str | None, str], tuple[str, str]], ...]

    @functools.cached_property
    def by_table(self) -> Mapping[tuple[str | None, str], tuple[str, str]]:
        return dict(self.functions)


def _as_of(dialect: Dialect) -> _AsOf:
    found: _AsOf = dialect._rowver_as_of  # type: ignore[attr-defined]
    return found


@functools.cache
def _as_of_compiler(base: type[SQLCompiler]) -> type[SQLCompiler]:
    """``base`` (the dialect's compiler) rendering versioned tables as of a version."""

    class AsOfCompiler(base):  # type: ignore[valid-type, misc]
        def _as_of_function(self, table: Any) -> tuple[str, str] | None:
            return _as_of(self.dialect).by_table.get((table.schema, table.name))

        def visit_table(self, table: Any, asfrom: bool = False, iscrud: bool = False,
                        ashint: bool = False, enclosing_alias: Any = None, **kw: Any) -> str:
            found = self._as_of_function(table) if asfrom and not (iscrud or ashint) else None
            if found is None:
                text: str = super().visit_table(table, asfrom=asfrom, iscrud=iscrud, ashint=ashint,
                                                enclosing_alias=enclosing_alias, **kw)
                return text
            if kw.get("from_linter"):
                kw["from_linter"].froms[table] = table.fullname
            schema, name = found
            q = self.preparer
            # the version is an int, so rendering it is safe, and a literal lets the
            # planner inline T__as_of and use T's indexes
            call = f"{q.quote_schema(schema)}.{q.quote(name)}({int(_as_of(self.dialect).version)})"
            if enclosing_alias is not None and enclosing_alias.element is table:
                return call  # the alias says " AS customers_1" itself
            # named like the table, so every "customers.id" in the statement still binds
            return f"{call} AS {q.quote(table.name)}"

        def visit_column(self, column: Any, include_table: bool = True, **kw: Any) -> str:
            table = column.table
            if (include_table and table is not None and getattr(table, "schema", None)
                    and self._as_of_function(table) is not None):
                # "sales.orders.id" would name the table, which is not in FROM: the
                # function call is, under the alias "orders"
                rendered = super().visit_column(column, include_table=False, **kw)
                return f"{self.preparer.quote(table.name)}.{rendered}"
            text: str = super().visit_column(column, include_table=include_table, **kw)
            return text

        def _refuse(self, *args: Any, **kw: Any) -> str:
            raise AsOfWriteError(
                f"this session reads as of version {_as_of(self.dialect).version} and cannot "
                "write; use an ordinary Session")

        visit_insert = visit_update = visit_delete = _refuse

    AsOfCompiler.__name__ = AsOfCompiler.__qualname__ = f"RowverAsOf{base.__name__}"
    return AsOfCompiler


# One derived dialect per (dialect, version, registry), and one compiled cache for all
# of them: cache keys include the dialect, so as-of statements never collide with the
# application's own, and the application's cache is not crowded by ours.
_derived: weakref.WeakKeyDictionary[Dialect, LRUCache[_AsOf, Dialect]] = weakref.WeakKeyDictionary()
_compiled_cache: LRUCache[Any, Any] = LRUCache(500)


def _dialect_as_of(dialect: Dialect, as_of: _AsOf) -> Dialect:
    per_version = _derived.setdefault(dialect, LRUCache(64))
    derived = per_version.get(as_of)
    if derived is None:
        # a shallow copy shares everything the dialect learnt on first connect (server
        # version, type adapters); only the compiler class differs
        derived = copy.copy(dialect)
        derived.statement_compiler = _as_of_compiler(dialect.statement_compiler)  # type: ignore[arg-type]
        derived._rowver_as_of = as_of  # type: ignore[attr-defined]
        per_version[as_of] = derived
    return derived


_REGISTRY = text("""
    select n.nspname, c.relname, v.as_of_name, pg_catalog.pg_table_is_visible(c.oid)
      from rowver.versioned v
      join pg_catalog.pg_class c on c.oid = v.relid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
""")


def _resolve(conn: Connection, ref: str | int) -> _AsOf:
    # The ref first, in its own statement: reads that follow in later snapshots see
    # every version up to it (DESIGN §3). The registry is read at every call, not cached
    # per engine: a table enabled since would otherwise be read as it is now.
    try:
        version = int(conn.execute(select(func.rowver.resolve(str(ref)))).scalar_one())
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.Error):
            raise from_database(exc.orig) from exc
        raise
    functions: list[tuple[tuple[str | None, str], tuple[str, str]]] = []
    for schema, table, as_of_name, visible in conn.execute(_REGISTRY):
        functions.append(((schema, table), (schema, as_of_name)))
        if visible:
            functions.append(((None, table), (schema, as_of_name)))
    return _AsOf(version, tuple(sorted(functions, key=repr)))


def _refuse_flush(session: Session, *args: Any) -> None:
    raise AsOfWriteError(
        f"this session reads as of version {session.info[VERSION_KEY]} and cannot write "
        "(flush refused); use an ordinary Session")


def as_of_session(bind: Engine | Connection | Session, ref: str | int, **session_options: Any) -> Session:
    """A new Session that reads every versioned table as of ``ref``.

    ``ref`` is a version number, tag, ``head``, ISO-8601 timestamp or model ref, resolved
    once, here (``session.info["rowver_version"]`` holds the version). Everything the
    session loads (queries, ``get``, lazy, selectin and joined relationship loads) reads
    as of that version; unversioned tables read as they are. The session is read-only:
    flushes and DML raise :class:`AsOfWriteError`, and its transactions are READ ONLY.
    It has its own identity map, so past and present objects never mix. Use it as a
    context manager, like any Session. Its reads run on ``bind``'s engine (its pool and
    event listeners), not on a given connection. Textual SQL (``text()``) is sent as
    written: name ``T__as_of(v)`` there yourself.
    """
    if isinstance(bind, Session):
        found = bind.get_bind()
        engine = found if isinstance(found, Engine) else found.engine
    else:
        engine = bind if isinstance(bind, Engine) else bind.engine
    if isinstance(bind, Connection):
        as_of = _resolve(bind, ref)
    else:
        with engine.connect() as conn:
            as_of = _resolve(conn, ref)
    reader = engine.execution_options(compiled_cache=_compiled_cache, postgresql_readonly=True)
    # an OptionEngine shares the engine's pool and event listeners; it compiles with
    # the dialect it holds, so reads through it are as of the version
    reader.dialect = _dialect_as_of(engine.dialect, as_of)
    info = {**session_options.pop("info", {}), VERSION_KEY: as_of.version}
    session = Session(bind=reader, info=info, **session_options)
    event.listen(session, "before_flush", _refuse_flush)
    return session


# -- changeset metadata for ORM writes ------------------------------------------------


def _apply_changeset_info(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    values = session.info.get(_CHANGESET_KEY)
    if not values:
        return
    # transaction-local (is_local true): a session-level SET would outlive the
    # transaction and leak to the next user of a pooled connection
    connection.execute(select(*(func.set_config(f"rowver.{name}", value or "", True)
                                for name, value in values.items())))


def changeset_info(session: Session, *, message: str | None = None, author: str | None = None) -> None:
    """Record ``message`` and ``author`` on the changesets this session's transactions make.

    They apply to the transaction in progress, if any, and to every later one of this
    session until changed (call again with new values, or with none to stop). Each
    committed transaction that changes versioned rows is one version; its changeset
    stores these as claims beside the database user and role, and is recorded at the
    transaction's first versioned write: set them before it. Installs one
    ``after_begin`` listener on this session only.
    """
    session.info[_CHANGESET_KEY] = {"message": message, "author": author}
    if not event.contains(session, "after_begin", _apply_changeset_info):
        event.listen(session, "after_begin", _apply_changeset_info)
    if session.in_transaction():
        # the transaction in progress began before this call (settings are idempotent,
        # so a connection acquired just now, which after_begin covered, is harmless)
        _apply_changeset_info(session, session.get_transaction(), session.connection())  # type: ignore[arg-type]
