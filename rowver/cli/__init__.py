"""The ``rowver`` command: a thin typer layer over ``rowver.Database``.

Each command connects (``--url``, else ``ROWVER_URL``, else the embedded default),
calls the library function of its name and prints what comes back through
rowver._output. Exit status: 0 success, 1 error (one ``error: ...`` line on
stderr; ``rowver check`` also exits 1 when an invariant is violated), 2 usage
error, 130 interrupted. ``--debug`` (or ``ROWVER_DEBUG=1``) shows tracebacks.

One module per group of commands, each registering on the one app in _common:
tables (what is versioned), reads (looking, reverting, tags), export (files of a version),
tools (demo, bench),
model (the ``rowver model`` group) and server (``rowver server``, the embedded PostgreSQL).
"""

from __future__ import annotations

from . import export, reads, tables, tools, ui  # noqa: F401  (their commands register on app, in this order)
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, app, error_line
from .model import app as model_app
from .server import app as server_app

app.add_typer(model_app, name="model")  # rowver model ...
app.add_typer(server_app, name="server")  # rowver server ...

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "error_line"]
