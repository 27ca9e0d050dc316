"""Commands that change tables and what is versioned: init, enable, disable, refresh, load, truncate,
prune, erase, ddl, and staged changesets: publish, stages, unstage."""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import _guards, _output, _query
from .._database import TRUSTED_WRITERS, redacted
from .._output import Format
from ._common import Author, DryRun, Fmt, Ignore, Keys, Message, Rewrite, Table, Triggers, Url, Yes, app, confirm, database


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
    """Start versioning a table; its existing rows become the first version.

    On a terminal, a bar counts the bytes of its copy (a rewrite) and their rate."""
    with database(url) as db:
        if show_sql:
            typer.echo(db.ddl(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite), nl=False)
            return
        with _output.counting(f"enabling versioning of {table}", unit="bytes") as progress, \
                warnings.catch_warnings():  # (the bar counts the bytes of a copy: rewrite)
            warnings.simplefilter("ignore")  # said below, as one line
            version = db.enable(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite,
                                progress=progress)
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
        "--keep-history/--drop-history", help="Keep the history table (the default), or drop every past "
        "version with it.")] = True,
    show_sql: Annotated[bool, typer.Option("--sql", "--dry-run", help="Print the SQL instead of running it.")] = False,
    yes: Yes = False,
    url: Url = None,
) -> None:
    """Stop versioning a table. Its history table is kept unless --drop-history."""
    with database(url) as db:
        if show_sql:
            typer.echo(db.disable_ddl(table, keep_history=keep_history), nl=False)
            return
        if not keep_history:
            confirm(f"Drop every past version of {table}?", yes)
        db.disable(table, keep_history=keep_history)
        kept = "its history table is kept" if keep_history else "its history is dropped"
        typer.echo(f"{table} is no longer versioned; {kept}")


@app.command()
def refresh(table: Table, url: Url = None) -> None:
    """Follow a table's schema changes: history columns, generated objects, new partitions, grants."""
    with database(url) as db, _output.progress(f"refreshing {table}"):
        typer.echo(f"{table}: {db.refresh(table)}")


@app.command()
def analyze(table: Table, url: Url = None) -> None:
    """Update a table's statistics and its history's BRIN summaries; reads older than all its rows skip it."""
    with database(url) as db, _output.progress(f"analyzing {table}"):
        floor = db.analyze(table)
    typer.echo(f"{table}: analyzed; " + (f"reads below version {floor:,} skip the table" if floor is not None
                                         else "reads of every version scan the table (triggers=False, or forced "
                                              "row-level security)"))


class LoadMode(str, Enum):
    sync = "sync"
    upsert = "upsert"
    insert = "insert"
    delete = "delete"


@app.command()
def load(
    table: Table,
    file: Annotated[Path, typer.Argument(
        metavar="FILE", show_default=False, exists=True, dir_okay=False,
        help="A CSV file (UTF-8) whose first line names its columns, or a Parquet file (.parquet, needs pyarrow: "
        "rowver\\[export]); its columns must include the key.")],  # (\\[: not rich markup)
    mode: Annotated[LoadMode, typer.Option(
        "--mode", case_sensitive=False, help="sync: the file is the whole table (keys missing from it are "
        "deleted); upsert: insert or update its rows; insert: only new keys; delete: delete its keys.")] = LoadMode.sync,
    key: Annotated[list[str] | None, typer.Option(
        "--key", metavar="COL", show_default=False,
        help="The key rows are matched by, stated to be sure (repeat for a key of several columns): it must be the "
        "table's key as versioned (rowver enable --key); another is an error, and nothing is written.")] = None,
    max_deleted: Annotated[str | None, typer.Option(
        "--max-deleted", metavar="N|F", show_default=False,
        help="Refuse the load, writing nothing, if it deletes more rows than this: a number of rows (500), "
        "or a fraction of the table's rows before it (0.05 or 5%).")] = None,
    max_changed: Annotated[str | None, typer.Option(
        "--max-changed", metavar="N|F", show_default=False,
        help="Refuse it if it updates or deletes more rows than this (rows, or a fraction as above).")] = None,
    expect_rows: Annotated[str | None, typer.Option(
        "--expect-rows", metavar="LO:HI", show_default=False,
        help="Refuse it unless the table then holds LO to HI rows (either may be left out: 1000:).")] = None,
    stage: Annotated[str | None, typer.Option(
        "--stage", metavar="NAME", show_default=False,
        help="Write nothing: keep what the load would do under NAME, for a look (rowver diff TABLE --staged NAME) "
        "and rowver publish NAME later (sync, upsert or delete; limits are judged now).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="With --stage: replace a stage of that name.")] = False,
    message: Message = None,
    author: Author = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Load a CSV or Parquet file into a versioned table as one changeset: only rows that differ become versions.

    On a terminal, a bar counts what is sent (a CSV file's bytes, a Parquet file's rows) and its rate."""
    guards = _guards.Guards(
        max_deleted=None if max_deleted is None else _guards.parse_limit("--max-deleted", max_deleted),
        max_changed=None if max_changed is None else _guards.parse_limit("--max-changed", max_changed),
        expect_rows=None if expect_rows is None else _guards.parse_bounds(expect_rows))
    if mode is LoadMode.sync and not dry_run and stage is None:
        confirm(f"Make {table} equal {file} (rows whose keys it lacks are deleted)?", yes)
    unit = "rows" if file.name.lower().endswith(".parquet") else "bytes"  # (what cs.load's progress counts)
    with database(url) as db, _output.counting(f"loading {file.name} into {table}", unit=unit) as progress:
        with db.changeset(message=message or f"load {file.name}", author=author, dry_run=dry_run) as cs:
            result = cs.load(table, file, mode.value, max_deleted=guards.max_deleted,
                             max_changed=guards.max_changed, expect_rows=guards.expect_rows,
                             stage=stage, replace=replace, key=key, progress=progress)
    version = None if dry_run else result.version
    if fmt is not Format.table:
        _output.emit(["table", "file", "mode", "version", "inserted", "updated", "deleted", "unchanged"],
                     [(table, str(file), mode.value, version, result.inserted, result.updated, result.deleted,
                       result.unchanged)], fmt)
        return
    counts = f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted, {result.unchanged} unchanged"
    if stage is not None and not dry_run:
        typer.echo(f"{table} from {file}: staged as {stage}, nothing written ({counts}); look with rowver diff "
                   f"{table} --staged {stage}, write it with rowver publish {stage}")
    elif dry_run:
        typer.echo(f"{table} from {file}: would be {counts} (dry run: nothing changed)")
    elif version is None:
        typer.echo(f"{table} already matches {file}; no new version")
    else:
        typer.echo(f"{table} from {file}: version {version}, {counts}")


@app.command()
def truncate(
    table: Table,
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Also empty the tables that reference it by foreign key.")] = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    url: Url = None,
) -> None:
    """Empty a versioned table with every delete on record (a plain TRUNCATE is refused)."""
    if not dry_run:
        confirm(f"Delete every row of {table} (on record, as a new version)?", yes)
    with database(url) as db, _output.progress(f"emptying {table}"):
        deleted = db.truncate(table, cascade=cascade, dry_run=dry_run)
    typer.echo(f"{table}: {deleted} row(s) {'would be deleted (dry run: nothing changed)' if dry_run else 'deleted, on record'}")


@app.command()
def prune(
    table: Table,
    before: Annotated[str, typer.Option("--before", metavar="REF", help="Keep what versions from here on need.",
                                        show_default=False)],
    dry_run: DryRun = False,
    yes: Yes = False,
    url: Url = None,
) -> None:
    """Retention (the table's owner or rowver_admin): drop history older than REF; tagged versions stay readable."""
    if not dry_run:
        confirm(f"Remove for good the history of {table} that no version from {before} on reads?", yes)
    with database(url) as db, _output.progress(f"pruning {table}"):
        removed = db.prune(table, before, dry_run=dry_run)
    done = "would be removed (dry run: nothing changed)" if dry_run else "removed"
    typer.echo(f"{table}: {removed} history row(s) {done} before {before}")


@app.command()
def erase(
    table: Table,
    key: Annotated[list[str], typer.Argument(
        metavar="KEY", help="The row's key values, in key-column order.", show_default=False)],
    dry_run: DryRun = False,
    yes: Yes = False,
    url: Url = None,
) -> None:
    """Legal erasure (the table's owner or rowver_admin): remove one key's data from the table and all of its history."""
    if not dry_run:
        confirm(f"Erase for good every stored state of key {', '.join(key)} of {table}?", yes)
    with database(url) as db:
        erased = db.erase(table, tuple(key), dry_run=dry_run)
    done = "would be erased (dry run: nothing changed)" if dry_run else "erased"
    typer.echo(f"{table}: {erased} stored state(s) of that key {done}")


@app.command()
def ddl(table: Table, key: Keys = None, triggers: Triggers = True, ignore: Ignore = None,
        rewrite: Rewrite = None, url: Url = None) -> None:
    """Print the SQL that `rowver enable` would run, without running it."""
    with database(url) as db:
        typer.echo(db.ddl(table, key=key, triggers=triggers, ignore=ignore or (), rewrite=rewrite), nl=False)


Stage = Annotated[str, typer.Argument(metavar="NAME", show_default=False, help="The stage's name.")]


@app.command()
def publish(
    name: Stage,
    message: Annotated[str | None, typer.Option(
        "--message", "-m", help="The changeset's message (default: the stage's).")] = None,
    author: Annotated[str | None, typer.Option("--author", help="The changeset's author (default: the stage's).")] = None,
    dry_run: DryRun = False,
    url: Url = None,
) -> None:
    """Write a stage (rowver load --stage, cs.sync(..., stage=)) as one changeset, then drop it; refused,
    naming the keys and writing nothing, if a key it stages changed in the table since it was staged."""
    with database(url) as db:
        result = db.publish(name, message=message, author=author, dry_run=dry_run)
    counts = f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted"
    if dry_run:
        typer.echo(f"stage {name}: would be {counts} (dry run: nothing changed, the stage is kept)")
    elif result.version is None:
        typer.echo(f"stage {name} changed nothing; no new version; the stage is dropped")
    else:
        typer.echo(f"stage {name}: version {result.version}, {counts}; the stage is dropped")


@app.command()
def stages(
    table: Annotated[str | None, typer.Argument(metavar="[TABLE]", help="Only this table's stages.")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """List stages kept for a look: table, mode, base version, counts, message, who and when."""
    with database(url) as db:
        found = _query.stages(db, table)
    _output.emit(found.columns, found.rows, fmt, empty="No stages: rowver load TABLE FILE --stage NAME makes one")


@app.command()
def unstage(name: Stage, url: Url = None) -> None:
    """Drop a stage without publishing it."""
    with database(url) as db:
        table = db.unstage(name)
    typer.echo(f"stage {name} of {table} is dropped")
