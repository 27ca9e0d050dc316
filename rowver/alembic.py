"""Alembic: operations that install rowver and version tables, and refresh after table changes.

Import this module in ``env.py``; importing it registers everything below with Alembic
(and nothing else in rowver touches Alembic)::

    import rowver.alembic

    context.configure(..., include_name=rowver.alembic.include_name,
                      include_object=rowver.alembic.include_object)

Then, in migrations::

    op.install_rowver()                            # install or upgrade the catalog
    op.enable_versioning("customers")              # existing rows become its first version
    op.enable_versioning("events", key=["id"], ignore=["loaded_at"], schema="raw")
    op.disable_versioning("customers")             # drops history unless keep_history=True
    op.refresh_versioning("customers")             # after DDL that Alembic cannot see (op.execute)

Table names are Alembic's: a bare name plus ``schema=``, quoted as needed. Every op works
online and offline (``alembic upgrade --sql``): each is one SQL statement (the catalog
files for ``install_rowver``) that needs nothing from the live database.

Refresh hook: after ``add_column``, ``drop_column``, ``alter_column`` and
``rename_table``, ``SELECT rowver.refresh('<table>')`` follows, so history, ``T__as_of``
and ``T__versions`` keep up with the table (refresh is a no-op on unversioned tables).
Dropping a column or changing its type runs through ``rowver.alter`` (on a versioned
table the versions view would block the plain ALTER; on any other table it is the plain
ALTER): online where the table is versioned, offline always, since the script cannot ask.
Online, the refresh is left out while the catalog is not installed yet; offline both are
always written, so put ``op.install_rowver()`` first in the history. Inside
``op.batch_alter_table`` the hook stays out of the way: call ``op.refresh_versioning``
after the block. Turn the hook off with ``context.configure(..., rowver_refresh=False)``.

Adding versioning to an existing table with data is one migration::

    def upgrade():
        op.enable_versioning("customers")   # its rows become the enabling version

    def downgrade():
        op.disable_versioning("customers")

It adds the trailing ``rv_version`` column (code that inserts or copies without naming
columns must name them) and holds a lock on the table while it runs, like any ALTER.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from alembic.operations import (
    BatchOperations,
    MigrateOperation,
    Operations,
    ops,
    toimpl,
)
from sqlalchemy import ARRAY, Boolean, String, bindparam, text
from sqlalchemy.sql.elements import TextClause

from . import _install

__all__ = [
    "DisableVersioningOp",
    "EnableVersioningOp",
    "InstallRowverOp",
    "RefreshVersioningOp",
    "include_name",
    "include_object",
]


# -- running statements, online and offline ------------------------------------------


def _run(operations: Operations, statement: TextClause) -> None:
    """Execute ``statement``, or write it with its values inlined in ``--sql`` mode."""
    ctx = operations.migration_context
    if ctx.as_sql:
        # inlined whatever env.py says about literal_binds: the script must be complete
        rendered = statement.compile(dialect=ctx.dialect, compile_kwargs={"literal_binds": True})
        ctx.impl.static_output(f"{rendered};")
    else:
        operations.execute(statement)


def _regclass(operations: Operations, table_name: str, schema: str | None) -> str:
    """The table as PostgreSQL reads a name (regclass text), quoted where needed."""
    q = operations.migration_context.dialect.identifier_preparer
    return f"{q.quote_schema(schema)}.{q.quote(table_name)}" if schema else q.quote(table_name)


def _names(values: Iterable[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    return [values] if isinstance(values, str) else list(values)


def _tbl(operations: Operations, table_name: str, schema: str | None) -> Any:
    return bindparam("tbl", _regclass(operations, table_name, schema), type_=String())


# -- operations -----------------------------------------------------------------------


@Operations.register_operation("install_rowver")
class InstallRowverOp(MigrateOperation):
    """Install or upgrade the rowver catalog: the SQL files shipped with this rowver."""

    @classmethod
    def install_rowver(cls, operations: Operations) -> None:
        """Install or upgrade the rowver catalog (idempotent; data is left alone)."""
        operations.invoke(cls())

    def reverse(self) -> MigrateOperation:
        raise NotImplementedError(
            "install_rowver has no reverse: uninstalling would drop every table's history")


@Operations.register_operation("enable_versioning")
class EnableVersioningOp(MigrateOperation):
    """``rowver.enable``: version a table; its existing rows become its first version."""

    def __init__(self, table_name: str, *, key: Sequence[str] | None = None, triggers: bool = True,
                 ignore: Iterable[str] = (), rewrite: bool | None = None, schema: str | None = None) -> None:
        self.table_name = table_name
        self.key = _names(key)
        self.triggers = triggers
        self.ignore = _names(ignore) or []
        self.rewrite = rewrite
        self.schema = schema

    @classmethod
    def enable_versioning(cls, operations: Operations, table_name: str, *,
                          key: Sequence[str] | None = None, triggers: bool = True,
                          ignore: Iterable[str] = (), rewrite: bool | None = None, schema: str | None = None) -> None:
        """Version ``table_name``: ``key`` for a table without a primary key (columns with
        a unique index, NOT NULL), ``triggers=False`` to capture only rowver's write layer,
        ``ignore`` for columns that change in place without making versions, ``rewrite``
        True or False to copy the table once (an exclusive lock for the copy; every row
        then stores its version and full scans stay as fast as before) or not; None (the
        default) copies tables of at most 256 MB, decided when the migration runs."""
        operations.invoke(cls(table_name, key=key, triggers=triggers, ignore=ignore, rewrite=rewrite,
                              schema=schema))

    def reverse(self) -> DisableVersioningOp:
        return DisableVersioningOp(self.table_name, schema=self.schema, _reverse=self)

    def statement(self, operations: Operations) -> TextClause:
        return text(
            "SELECT rowver.enable(CAST(:tbl AS regclass), CAST(:key AS name[]), :triggers, "
            "CAST(:ignore AS name[]), CAST(:rewrite AS boolean))"
        ).bindparams(_tbl(operations, self.table_name, self.schema),
                     bindparam("key", self.key, type_=ARRAY(String())),
                     bindparam("triggers", self.triggers, type_=Boolean()),
                     bindparam("ignore", self.ignore, type_=ARRAY(String())),
                     bindparam("rewrite", self.rewrite, type_=Boolean()))


@Operations.register_operation("disable_versioning")
class DisableVersioningOp(MigrateOperation):
    """``rowver.disable``: stop versioning a table; history is dropped unless kept."""

    def __init__(self, table_name: str, *, keep_history: bool = False, schema: str | None = None,
                 _reverse: EnableVersioningOp | None = None) -> None:
        self.table_name = table_name
        self.keep_history = keep_history
        self.schema = schema
        self._reverse = _reverse  # the enable this undoes, with its options

    @classmethod
    def disable_versioning(cls, operations: Operations, table_name: str, *,
                           keep_history: bool = False, schema: str | None = None) -> None:
        """Stop versioning ``table_name`` and drop its history (``keep_history=True`` keeps
        ``T__history`` as a plain table; enabling again then needs it dropped or renamed)."""
        operations.invoke(cls(table_name, keep_history=keep_history, schema=schema))

    def reverse(self) -> EnableVersioningOp:
        return self._reverse or EnableVersioningOp(self.table_name, schema=self.schema)

    def statement(self, operations: Operations) -> TextClause:
        return text("SELECT rowver.disable(CAST(:tbl AS regclass), :keep_history)").bindparams(
            _tbl(operations, self.table_name, self.schema),
            bindparam("keep_history", self.keep_history, type_=Boolean()))


@Operations.register_operation("refresh_versioning")
class RefreshVersioningOp(MigrateOperation):
    """``rowver.refresh``: reconcile history and generated objects with the table as it is."""

    def __init__(self, table_name: str, *, schema: str | None = None) -> None:
        self.table_name = table_name
        self.schema = schema

    @classmethod
    def refresh_versioning(cls, operations: Operations, table_name: str, *,
                           schema: str | None = None) -> None:
        """Refresh ``table_name`` after DDL the refresh hook cannot see (``op.execute``).
        A no-op on unversioned tables."""
        operations.invoke(cls(table_name, schema=schema))

    def reverse(self) -> RefreshVersioningOp:
        return self  # idempotent: refreshing is its own undo

    def statement(self, operations: Operations) -> TextClause:
        return text("SELECT rowver.refresh(CAST(:tbl AS regclass))").bindparams(
            _tbl(operations, self.table_name, self.schema))


@Operations.implementation_for(InstallRowverOp)
def _install_rowver(operations: Operations, operation: InstallRowverOp) -> None:
    ctx = operations.migration_context
    _run(operations, text("SELECT pg_advisory_xact_lock(:k1, :k2)").bindparams(
        k1=_install._INSTALL_LOCK[0], k2=_install._INSTALL_LOCK[1]))  # as rowver init does
    for name, sql in _install.sql_files():
        if ctx.as_sql:
            ctx.impl.static_output(f"-- rowver catalog: {name}\n{sql.strip()}")
        else:
            # the files as psql would run them: several statements, no parameters, so
            # their % and : reach the server untouched
            operations.get_bind().exec_driver_sql(sql, execution_options={"no_parameters": True})


@Operations.implementation_for(EnableVersioningOp)
@Operations.implementation_for(DisableVersioningOp)
def _versioning(operations: Operations,
                operation: EnableVersioningOp | DisableVersioningOp) -> None:
    _run(operations, operation.statement(operations))


@Operations.implementation_for(RefreshVersioningOp)
def _refresh(operations: Operations, operation: RefreshVersioningOp) -> None:
    if not operations.migration_context.as_sql and not _online_scalar(
            operations, "SELECT to_regprocedure('rowver.refresh(regclass)') IS NOT NULL"):
        return  # no catalog yet (an older migration), so nothing can be versioned
    _run(operations, operation.statement(operations))


# -- the refresh hook: Alembic's own table operations, then rowver.refresh --------------


def _online_scalar(operations: Operations, sql: str, **params: Any) -> Any:
    return operations.get_bind().execute(text(sql), params).scalar()


def _hooked(operations: Operations) -> bool:
    ctx = operations.migration_context
    # batch mode defers its DDL to the end of the block, after any refresh emitted here
    return (ctx.dialect.name == "postgresql" and bool(ctx.opts.get("rowver_refresh", True))
            and not isinstance(operations, BatchOperations))


def _through_alter(operations: Operations, table_name: str, schema: str | None) -> bool:
    """Whether a column drop or type change goes through rowver.alter: offline always (the
    script cannot ask; rowver.alter is the plain ALTER on a table that is not versioned),
    online where the table is versioned."""
    if not _hooked(operations):
        return False
    if operations.migration_context.as_sql:
        return True
    if not _online_scalar(operations, "SELECT to_regclass('rowver.versioned') IS NOT NULL"):
        return False
    return bool(_online_scalar(
        operations, "SELECT EXISTS (SELECT FROM rowver.versioned WHERE relid = to_regclass(:t))",
        t=_regclass(operations, table_name, schema)))


def _alter(operations: Operations, table_name: str, schema: str | None, head: str, column: str,
           tail: str = "") -> None:
    """rowver.alter with the action ``head <column> tail``, the column quoted by the server
    (quote_ident): it drops the versions view, runs the DDL (on history too, for a type
    change, with the same USING) and refreshes."""
    _run(operations, text("SELECT rowver.alter(CAST(:tbl AS regclass), "
                          ":head || pg_catalog.quote_ident(:col) || :tail)").bindparams(
        _tbl(operations, table_name, schema), bindparam("head", head, type_=String()),
        bindparam("col", column, type_=String()), bindparam("tail", tail, type_=String())))


def _then_refresh(operations: Operations, table_name: str, schema: str | None) -> None:
    operations.invoke(RefreshVersioningOp(table_name, schema=schema))


@Operations.implementation_for(ops.AddColumnOp, replace=True)
def _add_column(operations: Operations, operation: ops.AddColumnOp) -> None:
    toimpl.add_column(operations, operation)
    if _hooked(operations):
        _then_refresh(operations, operation.table_name, operation.schema)


@Operations.implementation_for(ops.DropColumnOp, replace=True)
def _drop_column(operations: Operations, operation: ops.DropColumnOp) -> None:
    if _through_alter(operations, operation.table_name, operation.schema):
        _alter(operations, operation.table_name, operation.schema,
               "DROP COLUMN IF EXISTS " if operation.if_exists else "DROP COLUMN ", operation.column_name)
        return
    toimpl.drop_column(operations, operation)
    if _hooked(operations):
        _then_refresh(operations, operation.table_name, operation.schema)


@Operations.implementation_for(ops.AlterColumnOp, replace=True)
def _alter_column(operations: Operations, operation: ops.AlterColumnOp) -> None:
    if not _hooked(operations):
        toimpl.alter_column(operations, operation)
        return
    if operation.modify_type is not None and _through_alter(operations, operation.table_name, operation.schema):
        dialect = operations.migration_context.dialect
        rest = copy.copy(operation)
        rest.kw = dict(operation.kw)
        using = rest.kw.pop("postgresql_using", None)
        new_type = dialect.type_compiler_instance.process(operation.modify_type)  # type SQL, not a name
        _alter(operations, operation.table_name, operation.schema, "ALTER COLUMN ", operation.column_name,
               f" TYPE {new_type}" + (f" USING {using}" if using else ""))
        rest.modify_type = None  # nullability, default, comment, name: as Alembic does them
        operation = rest
    toimpl.alter_column(operations, operation)
    _then_refresh(operations, operation.table_name, operation.schema)


@Operations.implementation_for(ops.RenameTableOp, replace=True)
def _rename_table(operations: Operations, operation: ops.RenameTableOp) -> None:
    toimpl.rename_table(operations, operation)
    if _hooked(operations):
        _then_refresh(operations, operation.new_table_name, operation.schema)


# -- autogenerate ---------------------------------------------------------------------


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate filter: leave rowver's objects alone.

    Pass as ``context.configure(include_object=rowver.alembic.include_object)``, or call
    it from your own filter. It hides the ``rv_version`` column (rowver adds and stamps
    it), ``*__history`` tables that are in the database but not in your metadata, and
    anything reflected from the ``rowver`` schema (see also :func:`include_name`). Views and
    functions (``T__versions``, ``T__as_of``) are not compared by autogenerate at all.
    """
    if type_ == "column":
        return name != "rv_version"
    if type_ == "table" and reflected and compare_to is None:
        return getattr(obj, "schema", None) != "rowver" and not (name or "").endswith("__history")
    return True


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Autogenerate reflection filter: never reflect the ``rowver`` schema.

    Pass as ``context.configure(include_name=rowver.alembic.include_name)`` (it matters
    with ``include_schemas=True``; rowver's catalog is not yours to migrate).
    """
    return not (type_ == "schema" and name == "rowver")
