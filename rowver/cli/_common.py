"""What every command shares: the app and its error handling (one ``error:`` line, the exit-code
table), the options, and the one place commands connect."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import psycopg
import typer
from typer.core import TyperGroup

import rowver

from .. import _output
from .._output import Format
from ..errors import InvalidInputError, RowverError, from_database

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
    help="table (for people), csv, json: one array of objects, or jsonl: one object a line; timestamps "
    "ISO-8601, numerics as exact strings, bytea as base64, NULL and NaN as null.")]
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


Message = Annotated[str | None, typer.Option("--message", "-m", help="The changeset's message.")]
Author = Annotated[str | None, typer.Option("--author", help="The changeset's author.")]
# rows the table format shows when no --limit is given
TABLE_ROWS = 1000
Limit = Annotated[int | None, typer.Option(
    "--limit", "-n", min=0, help=f"At most N rows. Default: {TABLE_ROWS:,} in the table format (a line says what "
    "was left out), every row in csv and json, which stream.", show_default=False)]
NoPager = Annotated[bool, typer.Option(
    "--no-pager", help="Print the table straight out, not through $PAGER (less -FRX).")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Say what it would change, and change nothing.")]
Yes = Annotated[bool, typer.Option(
    "--yes", "-y", help="Do not ask first (asked only on a terminal).")]


def shown_rows(limit: int | None, fmt: Format) -> int | None:
    """How many rows to print: --limit, else TABLE_ROWS for a table and every row otherwise."""
    return limit if limit is not None or fmt is not Format.table else TABLE_ROWS


def take(batches: Iterable[list[Any]], limit: int | None) -> Iterator[list[Any]]:
    """The batches, cut after ``limit`` rows in all (None: every row); the rest is never fetched."""
    left = limit
    for batch in batches:
        if left is not None and left <= len(batch):
            if left:
                yield batch[:left]
            return
        if left is not None:
            left -= len(batch)
        yield batch


def interactive() -> bool:
    """Whether a person is at the terminal to answer."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirm(question: str, yes: bool) -> None:
    """Ask before a change that deletes or drops, on a terminal only; ``--yes`` skips it."""
    if not yes and interactive():
        typer.confirm(question, abort=True)


def emit_record(record: dict[str, Any], fmt: Format) -> None:
    """One record: as two columns (field, value) for people, one object in json and csv."""
    if fmt is Format.table:
        _output.emit(["field", "value"], list(record.items()), fmt)
    else:
        _output.emit(list(record), [tuple(record.values())], fmt)


@contextmanager
def database(url: str | None) -> Iterator[rowver.Database]:
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


def split(columns: str | None) -> list[str] | None:
    if columns is None:
        return None
    names = [c.strip() for c in columns.split(",") if c.strip()]
    if not names:
        raise InvalidInputError("--columns needs at least one column name")
    return names
