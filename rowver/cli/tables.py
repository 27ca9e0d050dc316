"""Commands that change what is versioned: init, enable, disable, refresh, truncate, prune, erase, ddl."""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from .. import _output
from .._database import TRUSTED_WRITERS, redacted
from ._common import Ignore, Keys, Rewrite, Table, Triggers, Url, app, database


@app.command()
def init(url: Url = None) -> None:
    """Install or upgrade rowver's catalog in the database (idempotent)."""
    with database(url) as db:
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
    with database(url) as db:
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
    with database(url) as db:
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
    with database(url) as db, _output.progress(f"refreshing {table}"):
        typer.echo(f"{table}: {db.refresh(table)}")


@app.command()
def truncate(
    table: Table,
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Also empty the tables that reference it by foreign key.")] = False,
    url: Url = None,
) -> None:
    """Empty a versioned table with every delete on record (a plain TRUNCATE is refused)."""
    with database(url) as db, _output.progress(f"emptying {table}"):
        typer.echo(f"{table}: {db.truncate(table, cascade=cascade)} row(s) deleted, on record")


@app.command()
def prune(
    table: Table,
    before: Annotated[str, typer.Option("--before", metavar="REF", help="Keep what versions from here on need.",
                                        show_default=False)],
    url: Url = None,
) -> None:
    """Retention (the table's owner or rowver_admin): drop history older than REF; tagged versions stay readable."""
    with database(url) as db, _output.progress(f"pruning {table}"):
        typer.echo(f"{table}: {db.prune(table, before)} history row(s) removed before {before}")


@app.command()
def erase(
    table: Table,
    key: Annotated[list[str], typer.Argument(
        metavar="KEY", help="The row's key values, in key-column order.", show_default=False)],
    url: Url = None,
) -> None:
    """Legal erasure (the table's owner or rowver_admin): remove one key's data from the table and all of its history."""
    with database(url) as db:
        typer.echo(f"{table}: {db.erase(table, tuple(key))} stored state(s) of that key erased")


@app.command()
def ddl(table: Table, key: Keys = None, triggers: Triggers = True, ignore: Ignore = None,
        rewrite: Rewrite = None, url: Url = None) -> None:
    """Print the SQL that `rowver enable` would run, without running it."""
    with database(url) as db:
        typer.echo(db.ddl(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite), nl=False)
