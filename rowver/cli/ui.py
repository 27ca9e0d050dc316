"""``rowver ui``: the read-only web app (rowver.ui) served on this machine."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from ._common import Url, app, database

Host = Annotated[str, typer.Option(
    "--host", help="The address to listen on. Default: this machine only; anything else should come with --token.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to listen on.")]
Open = Annotated[bool, typer.Option("--open", help="Open the home page in a browser.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="ROWVER_UI_TOKEN", show_envvar=True, metavar="SECRET",
    help="Ask every visitor for this secret (?token=SECRET once, then a cookie), for shared use.")]


@app.command()
def ui(url: Url = None, host: Host = "127.0.0.1", port: Port = 8765, open_browser: Open = False,
       token: Token = None) -> None:
    """Browse tables as of any ref, diffs, row history, changesets and models in a browser (read-only:
    every statement runs in a READ ONLY transaction, as the role URL logs in as)."""
    from ..ui import serve  # (starlette, jinja2 and uvicorn only for this command)

    with database(url) as db:  # the URL resolved (the embedded server started) and the catalog checked
        db.require_catalog()
        target = db.url
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        typer.echo(f"warning: listening on {host} without --token: anyone who can reach it reads what "
                   "the URL's role may read", err=True)
    address = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    typer.echo(f"rowver ui at {address} (read-only; Ctrl+C stops it)")
    if open_browser:
        webbrowser.open(address + (f"?token={token}" if token else ""))
    serve(target, host=host, port=port, token=token)
