"""rowver export: a table as of a version, written as files other systems read (Parquet, Delta Lake,
Apache Iceberg)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import _output
from ..errors import InvalidInputError
from ._common import Table, Url, app, database


class FileFormat(str, Enum):
    """What ``rowver export`` writes (``--format``)."""

    parquet = "parquet"
    delta = "delta"
    iceberg = "iceberg"


# (help= rather than a docstring: typer keeps a paragraph's line breaks, so each paragraph is one string)
@app.command(help="Write a table as of a version to Parquet files, a Delta Lake table or an Apache Iceberg table.\n\n"
             "The rows are streamed (memory stays bounded). The files' metadata (a Delta commit's info, an Iceberg "
             "snapshot's summary) names the table and version, and a version exported already is left as it is. "
             "Delta and Iceberg: one commit per version (Iceberg: a snapshot tagged vVERSION); after the first, only "
             "the rows that changed are written. On a terminal, a bar counts the rows written and their rate.")
def export(
    table: Table,
    to: Annotated[Path, typer.Option(
        "--to", metavar="PATH", show_default=False,
        help="parquet: a directory, the files go in PATH/version=V/; delta: a Delta table, one commit per version; "
        "iceberg: the warehouse directory of the Iceberg table, one commit per version.")],
    at: Annotated[str, typer.Option("--at", metavar="REF", help="A version, tag, ISO-8601 time or head.")] = "head",
    fmt: Annotated[FileFormat, typer.Option("--format", "-f", case_sensitive=False, help="The file format.")]
    = FileFormat.parquet,
    cast: Annotated[list[str] | None, typer.Option(
        "--cast", metavar="COL=TYPE", help="Export COL cast by the server to TYPE (e.g. location=text): for a "
        "type with no faithful Parquet type, which is an error otherwise. Repeatable.")] = None,
    catalog: Annotated[str | None, typer.Option(
        "--catalog", metavar="URL", show_default=False,
        help="iceberg: the SQL catalog, a SQLAlchemy URL (postgresql://..., sqlite:///FILE); default: "
        "sqlite:///PATH/catalog.db.")] = None,
    name: Annotated[str | None, typer.Option(
        "--as", metavar="NAMESPACE.TABLE", show_default=False,
        help="iceberg: the table in the catalog; default: rowver.SCHEMA_TABLE.")] = None,
    url: Url = None,
) -> None:
    casts = dict(_cast(c) for c in cast or [])
    with database(url) as db, _output.counting(f"exporting {table} as of {at}") as progress:
        result = db.export(table, to, at, format=fmt.value, cast=casts, catalog=catalog, name=name, progress=progress)
    files = f"{len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if result.written and result.changed is not None:
        typer.echo(f"{table} as of version {result.version}: {result.changed:,} rows written; {result.rows:,} rows "
                   f"in {files} under {result.path}")
    elif result.written:
        typer.echo(f"{table} as of version {result.version}: {result.rows:,} rows in {files} under {result.path}")
    else:
        typer.echo(f"{table} as of version {result.version} is exported already ({result.rows:,} rows in {files} "
                   f"under {result.path}); nothing written")


def _cast(text: str) -> tuple[str, str]:
    column, sep, type_name = text.partition("=")
    if not sep or not column.strip() or not type_name.strip():
        raise InvalidInputError(f"--cast takes COL=TYPE, not {text!r}")
    return column.strip(), type_name.strip()
