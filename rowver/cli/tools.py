"""Commands that show and measure: demo, bench."""

from __future__ import annotations

from typing import Annotated

import typer

from .._output import Format
from ._common import EXIT_ERROR, Fmt, Url, app, database


@app.command()
def demo(url: Url = None) -> None:
    """Show rowver at work on a small shop: versions, time travel, a diff and a revert.

    Creates (and, when run again, replaces) the schema rowver_demo.
    """
    from .. import _demo

    with database(url) as db:
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
    """Measure what versioning costs here: each figure against a plain table (figures 10 and 11, reads and web pages,
    in milliseconds), with its target.

    Works in a scratch database (rowver_bench_<random>) that it creates, with rowver
    installed, and drops afterwards, also on error or Ctrl-C: this database is left as it was.
    """
    from .. import bench as _bench

    with database(url) as db, _bench.status_line() as say:
        report = _bench.bench(db, rows=rows, quick=quick, models=quick if models is None else models,
                              rewrite=rewrite, deep=deep, in_place=in_place, progress=say)
    _bench.emit(report, fmt)
    failed = [f for f in report.figures if f.status.startswith("error")]
    if failed:
        typer.echo(f"error: figure {failed[0].figure} ({failed[0].name}): {failed[0].status}", err=True)
        raise typer.Exit(EXIT_ERROR)
