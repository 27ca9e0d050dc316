"""The ``rowver`` command: a thin typer layer over ``rowver.Database``.

Each command connects (``--url``, else ``ROWVER_URL``, else the embedded default),
calls the library function of its name and prints what comes back through
rowver._output. Exit status: 0 success, 1 error (one ``error: ...`` line on
stderr; ``rowver check`` also exits 1 when an invariant is violated), 2 usage
error, 130 interrupted. ``--debug`` (or ``ROWVER_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from psycopg import sql
from typer.core import TyperGroup

import rowver

from . import _output
from ._cli_model import app as model_app
from ._database import TRUSTED_WRITERS, redacted
from ._output import Format
from .errors import InvalidInputError, RowverError, from_database, translated

if TYPE_CHECKING:
    pass

# The exit-code table.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # typer's own, for usage errors
EXIT_INTERRUPTED = 130


class _Group(TyperGroup):
    """Turns any error a command raises into one ``error:`` line and exit status 1."""

    def invoke(self, ctx: Any) -> Any:  # ctx: typer's click Context
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors (exit 2), explicit exits
        except KeyboardInterrupt:
            if ctx.meta.get("rowver.debug"):
                raise
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            if ctx.meta.get("rowver.debug"):
                raise
            typer.echo(f"error: {error_line(exc)}", err=True)
            raise typer.Exit(EXIT_ERROR) from None


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(exc, psycopg.Error):
        exc = from_database(exc)
    if isinstance(exc, RowverError):
        text = str(exc)
        if exc.hint:
            text = f"{text} ({exc.hint})"
    elif isinstance(exc, (RuntimeError, OSError)):
        text = f"{exc} (rerun with --debug for the traceback)"
    else:
        text = f"{type(exc).__name__}: {exc} (a bug in rowver? rerun with --debug for the traceback)"
    return _output.printable("; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip()))


app = typer.Typer(
    cls=_Group,
    name="rowver",
    help="Version the rows of PostgreSQL tables: read any table as of any version, "
    "compare versions, and restore old states.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold passwords
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rowver {rowver.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", envvar="ROWVER_DEBUG",
                                        help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print rowver's version and exit.")] = False,
) -> None:
    """Row versioning inside PostgreSQL.

    Every command takes --url (or ROWVER_URL); without either, rowver uses an embedded
    PostgreSQL under ROWVER_HOME, with the catalog installed on first use.
    """
    ctx.meta["rowver.debug"] = debug


# -- options shared by commands ------------------------------------------------------------

Url = Annotated[str | None, typer.Option(
    "--url", envvar="ROWVER_URL", show_envvar=True, metavar="URL",
    help="PostgreSQL URL. Default: the embedded server under ROWVER_HOME.")]
Fmt = Annotated[Format, typer.Option(
    "--format", "-f", case_sensitive=False,
    help="table (for people), csv, or json: one array of objects; timestamps ISO-8601, "
    "numerics as exact strings, bytea as base64, NULL and NaN as null.")]
Table = Annotated[str, typer.Argument(
    metavar="TABLE", show_default=False,
    help="A table name as PostgreSQL reads it: customers, sales.orders, '\"Order Items\"'.")]
Keys = Annotated[list[str] | None, typer.Option(
    "--key", metavar="COL", help="Key column (repeat for a composite key). "
    "Default: the primary key.")]
Triggers = Annotated[bool, typer.Option(
    "--triggers/--no-triggers", help="Capture every writer with triggers, or only writes "
    "made through rowver.")]
Ignore = Annotated[list[str] | None, typer.Option(
    "--ignore", metavar="COL", help="A column that changes in place, without making versions "
    "(repeatable).")]
Rewrite = Annotated[bool | None, typer.Option(
    "--rewrite/--no-rewrite", help="Copy the table once, under an exclusive lock, so that every row "
    "stores its version, or not (rv_version is then a fast default, and full scans cost ~15% more "
    "until the table is rewritten). Default: copy tables of at most 256 MB.", show_default=False)]


@contextmanager
def _database(url: str | None) -> Iterator[rowver.Database]:
    """A connected Database for one command; jsonb numbers are read exactly."""
    from psycopg.types.json import set_json_loads

    embedded = not url and not os.environ.get("ROWVER_URL")
    with _output.progress("starting the embedded PostgreSQL") if embedded else nullcontext():
        db = rowver.connect(url)
    try:
        set_json_loads(_output.json_loads, db.conn)
        yield db
    finally:
        db.close()


# -- catalog and schema ---------------------------------------------------------------------


@app.command()
def init(url: Url = None) -> None:
    """Install or upgrade rowver's catalog in the database (idempotent)."""
    with _database(url) as db:
        db.init()
        typer.echo(f"rowver catalog {db.catalog_version()} is installed in {redacted(db.url)}")


@app.command()
def enable(
    table: Table,
    key: Keys = None,
    triggers: Triggers = True,
    ignore: Ignore = None,
    rewrite: Rewrite = None,
    show_sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    url: Url = None,
) -> None:
    """Start versioning a table; its existing rows become the first version."""
    with _database(url) as db:
        if show_sql:
            typer.echo(db.ddl(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite), nl=False)
            return
        with _output.progress(f"enabling versioning of {table}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said below, as one line
            version = db.enable(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite)
            stored = db.conn.execute("select rowver.stores_version(%s::regclass)", (table,)).fetchone()
        typer.echo(f"{table} is versioned; its current rows are version {version}")
        if not triggers:
            typer.echo(f"warning: {TRUSTED_WRITERS.format(table=table)}", err=True)
        if stored and stored[0] is False:
            typer.echo(f"{table} was not copied (over rowver.rewrite_limit, or --no-rewrite): rv_version is a "
                       "fast default, and full scans of it cost ~15% more until VACUUM FULL or CLUSTER "
                       "rewrites it")


@app.command()
def disable(
    table: Table,
    keep_history: Annotated[bool, typer.Option(
        "--keep-history", help="Keep the history table (default: drop it).")] = False,
    show_sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask before dropping history (only asked on a terminal).")] = False,
    url: Url = None,
) -> None:
    """Stop versioning a table. Its history is dropped unless --keep-history."""
    with _database(url) as db:
        if show_sql:
            typer.echo(db.disable_ddl(table, keep_history=keep_history), nl=False)
            return
        if not keep_history and not yes and sys.stdin.isatty():
            typer.confirm(f"Drop every past version of {table}?", abort=True)
        db.disable(table, keep_history=keep_history)
        kept = "its history table is kept" if keep_history else "its history is dropped"
        typer.echo(f"{table} is no longer versioned; {kept}")


@app.command()
def refresh(table: Table, url: Url = None) -> None:
    """Follow a table's schema changes: history columns, generated objects, new partitions, grants."""
    with _database(url) as db, _output.progress(f"refreshing {table}"):
        typer.echo(f"{table}: {db.refresh(table)}")


@app.command()
def truncate(
    table: Table,
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Also empty the tables that reference it by foreign key.")] = False,
    url: Url = None,
) -> None:
    """Empty a versioned table with every delete on record (a plain TRUNCATE is refused)."""
    with _database(url) as db, _output.progress(f"emptying {table}"):
        typer.echo(f"{table}: {db.truncate(table, cascade=cascade)} row(s) deleted, on record")


@app.command()
def prune(
    table: Table,
    before: Annotated[str, typer.Option("--before", metavar="REF", help="Keep what versions from here on need.",
                                        show_default=False)],
    url: Url = None,
) -> None:
    """Retention (the table's owner or rowver_admin): drop history older than REF; tagged versions stay readable."""
    with _database(url) as db, _output.progress(f"pruning {table}"):
        typer.echo(f"{table}: {db.prune(table, before)} history row(s) removed before {before}")


@app.command()
def erase(
    table: Table,
    key: Annotated[list[str], typer.Argument(
        metavar="KEY", help="The row's key values, in key-column order.", show_default=False)],
    url: Url = None,
) -> None:
    """Legal erasure (the table's owner or rowver_admin): remove one key's data from the table and all of its history."""
    with _database(url) as db:
        typer.echo(f"{table}: {db.erase(table, tuple(key))} stored state(s) of that key erased")


@app.command()
def ddl(table: Table, key: Keys = None, triggers: Triggers = True, ignore: Ignore = None,
        rewrite: Rewrite = None, url: Url = None) -> None:
    """Print the SQL that `rowver enable` would run, without running it."""
    with _database(url) as db:
        typer.echo(db.ddl(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite), nl=False)


# -- looking around -------------------------------------------------------------------------


@app.command()
def status(url: Url = None, fmt: Fmt = Format.table) -> None:
    """Versioned tables, head, and the oldest in-flight writer holding head back."""
    with _database(url) as db:
        tables = db.status()
        head = db.head()
        in_flight = db.in_flight()
    writer = _output.frame_rows(in_flight.head(1))[1]
    oldest = dict(zip(in_flight.columns, writer[0])) if writer else {}
    if fmt is not Format.table:
        tables = tables.assign(head=head, oldest_writer_version=oldest.get("version"),
                               oldest_writer_pid=oldest.get("pid"),
                               oldest_writer_start=oldest.get("xact_start"))
        _output.emit_frame(tables, fmt)
        return
    shown = tables.rename(columns={"table_name": "table", "key_columns": "key",
                                   "ignore_columns": "ignored", "current_rows": "rows",
                                   "history_rows": "history", "enabled_version": "since"})
    _output.emit_frame(shown, fmt, empty="No table is versioned yet: rowver enable TABLE")
    out = _output.console()
    out.print(f"head: {head}")
    if oldest:
        who = (f"pid {oldest['pid']}" if oldest.get("pid") is not None
               else f"prepared transaction {oldest.get('prepared_gid') or ''}".rstrip())
        since = _output.cell_text(oldest.get("xact_start"))
        out.print(f"oldest in-flight writer: version {oldest['version']}, {who}, started {since} "
                  f"({oldest.get('state')}); head cannot pass it until it ends")
    else:
        out.print("in-flight writers: none")


@app.command()
def log(
    table: Annotated[str | None, typer.Option(
        "--table", "-t", metavar="TABLE", help="Only changesets touching TABLE.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N changesets.")] = 50,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Changesets, newest first: version, time, author, message, tables, rows changed."""
    with _database(url) as db:
        frame = db.log(limit=limit, table=table)
    if fmt is Format.table:
        frame = frame[["version", "created_at", "author", "db_user", "message", "tables", "rows"]]
    _output.emit_frame(frame, fmt, empty="No changesets yet.")


@app.command()
def show(
    table: Table,
    at: Annotated[str, typer.Option(
        "--at", metavar="REF", help="A version, tag, ISO-8601 time or head.")] = "head",
    where: Annotated[str | None, typer.Option(
        "--where", metavar="SQL", help="A condition in SQL, e.g. \"city = 'Lisbon'\". It runs in a "
        "READ ONLY transaction, as part of one SELECT, with your privileges; ';' is refused.")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c", metavar="A,B", help="Only these columns, comma-separated.")] = None,
    order_by: Annotated[list[str] | None, typer.Option(
        "--order-by", metavar="COL", help="Order by this column (repeatable). Default: the key.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N rows.")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Print a table as it was at a version (default: head)."""
    with _database(url) as db:
        version = db.resolve_for(table, at)
        with _output.progress(f"reading {table} as of version {version}"):
            names, rows = read_as_of(db, table, version, columns=_split(columns), where=where,
                                     order_by=order_by, limit=limit)
    ref = f"version {version}" if at.strip() == str(version) else f"{at} (version {version})"
    _output.emit(names, rows, fmt, caption=f"{table} as of {ref}: {len(rows)} row(s)")


@app.command()
def history(
    table: Table,
    key: Annotated[list[str], typer.Argument(
        metavar="KEY", help="The row's key values, in key-column order (several for a composite key).",
        show_default=False)],
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c", metavar="A,B",
        help="Only these of the row's columns, comma-separated (the version columns always show).")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Every version of one row: version, until, deleted, time, author, message, values."""
    wanted = _split(columns)
    with _database(url) as db:
        frame = db.history(table, tuple(key))
        if frame.empty:
            raise InvalidInputError(f"{table} has no version of a row with key {', '.join(key)}")
    meta = ["rv_version", "rv_until", "rv_deleted", "created_at", "author", "message"]
    values = [c for c in frame.columns if c not in meta]
    for name in wanted or ():
        if name not in values:
            raise InvalidInputError(f"{table} has no column {name!r}; its columns are {', '.join(values)}")
    frame = frame[[*meta, *(wanted or values)]]
    _output.emit_frame(frame, fmt)


@app.command()
def diff(
    table: Table,
    ref_a: Annotated[str, typer.Argument(metavar="REF_A", help="The older ref.", show_default=False)],
    ref_b: Annotated[str, typer.Argument(metavar="REF_B", help="The newer ref.")] = "head",
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Rows added, removed and changed between two refs; for changed rows, old -> new."""
    with _database(url) as db:
        frame = db.diff(table, ref_a, ref_b)
    a, b = frame.attrs["versions"]  # what was read (a second resolve could see a newer head)
    rows = _output.diff_records(frame)
    if fmt is not Format.table:
        _output.emit(["op", "key", "changed", "old", "new"], [tuple(r.values()) for r in rows], fmt)
        return
    counts = _output.diff_counts(rows)
    out = _output.console()
    out.print(f"{table}, version {a} -> {b}: {counts['added']} added, {counts['removed']} removed, "
              f"{counts['changed']} changed")
    if rows:
        out.print(_output.diff_table(rows))


@app.command()
def changes(
    table: Table,
    since: Annotated[str, typer.Option("--since", metavar="REF", help="Changes after this ref.",
                                       show_default=False)],
    until: Annotated[str, typer.Option("--until", metavar="REF", help="Up to this ref (at most head).")] = "head",
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """The change feed: every row change after --since, in version order (insert, update, delete)."""
    with _database(url) as db:
        frame = db.changes(table, since, until)
    _output.emit_frame(frame, fmt, empty=f"No changes to {table} after {since}")


@app.command()
def revert(
    table: Table,
    to: Annotated[str, typer.Option("--to", metavar="REF", help="The version, tag or time to restore.",
                                    show_default=False)],
    message: Annotated[str | None, typer.Option(
        "--message", "-m", help="The changeset's message.")] = None,
    author: Annotated[str | None, typer.Option("--author", help="The changeset's author.")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Restore a table as it was at REF, as a new version; nothing is erased."""
    with _database(url) as db:
        with _output.progress(f"reverting {table} to {to}"):
            result = db.revert(table, to, message=message, author=author)
        target = db.resolve(to)
    if fmt is not Format.table:
        _output.emit(["table", "to", "version", "inserted", "updated", "deleted", "unchanged"],
                     [(table, target, result.version, result.inserted, result.updated,
                       result.deleted, result.unchanged)], fmt)
    elif result.version is None:
        typer.echo(f"{table} already matches version {target}; no new version")
    else:
        typer.echo(f"{table} is back to version {target} as version {result.version}: "
                   f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted")


@app.command()
def tag(
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="The tag, e.g. train-2026-11.", show_default=False)],
    at: Annotated[str, typer.Option("--at", metavar="REF", help="The version to name.")] = "head",
    move: Annotated[bool, typer.Option("--move", help="Move the tag if it exists (not a protected one).")] = False,
    url: Url = None,
) -> None:
    """Name a version, so that refs can say NAME instead of a number (needs rowver_tagger)."""
    with _database(url) as db:
        before = db.tags().set_index("name")["version"].to_dict() if move else {}
        version = db.tag(name, at, move=move)
    was = before.get(name)
    typer.echo(f"{name} is version {version}" + (f" (was {was})" if was is not None and was != version else ""))


@app.command()
def untag(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tag to remove.", show_default=False)],
    url: Url = None,
) -> None:
    """Remove a tag (not a protected one); the version it named is untouched."""
    with _database(url) as db:
        version = db.untag(name)
    typer.echo(f"removed tag {name} (it named version {version})")


@app.command()
def protect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tag.", show_default=False)],
    off: Annotated[bool, typer.Option("--off", help="Lift the protection.")] = False,
    url: Url = None,
) -> None:
    """Protect a tag from being moved or removed, or lift that (rowver_admin)."""
    with _database(url) as db:
        db.protect_tag(name, not off)
    typer.echo(f"{'unprotected' if off else 'protected'} {name}")


@app.command()
def tags(
    history: Annotated[bool, typer.Option("--history", help="Every change to a tag: who, when, from and to.")] = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """List tags and the versions they name."""
    with _database(url) as db:
        frame = db.tags(history=history)
    _output.emit_frame(frame, fmt, empty="No tags yet: rowver tag NAME")


@app.command()
def check(
    table: Annotated[str | None, typer.Argument(
        metavar="[TABLE]", help="Only this table (default: all).")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Verify rowver's invariants; exit status 1 when any is violated."""
    with _database(url) as db:
        violations = db.check(table)
    if violations.empty and fmt is Format.table:
        typer.echo(f"ok: every invariant holds{f' for {table}' if table else ''}")
        return
    _output.emit_frame(violations, fmt)
    if not violations.empty:
        typer.echo(f"error: {len(violations)} invariant violation(s)", err=True)
        raise typer.Exit(EXIT_ERROR)


@app.command()
def demo(url: Url = None) -> None:
    """Show rowver at work on a small shop: versions, time travel, a diff and a revert.

    Creates (and, when run again, replaces) the schema rowver_demo.
    """
    from . import _demo

    with _database(url) as db:
        _demo.run(db, url=url)


@app.command()
def bench(
    rows: Annotated[int | None, typer.Option(
        "--rows", "-n", min=1000, metavar="N",
        help="Rows in each bench table. Default: 1,000,000 (--quick: 20,000).")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A small, fast run that checks the bench works; its figures are not measurements.")] = False,
    models: Annotated[bool | None, typer.Option(
        "--models/--no-models",
        help="Also measure the model store (figure 8): at full size it writes about 8 GB of weights, into "
             "a scratch database dropped afterwards (a role without CREATEDB: into this database, where "
             "they stay). Default: only with --quick (4 MB).")] = None,
    rewrite: Annotated[bool | None, typer.Option(
        "--rewrite/--no-rewrite", help="Enable the versioned bench table as `rowver enable --rewrite` "
        "(or --no-rewrite) does. Default: as enable decides, by the table's size.", show_default=False)] = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Measure figure 4 again after 200 rounds of updates instead of 50.")] = False,
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Run in a scratch schema of this database (which needs rowver installed) instead "
        "of a scratch database; the bench's changesets then stay in this database's log.")] = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Measure what versioning costs here: each figure against a plain table (figure 10's reads
    in milliseconds), with its target.

    Works in a scratch database (rowver_bench_<random>) that it creates, with rowver
    installed, and drops afterwards, also on error or Ctrl-C: this database is left as it was.
    """
    from . import _bench

    with _database(url) as db, _bench.status_line() as say:
        report = _bench.bench(db, rows=rows, quick=quick, models=quick if models is None else models,
                              rewrite=rewrite, deep=deep, in_place=in_place, progress=say)
    _bench.emit(report, fmt)
    failed = [f for f in report.figures if f.status.startswith("error")]
    if failed:
        typer.echo(f"error: figure {failed[0].figure} ({failed[0].name}): {failed[0].status}", err=True)
        raise typer.Exit(EXIT_ERROR)


app.add_typer(model_app, name="model")  # rowver model ...


# -- reads the library does not offer (yet) -----------------------------------------------


def read_as_of(db: rowver.Database, table: str, version: int, *, columns: list[str] | None = None,
               where: str | None = None, order_by: list[str] | None = None,
               limit: int | None = None) -> tuple[list[str], _output.Rows]:
    """Rows of ``table`` as of a resolved version: one SELECT in a READ ONLY transaction."""
    if where is not None and (";" in where or not where.strip()):
        raise InvalidInputError("--where takes one SQL condition, without ';'")
    conn = db.conn
    with translated():
        found = conn.execute(
            "select rowver.as_of_sql(%s::regclass, %s), (rowver.registered(%s::regclass)).key_columns",
            (table, version, table)).fetchone()
        assert found is not None
        source, keys = found
        # source is the as-of function call, quoted by rowver.as_of_sql with format('%I')
        source_sql = sql.SQL(source)
        known = [d.name for d in conn.execute(
            sql.SQL("select * from {} limit 0").format(source_sql)).description or []]
    for name in [*(columns or ()), *(order_by or ())]:
        if name not in known:
            raise InvalidInputError(f"{table} has no column {name!r}; its columns are {', '.join(known)}")
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)) if columns else sql.SQL("*"), source_sql)
    if where is not None:
        # the user's own SQL, on its own lines so that a trailing -- comment ends there
        query += sql.SQL(" where (\n{}\n)").format(sql.SQL(where))
    query += sql.SQL(" order by {}").format(sql.SQL(", ").join(map(sql.Identifier, order_by or keys)))
    if limit is not None:
        query += sql.SQL(" limit {}").format(sql.Literal(limit))
    try:
        with translated(), conn.transaction():
            conn.execute("set transaction read only")
            cursor = conn.execute(query)
            rows = cursor.fetchall()
    except RowverError as exc:
        if where is not None and (exc.sqlstate or "")[:2] in ("42", "22", "25"):
            raise type(exc)(f"{exc} (in --where {where!r})", sqlstate=exc.sqlstate) from exc
        raise
    return [d.name for d in cursor.description or []], rows


def _split(columns: str | None) -> list[str] | None:
    if columns is None:
        return None
    names = [c.strip() for c in columns.split(",") if c.strip()]
    if not names:
        raise InvalidInputError("--columns needs at least one column name")
    return names


__all__ = ["app", "error_line"]
