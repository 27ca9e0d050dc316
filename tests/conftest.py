"""Fixtures for tests that run on a real PostgreSQL, never a mock.

The server is ``ROWVER_TEST_URL`` (a maintenance database on a server where we
are superuser), else an embedded PostgreSQL under ``<repo>/.rowver-test-home``.
rowver's catalog is installed once into a template database; each test gets
its own clone, which is cheaper than installing and far cheaper than cleaning up.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rowver import _install
from rowver._server import embedded_info, embedded_url, server_url_for, stop_embedded

REPO = Path(__file__).resolve().parent.parent
# (ROWVER_TEST_HOME: for the test that runs the suite itself in a home of its own)
TEST_HOME = Path(os.environ.get("ROWVER_TEST_HOME") or REPO / ".rowver-test-home")

_db_names = itertools.count()


@functools.cache
def _maintenance_url() -> str:
    return os.environ.get("ROWVER_TEST_URL") or embedded_url(home_dir=TEST_HOME)


def pytest_configure(config: pytest.Config) -> None:
    # Code under test that falls back to defaults (ROWVER_URL, the embedded
    # server) must land in the test home, never in the user's real one.
    os.environ["ROWVER_HOME"] = str(TEST_HOME)
    os.environ.pop("ROWVER_URL", None)
    if _embedded():
        RUNS.mkdir(parents=True, exist_ok=True)
        (RUNS / str(os.getpid())).touch()


# Runs of the suite using the embedded server, one file each (by pid): the last to end stops it.
RUNS = TEST_HOME / "runs"


def _embedded() -> bool:
    return not os.environ.get("ROWVER_TEST_URL")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The suite stops the embedded server it started, unless another run still uses it: one
    still registered, or (a run from before this rule) connected to it."""
    if not _embedded() or not (RUNS / str(os.getpid())).exists():
        return
    (RUNS / str(os.getpid())).unlink()
    if not embedded_info(TEST_HOME).running or any(_alive(int(p.name)) for p in RUNS.iterdir() if p.name.isdigit()):
        return
    if not _others_connected():
        stop_embedded(TEST_HOME)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        (RUNS / str(pid)).unlink(missing_ok=True)  # a run that crashed
        return False
    except PermissionError:
        pass
    return True


def _others_connected() -> bool:
    try:
        with psycopg.connect(_maintenance_url(), connect_timeout=5) as conn:
            row = conn.execute("select count(*) from pg_stat_activity where backend_type = 'client backend'"
                               " and pid <> pg_backend_pid()").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


@functools.cache
def _server_line() -> str:
    source = "ROWVER_TEST_URL" if os.environ.get("ROWVER_TEST_URL") else f"embedded, {TEST_HOME}"
    try:
        with psycopg.connect(_maintenance_url(), connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"rowver test server: PostgreSQL {row[0] if row else '?'} ({source})"
    except Exception as exc:  # the fixtures will raise it properly, per test
        return f"rowver test server: unavailable ({source}): {exc}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The layers: a test none of whose fixtures reaches a server (every one that does goes
    through server_url) is a unit test, marked so; `-m unit` runs them alone, `-m "not unit"`
    the integration tests; tests/sql holds the SQL scenarios (test_sql_scenarios.py)."""
    for item in items:
        if "server_url" not in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.unit)


def pytest_report_header(config: pytest.Config) -> str:
    # CI runs the suite on two servers; say which one this log is about.
    return _server_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # pytest -q (as CI runs it) prints no header, so say it at the end instead.
    if terminalreporter.config.get_verbosity() < 0:
        terminalreporter.write_line(_server_line())


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the maintenance database of the test server."""
    return _maintenance_url()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """Name of a database with rowver installed, to clone; nobody may connect to it."""
    name = f"rowver_tpl_{os.getpid()}"
    ident = sql.Identifier(name)
    with _admin(server_url) as admin:
        # A crashed run whose pid we inherited may have left one behind.
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    with psycopg.connect(server_url_for(server_url, name), autocommit=True) as conn:
        _install.install(conn)
    with _admin(server_url) as admin:
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
        # template; refusing connections makes a stray one fail where it happens.
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
    yield name
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def _violations(url: str) -> list[tuple]:
    """rowver check's findings in a test database (DESIGN §7), none when all hold."""
    with psycopg.connect(url, autocommit=True) as c:
        if c.execute("select to_regprocedure('rowver.check(regclass)')").fetchone()[0] is None:
            return []
        return c.execute("select * from rowver.check()").fetchall()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh database cloned from the template, dropped after the test.

    Afterwards `rowver check` must find nothing, unless the test is marked
    `corrupts_history` (it damages history on purpose)."""
    name = f"rowver_t{os.getpid()}_{next(_db_names)}"
    with _admin(server_url) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    url = server_url_for(server_url, name)
    try:
        yield url
        if not request.node.get_closest_marker("corrupts_history"):
            assert _violations(url) == [], "rowver check found violations after the test"
    finally:
        with _admin(server_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def bare_url(server_url: str) -> Iterator[str]:
    """A database without rowver's catalog."""
    name = f"rowver_bare_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield server_url_for(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def needs_prepared(server_url: str) -> None:
    """Skip tests that use PREPARE TRANSACTION on a server where it is disabled."""
    with _admin(server_url) as admin:
        row = admin.execute("SHOW max_prepared_transactions").fetchone()
    if row is None or int(row[0]) == 0:
        pytest.skip(
            "max_prepared_transactions is 0 on the test server, so PREPARE TRANSACTION "
            "is unavailable; set it to 16 or more and restart the server"
        )
