"""``rowver server ...``: the embedded PostgreSQL that rowver uses when no URL is given.

It lives under ROWVER_HOME (by default the platform's user data directory, e.g.
~/.local/share/rowver), listens on a Unix socket only, and keeps running between commands so
that each does not pay for a start. These commands show it, start it, stop it and open psql on it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Annotated

import typer

from .. import _server
from .._output import Format
from ._common import EXIT_ERROR, Fmt, emit_record

app = typer.Typer(name="server", no_args_is_help=True,
                  help="The embedded PostgreSQL used when no --url or ROWVER_URL is given: url, status, start, "
                       "stop, psql.")


@app.command()
def url() -> None:
    """Print the embedded server's URL (starting it if it is not running), for ROWVER_URL or psql."""
    typer.echo(_server.embedded_url())


@app.command()
def status(fmt: Fmt = Format.table) -> None:
    """Whether the embedded server runs, its data directory, URL, pid and log; starts nothing."""
    info = _server.embedded_info()
    emit_record({"running": info.running, "data_directory": str(info.pgdata), "url": info.url, "pid": info.pid,
                 "started": info.started, "log": str(info.log)}, fmt)


@app.command()
def start() -> None:
    """Start the embedded server (if it is not running) and print its URL."""
    typer.echo(_server.embedded_url())


@app.command()
def stop() -> None:
    """Stop the embedded server (fast shutdown: open sessions are ended). The next command that needs it starts it."""
    if not _server.embedded_info().running:
        typer.echo("the embedded server is not running")
        return
    _server.stop_embedded()
    typer.echo("the embedded server is stopped")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context,
         database: Annotated[str, typer.Option("--db", metavar="NAME", help="The database to open.")] = "postgres",
         ) -> None:
    """Open psql on the embedded server (starting it); further arguments go to psql."""
    exe = _server.tool("psql")
    if exe is None:
        typer.echo("error: psql is not installed (it comes with PostgreSQL's client tools)", err=True)
        raise typer.Exit(EXIT_ERROR)
    target = _server.embedded_url(dbname=database)
    raise typer.Exit(subprocess.call([str(exe), target, *ctx.args], env={**os.environ, "PGAPPNAME": "rowver"}))
