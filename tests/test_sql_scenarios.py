"""SQL scenarios: what a user relies on, run through psql as an unprivileged role and compared
with the expected output, the way pg_regress runs an extension's tests (issue 18).

Each scenario tests/sql/NAME.sql gets a database of its own with rowver installed (a clone of
the test template). As the superuser, tests/sql/_setup.sql makes the table owner's part (table
app.items, its grants, enabled), then NAME.setup.sql if there is one. Then `psql -X -a -v
ON_ERROR_STOP=0` runs NAME.sql as a new login role that may CONNECT and read and write app's
tables and nothing more, and its output must equal NAME.out. Errors print verbose (the SQLSTATE
on each) without CONTEXT; the runner drops the LOCATION lines (C source positions, which differ
between PostgreSQL majors) and writes the role's name as rv_app. Scenarios print versions
relative to one captured at their start, and no times, so the output is the same on every server.

    ROWVER_SQL_ACCEPT=1 pytest tests/test_sql_scenarios.py   # rewrite the .out files; read the diff
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rowver import _server

HERE = Path(__file__).resolve().parent / "sql"
SCENARIOS = sorted(p.stem for p in HERE.glob("*.sql") if not p.name.startswith("_") and ".setup." not in p.name)
ROLE = "rv_app"  # what the output calls the scenario's role


def psql() -> str:
    found = _server.tool("psql")
    if found is None:
        pytest.skip("psql is not installed (neither on PATH nor in the embedded server's wheel)")
    return str(found)


def run_psql(conninfo: str, script: str, *, as_setup: bool, app: str) -> str:
    """psql running ``script`` (a file in tests/sql), its output and errors interleaved."""
    stop = ["-q", "-v", "ON_ERROR_STOP=1"] if as_setup else ["-a", "-v", "ON_ERROR_STOP=0"]
    args = [psql(), "-X", *stop, "-v", "VERBOSITY=verbose", "-v", "SHOW_CONTEXT=never", "-v", f"app={app}",
            "-v", f"db={conninfo_to_dict(conninfo)['dbname']}", "-f", script, conninfo]
    env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC", "PGCLIENTENCODING": "UTF8", "PSQLRC": os.devnull}
    done = subprocess.run(args, cwd=HERE, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    if as_setup and done.returncode != 0:
        pytest.fail(f"{script} failed:\n{done.stdout}")
    return done.stdout


def normalized(output: str, app: str) -> str:
    lines = [line for line in output.splitlines() if not line.startswith("LOCATION:  ")]
    return re.sub(rf"\b{re.escape(app)}\b", ROLE, "\n".join(lines)) + "\n"


@pytest.fixture
def app_role(conn: psycopg.Connection) -> Iterator[str]:
    """A login role made for one scenario (roles are per server: the name is unique)."""
    name = f"{ROLE}_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        conn.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, db_url: str, app_role: str) -> None:
    superuser = make_conninfo(db_url)
    run_psql(superuser, "_setup.sql", as_setup=True, app=app_role)
    if (HERE / f"{scenario}.setup.sql").exists():
        run_psql(superuser, f"{scenario}.setup.sql", as_setup=True, app=app_role)
    got = normalized(run_psql(make_conninfo(db_url, user=app_role), f"{scenario}.sql", as_setup=False,
                              app=app_role), app_role)
    expected_file = HERE / f"{scenario}.out"
    if os.environ.get("ROWVER_SQL_ACCEPT") == "1":
        expected_file.write_text(got)
        return
    expected = expected_file.read_text() if expected_file.exists() else ""
    if got != expected:
        diff = difflib.unified_diff(expected.splitlines(), got.splitlines(), f"{scenario}.out", "this run",
                                    lineterm="")
        pytest.fail(f"{scenario}.sql: output differs from {scenario}.out "
                    "(ROWVER_SQL_ACCEPT=1 rewrites it):\n" + "\n".join(diff))


def test_every_scenario_has_its_expected_output() -> None:
    """A scenario without a .out file would only ever be accepted, never checked."""
    assert SCENARIOS, "no scenarios in tests/sql"
    missing = [s for s in SCENARIOS if not (HERE / f"{s}.out").exists()]
    assert not missing, f"scenarios without expected output: {missing}"
