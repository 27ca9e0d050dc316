"""Crash safety: a client killed with SIGKILL in the middle of a large `cs.sync`, and a server
stopped in immediate mode (a crash, as far as the data is concerned) in the middle of
transactions, leave no partial changeset behind; `rowver.check()` stays clean; head keeps
waiting for a prepared transaction across the restart; and rerunning the load gives the
right result.

The server crash uses a throwaway server (tests/pgserver.py); the shared test servers are
never stopped.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from pgserver import report, server_major, throwaway, wait_for

import rowver
import rowver._install

ROWS = 200_000  # the client crash
SERVER_ROWS = 100_000  # the server crash


def load(rows: int) -> list[dict]:
    """A full snapshot of `rows` rows for a table of `rows` rows: the first tenth disappear
    (tombstones), the next three tenths change, the rest stay, and a tenth more are new."""
    return [{"id": i, "val": f"changed {i}" if i <= rows * 4 // 10 else f"v{i}", "n": 1 if i <= rows * 4 // 10 else 0}
            for i in range(rows // 10 + 1, rows + rows // 10 + 1)]


def expected_counts(rows: int) -> tuple[int, int, int, int]:
    """inserted, updated, deleted, unchanged"""
    return rows // 10, rows * 3 // 10, rows // 10, rows * 6 // 10


# the client: a process of its own, so it can be killed (load() is sent along as source)
SYNC_CHILD = "import sys, rowver\n" + inspect.getsource(load) + """
with rowver.connect(sys.argv[1]) as db:
    with db.changeset(message="the big load") as cs:
        print(cs.sync("big", load(int(sys.argv[2]))), flush=True)
"""


def make_big(conn: psycopg.Connection, rows: int) -> None:
    conn.execute("create table big (id int primary key, val text not null, n int not null)")
    conn.execute("insert into big select g, 'v' || g, 0 from generate_series(1, %s) g", (rows,))
    conn.execute("select rowver.enable('big')")
    conn.execute("select rowver.publish_head()")


def state(conn: psycopg.Connection) -> dict:
    """Everything a partial changeset could show up in."""
    def one(q: str) -> object:
        return conn.execute(q).fetchone()[0]
    return {
        "big": one("select md5(string_agg(concat_ws('|', id, val, n, rv_version), ';' order by id)) from big"),
        "history": one("select md5(coalesce(string_agg(concat_ws('|', id, val, n, rv_version, rv_until, rv_deleted),"
                       " ';' order by id, rv_version), '')) from big__history"),
        "changesets": conn.execute("select version, message from rowver.changeset order by version").fetchall(),
        "changeset_tables": conn.execute("select * from rowver.changeset_table order by 1, 2").fetchall(),
        "head_mark": one("select head from rowver.head_mark"),
    }


def target_digest(rows: int) -> str:
    """What big holds after the load (rv_version left out), as the server digests it."""
    text = ";".join(f"{r['id']}|{r['val']}|{r['n']}" for r in load(rows))
    return hashlib.md5(text.encode()).hexdigest()


def start_sync(url: str, rows: int, app: str, options: str = "") -> subprocess.Popen:
    env = {**os.environ, "PGAPPNAME": app, "PGOPTIONS": options}
    return subprocess.Popen([sys.executable, "-c", SYNC_CHILD, url, str(rows)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_active(conn: psycopg.Connection, app: str, pattern: str, child: subprocess.Popen) -> int:
    """The pid of the child's backend once it runs a statement matching pattern."""
    def active() -> int | None:
        assert child.poll() is None, f"the load ended before it was interrupted: {child.communicate()}"
        row = conn.execute("select pid from pg_stat_activity where application_name = %s and state = 'active'"
                           " and query ilike %s", (app, pattern)).fetchone()
        return row[0] if row else None
    return wait_for(active, timeout=60, interval=0.02, what=f"{app} to run {pattern}")


def wait_until_writing(conn: psycopg.Connection, app: str, child: subprocess.Popen) -> int:
    """The pid of the child's backend once rowver.load has diffed and started writing: its
    version is allocated (held, as rowver.in_flight() shows)."""
    pid = wait_until_active(conn, app, "%rowver.load%", child)

    def writing() -> bool:
        assert child.poll() is None, f"the load ended before it was interrupted: {child.communicate()}"
        return bool(conn.execute("select count(*) from rowver.in_flight() where pid = %s", (pid,)).fetchone()[0])
    wait_for(writing, timeout=60, interval=0.02, what=f"{app} to write")
    return pid


def check_clean(conn: psycopg.Connection) -> None:
    assert conn.execute("select * from rowver.check()").fetchall() == []


def rerun(url: str, conn: psycopg.Connection, before: dict, rows: int) -> None:
    """Run the load again, to completion: the right rows, in one new changeset."""
    with rowver.connect(url) as db, db.changeset(message="the big load") as cs:
        result = cs.sync("big", load(rows))
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == expected_counts(rows)
    assert conn.execute("select md5(string_agg(concat_ws('|', id, val, n), ';' order by id)) from big"
                        ).fetchone()[0] == target_digest(rows)
    after = conn.execute("select version, message from rowver.changeset order by version").fetchall()
    assert after == before["changesets"] + [(result.version, "the big load")]
    # the state before the load is still what it was, as of the version before
    assert conn.execute(
        "select md5(string_agg(concat_ws('|', id, val, n, rv_version), ';' order by id)) from big__as_of(%s)",
        (before["head_mark"],)).fetchone()[0] == before["big"]
    check_clean(conn)


@pytest.fixture
def big(conn: psycopg.Connection) -> psycopg.Connection:
    make_big(conn, ROWS)
    return conn


def test_client_killed_during_a_large_sync(big: psycopg.Connection, db_url: str,
                                           request: pytest.FixtureRequest) -> None:
    before = state(big)
    seq_before = big.execute("select last_value from rowver.version_seq").fetchone()[0]
    kills = []
    # first while it stages (COPY), then while it applies (its version allocated, rows being
    # written); the server notices the dead client mid-statement (client_connection_check_interval)
    # rather than at its end
    for phase, options in (("staging", ""), ("applying", "-c client_connection_check_interval=100")):
        app = f"rv-crash-{phase}"
        child = start_sync(db_url, ROWS, app, options)
        try:
            if phase == "staging":
                pid = wait_until_active(big, app, "copy %", child)
            else:
                pid = wait_until_writing(big, app, child)
                time.sleep(0.2)  # well inside the writes
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == -signal.SIGKILL
        wait_for(lambda pid=pid: big.execute("select count(*) = 0 from pg_stat_activity where pid = %s",
                                             (pid,)).fetchone()[0],
                 timeout=60, what="the killed client's backend to end")
        kills.append(phase)
        assert state(big) == before, f"a client killed while {phase} left changes behind"
        check_clean(big)
    # the killed loads' versions (one at least) were never committed, and hold nothing back
    seq = big.execute("select last_value from rowver.version_seq").fetchone()[0]
    assert seq > seq_before
    assert big.execute("select rowver.head()").fetchone()[0] == seq
    assert big.execute("select count(*) from rowver.in_flight()").fetchone()[0] == 0
    rerun(db_url, big, before, ROWS)
    report(request.config, f"crash (client): kill -9 of a {ROWS // 1000}k-row sync while "
                           f"{' and while '.join(kills)}: no partial changeset, check clean, rerun right")


@pytest.fixture
def crash_server(server_url: str) -> Iterator:
    with throwaway(major=server_major(server_url)) as server:
        with server.connect() as c:
            c.execute("create database crashme")
        with server.connect("crashme") as c:
            rowver._install.install(c)
        yield server


def test_immediate_server_stop_mid_transaction(crash_server, request: pytest.FixtureRequest) -> None:
    server = crash_server
    url = server.url("crashme")
    with server.connect("crashme") as conn:
        make_big(conn, SERVER_ROWS)
        conn.execute("create table acct (id int primary key, n int not null)")
        conn.execute("insert into acct select g, 0 from generate_series(1, 10) g")
        conn.execute("select rowver.enable('acct')")
        conn.execute("select rowver.publish_head()")
        # a prepared transaction, a newer committed one, and one left open
        prepared = psycopg.connect(url)
        prepared.execute("update acct set n = 1 where id = 1")
        v_prepared = prepared.execute("select rowver.current_version()").fetchone()[0]
        prepared.execute("prepare transaction 'rvcrash-prepared'")
        prepared.close()
        with psycopg.connect(url) as newer:
            newer.execute("update acct set n = 2 where id = 2")
            v_newer = newer.execute("select rowver.current_version()").fetchone()[0]
        assert conn.execute("select rowver.publish_head()").fetchone()[0] == v_prepared - 1
        open_tx = psycopg.connect(url)
        open_tx.execute("update acct set n = 3 where id in (3, 4)")
        open_tx.execute("insert into acct values (11, 3)")
        before = state(conn)
        acct_before = conn.execute("select * from acct order by id").fetchall()

        child = start_sync(url, SERVER_ROWS, "rv-crash-server")
        try:
            wait_until_writing(conn, "rv-crash-server", child)
            time.sleep(0.2)
            server.stop("immediate")
            child.wait(60)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode != 0, "the load survived the server crash?"
    open_tx.close()

    server.start()
    with server.connect("crashme") as conn:
        # nothing of the open transaction or of the load; the prepared one survives, and head
        # still waits for it (its version lock was restored with it)
        assert state(conn) == before
        assert conn.execute("select * from acct order by id").fetchall() == acct_before
        assert conn.execute("select gid from pg_prepared_xacts").fetchall() == [("rvcrash-prepared",)]
        assert conn.execute("select rowver.head()").fetchone()[0] == v_prepared - 1
        with pytest.raises(psycopg.DatabaseError, match="above head") as refused:
            conn.execute("select rowver.resolve(%s)", (str(v_newer),))
        assert refused.value.sqlstate == "RV004"  # rowver's own code (rowver/errors.py)
        check_clean(conn)

        conn.execute("commit prepared 'rvcrash-prepared'")
        head = conn.execute("select rowver.publish_head()").fetchone()[0]
        assert head >= v_newer
        assert conn.execute("select n from acct__as_of(%s) where id = 1", (v_prepared - 1,)).fetchone()[0] == 0
        assert conn.execute("select n from acct__as_of(%s) where id = 1", (v_prepared,)).fetchone()[0] == 1
        assert conn.execute("select * from acct__as_of(%s) order by id", (v_newer,)).fetchall() == \
            [(1, 1, v_prepared)] + acct_before[1:]
        assert conn.execute("select count(*) from acct where n = 3").fetchone()[0] == 0
        check_clean(conn)
        rerun(url, conn, {**before, "changesets": conn.execute(
            "select version, message from rowver.changeset order by version").fetchall()}, SERVER_ROWS)
        # and capture works as before for plain SQL writers
        conn.execute("update acct set n = 3 where id in (3, 4)")
        v = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
        conn.execute("select rowver.publish_head()")
        assert conn.execute("select id from acct__as_of(%s) where n = 3 order by id", (v,)).fetchall() == [(3,), (4,)]
        check_clean(conn)
    report(request.config, f"crash (server, PostgreSQL {server.bins.major}): pg_ctl -m immediate during a "
                           f"{SERVER_ROWS // 1000}k-row sync, with an open and a prepared transaction: "
                           "nothing partial, "
                           "the prepared one still holds head, check clean, rerun right")
