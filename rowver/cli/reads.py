"""Commands that look: status, log, show, history, diff, changes, tags, check; and the two
that write a version from the past or name one: revert, tag (with untag and protect)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from .. import Database, _follow, _output, _query
from .._output import Format
from ..errors import InvalidInputError
from ._common import (
    EXIT_ERROR,
    TABLE_ROWS,
    Author,
    DryRun,
    Fmt,
    Limit,
    Message,
    NoPager,
    Table,
    Url,
    Yes,
    app,
    confirm,
    database,
    shown_rows,
    split,
    take,
)


@app.command()
def status(url: Url = None, fmt: Fmt = Format.table) -> None:
    """Versioned tables, head, and the oldest in-flight writer holding head back."""
    with database(url) as db:
        tables = _query.status(db)
        head = db.head()
        in_flight = _query.in_flight(db)
    oldest = dict(zip(in_flight.columns, in_flight.rows[0])) if in_flight.rows else {}
    if fmt is not Format.table:
        extra = {"head": head, "oldest_writer_version": oldest.get("version"),
                 "oldest_writer_pid": oldest.get("pid"), "oldest_writer_start": oldest.get("xact_start")}
        _output.emit([*tables.columns, *extra], [(*row, *extra.values()) for row in tables.rows], fmt)
        return
    shown = {"table_name": "table", "key_columns": "key", "ignore_columns": "ignored", "current_rows": "rows",
             "history_rows": "history", "enabled_version": "since"}
    _output.emit([shown.get(c, c) for c in tables.columns], tables.rows, fmt,
                 empty="No table is versioned yet: rowver enable TABLE")
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
    author: Annotated[str | None, typer.Option(
        "--author", metavar="NAME", help="Only changesets by NAME (the claimed author, session user or role).")] = None,
    grep: Annotated[str | None, typer.Option(
        "--grep", metavar="TEXT", help="Only changesets whose message contains TEXT (any case).")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="REF", help="Only changesets after REF.")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="REF", help="Only changesets at or before REF.")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Changesets, newest first: version, time, author, message, tables, rows changed."""
    with database(url) as db:
        found = _query.log(db, limit=limit, table=table, author=author, grep=grep, since=since, until=until)
    columns, rows = found.columns, found.rows
    if fmt is Format.table:
        columns = ["version", "created_at", "author", "db_user", "message", "tables", "rows"]
        at = [found.columns.index(c) for c in columns]
        rows = [tuple(row[i] for i in at) for row in rows]
    _output.emit(columns, rows, fmt, empty="No changesets yet.")


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
    limit: Limit = None,
    no_pager: NoPager = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Print a table as it was at a version (default: head)."""
    wanted = split(columns)
    with database(url) as db:
        if fmt is Format.csv:  # every row, encoded by the server's COPY where it can
            with _query.stream_csv(db, table, at, columns=wanted, where=where, order_by=order_by,
                                   limit=limit) as read:
                if isinstance(read, _query.Copied):
                    _output.emit_copied(read.blocks, read.encoding)
                else:
                    _output.emit_stream(read.columns, read, fmt, read.type_oids)
            return
        if fmt is not Format.table:  # every row, as it comes, one batch in memory at a time
            with db.stream(table, at, columns=wanted, where=where, order_by=order_by, limit=limit) as stream:
                _output.emit_stream(stream.columns, stream, fmt, stream.type_oids)
            return
        with _output.progress(f"reading {table} as of {at}"):
            found = db.read(table, at, columns=wanted, where=where, order_by=order_by,
                            limit=TABLE_ROWS + 1 if limit is None else limit)
        version, rows = found.version, found.rows
        ref = f"version {version}" if at.strip() == str(version) else f"{at} (version {version})"
        caption = f"{table} as of {ref}: {len(rows)} row(s)"
        shown: str | Callable[[], str] = caption
        if limit is None and len(rows) > TABLE_ROWS:
            rows = rows[:TABLE_ROWS]
            total = _count_aside(db.url, table, str(version), where)

            def shown() -> str:
                return (f"{table} as of {ref}: the first {TABLE_ROWS:,} of {total():,} rows; "
                        "--limit N shows more, --format csv every row")
    _output.emit(found.columns, rows, fmt, caption=shown, pager=not no_pager)


def _count_aside(url: str, table: str, version: str, where: str | None) -> Callable[[], int]:
    """How many rows a read of ``table`` at ``version`` has, counted on a connection of its own
    while the caller draws the first ones (the count scans every row); call the result to wait."""
    from concurrent.futures import ThreadPoolExecutor

    def count() -> int:
        with Database(url) as db:
            return _query.count(db, table, version, where=where)

    pool = ThreadPoolExecutor(1)
    counted = pool.submit(count)
    pool.shutdown(wait=False)
    return counted.result


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
    wanted = split(columns)
    with database(url) as db:
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
    ref_a: Annotated[str | None, typer.Argument(
        metavar="[REF_A]", help="The older ref (needed unless --staged).", show_default=False)] = None,
    ref_b: Annotated[str, typer.Argument(metavar="[REF_B]", help="The newer ref.")] = "head",
    staged: Annotated[str | None, typer.Option(
        "--staged", metavar="NAME", show_default=False,
        help="Instead of two refs: what publishing stage NAME would do, from the table as of the version it "
        "was staged against.")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c", metavar="A,B",
        help="Only the key and these columns, and only rows where one of them differs.")] = None,
    where: Annotated[str | None, typer.Option(
        "--where", metavar="SQL", help="Only rows whose old or new state meets this SQL condition (read-only, "
        "with your privileges; ';' is refused).")] = None,
    limit: Limit = None,
    no_pager: NoPager = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Rows added, removed and changed between two refs, or by publishing a stage (--staged); for
    changed rows, old -> new."""
    shown = shown_rows(limit, fmt)
    only = split(columns)
    if staged is None and ref_a is None:
        raise typer.BadParameter("give REF_A (and REF_B), or --staged NAME", param_hint="REF_A")
    refs = (ref_a, ref_b) if staged is None else (None, None)
    if staged is not None and ref_a is not None:
        raise typer.BadParameter("--staged NAME takes no refs", param_hint="REF_A")
    with database(url) as db:
        if fmt is Format.csv:  # encoded by the server's COPY where it can
            with _query.diff_stream_csv(db, table, *refs, columns=only, where=where, staged=staged,
                                        limit=shown) as (_, read):
                if isinstance(read, _query.Copied):
                    _output.emit_copied(read.blocks, read.encoding)
                else:
                    _output.emit_stream(read.columns, take(read, shown), fmt)
            return
        with _query.diff_stream(db, table, *refs, columns=only, where=where, staged=staged) as ((a, b), stream):
            if fmt is not Format.table:
                _output.emit_stream(stream.columns, take(stream, shown), fmt)
                return
            rows = [dict(zip(stream.columns, r)) for batch in take(stream, shown) for r in batch]
        counts = _query.diff_counts(db, table, *((a, b) if staged is None else refs), columns=only, where=where,
                                    staged=staged)
    total = sum(counts.values())
    more = f"; the first {len(rows):,} shown (--limit N shows more, --format csv every row)" if total > len(rows) else ""
    out = _output.console()
    to = f"stage {staged}" if staged is not None else b
    out.print(f"{table}, version {a} -> {to}: {counts['added']} added, {counts['removed']} removed, "
              f"{counts['changed']} changed{more}")
    if rows:
        with _output.paged(not no_pager, out):
            out.print(_output.diff_table(rows))


@app.command()
def changes(
    tables: Annotated[list[str], typer.Argument(
        metavar="TABLE…", show_default=False,
        help="A table name as PostgreSQL reads it (several only with --follow).")],
    since: Annotated[str | None, typer.Option(
        "--since", metavar="REF", help="Changes after this ref (needed unless --follow, which starts at head).",
        show_default=False)] = None,
    until: Annotated[str, typer.Option("--until", metavar="REF", help="Up to this ref (at most head).")] = "head",
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep printing each changeset as it commits, one JSON object a line (--format "
        "jsonl): {\"version\": V, \"changes\": [{\"table\", \"op\", \"row\"}, …]}; resume with --since "
        "the last version printed.")] = False,
    poll: Annotated[float, typer.Option(
        "--poll", metavar="SECONDS", min=0.01, help="With --follow: look for changes this often even "
        "when no NOTIFY wakes the stream.")] = 5.0,
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c", metavar="A,B", help="Only the key and these columns of each row.")] = None,
    where: Annotated[str | None, typer.Option(
        "--where", metavar="SQL", help="Only changes whose row after the change meets this SQL condition (it "
        "sees rv_version, op and the columns; a delete's row is its key alone; read-only).")] = None,
    limit: Limit = None,
    no_pager: NoPager = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """The change feed: every row change after --since, in version order (insert, update, delete);
    with --follow, a stream of changesets as they commit."""
    if follow:
        if until != "head" or limit is not None or columns is not None or where is not None:
            raise InvalidInputError("--follow streams whole changesets until stopped: --until, --limit, --columns "
                                    "and --where do not apply")
        _follow_changes(tables, since, poll, url, fmt)
        return
    if len(tables) != 1 or since is None:
        raise InvalidInputError("rowver changes reads one table from --since REF (several tables, "
                                "or no --since, need --follow)")
    table = tables[0]
    shown = shown_rows(limit, fmt)
    with database(url) as db, _query.changes_stream(db, table, since, until, columns=split(columns),
                                                    where=where) as stream:
        if fmt is not Format.table:
            _output.emit_stream(stream.columns, take(stream, shown), fmt, stream.type_oids)
            return
        batches = list(take(stream, None if shown is None else shown + 1))
    rows = [r for batch in batches for r in batch]
    more = shown is not None and len(rows) > shown
    caption = "more changes follow: --limit N shows more, --format csv every one" if more else None
    _output.emit(stream.columns, rows[:shown], fmt, caption=caption, pager=not no_pager,
                 empty=f"No changes to {table} after {since}")


def _follow_changes(tables: list[str], since: str | None, poll: float, url: str | None, fmt: Format) -> None:
    """Each changeset as it commits, one JSON line each, flushed: a consumer killed midway has
    every line it read whole, and resumes with --since the last version in them."""
    from psycopg.types.json import set_json_loads

    if fmt is not Format.jsonl:
        raise InvalidInputError("--follow prints one JSON object a line: add --format jsonl")
    with database(url) as db:
        url = db.url
    stream = _follow.follow(url, tables, since, poll=poll,
                            configure=lambda conn: set_json_loads(_output.json_loads, conn))
    try:
        for committed in stream:
            line = {"version": committed.version,
                    "changes": [{"table": c.table, "op": c.op, "row": c.row} for c in committed.changes]}
            sys.stdout.write(_output.json_value(line) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went (| head -n 10): a way to stop, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit)


@app.command()
def revert(
    table: Table,
    to: Annotated[str, typer.Option("--to", metavar="REF", help="The version, tag or time to restore.",
                                    show_default=False)],
    message: Message = None,
    author: Author = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Restore a table as it was at REF, as a new version; nothing is erased."""
    if not dry_run:
        confirm(f"Make {table} as it was at {to} (a new version; the present stays readable)?", yes)
    with database(url) as db:
        with _output.progress(f"reverting {table} to {to}"):
            result = db.revert(table, to, message=message, author=author, dry_run=dry_run)
        target = db.resolve(to)
    if fmt is not Format.table:
        _output.emit(["table", "to", "version", "inserted", "updated", "deleted", "unchanged"],
                     [(table, target, result.version, result.inserted, result.updated,
                       result.deleted, result.unchanged)], fmt)
    elif dry_run:
        typer.echo(f"{table} back to version {target} would insert {result.inserted}, update {result.updated} "
                   f"and delete {result.deleted} row(s) (dry run: nothing changed)")
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
    with database(url) as db:
        before = {row[0]: row[1] for row in _query.tags(db).rows} if move else {}
        version = db.tag(name, at, move=move)
    was = before.get(name)
    typer.echo(f"{name} is version {version}" + (f" (was {was})" if was is not None and was != version else ""))


@app.command()
def untag(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tag to remove.", show_default=False)],
    url: Url = None,
) -> None:
    """Remove a tag (not a protected one); the version it named is untouched."""
    with database(url) as db:
        version = db.untag(name)
    typer.echo(f"removed tag {name} (it named version {version})")


@app.command()
def protect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tag.", show_default=False)],
    off: Annotated[bool, typer.Option("--off", help="Lift the protection.")] = False,
    url: Url = None,
) -> None:
    """Protect a tag from being moved or removed, or lift that (rowver_admin)."""
    with database(url) as db:
        db.protect_tag(name, not off)
    typer.echo(f"{'unprotected' if off else 'protected'} {name}")


@app.command()
def tags(
    history: Annotated[bool, typer.Option("--history", help="Every change to a tag: who, when, from and to.")] = False,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """List tags and the versions they name."""
    with database(url) as db:
        found = _query.tag_log(db) if history else _query.tags(db)
    _output.emit(found.columns, found.rows, fmt, empty="No tags yet: rowver tag NAME")


@app.command()
def check(
    table: Annotated[str | None, typer.Argument(
        metavar="[TABLE]", help="Only this table (default: all).")] = None,
    url: Url = None,
    fmt: Fmt = Format.table,
) -> None:
    """Verify rowver's invariants; exit status 1 when any is violated."""
    with database(url) as db:
        violations = _query.check(db, table)
    if not violations.rows and fmt is Format.table:
        typer.echo(f"ok: every invariant holds{f' for {table}' if table else ''}")
        return
    _output.emit(violations.columns, violations.rows, fmt)
    if violations.rows:
        typer.echo(f"error: {len(violations.rows)} invariant violation(s)", err=True)
        raise typer.Exit(EXIT_ERROR)
