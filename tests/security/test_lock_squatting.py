"""No lock another role can hold (DESIGN §3): a role with nothing but CONNECT and DML on a
versioned table takes every lock it can discover or compute, and keeps them, while writers
run. Writers, head() and `rowver status` carry on, and status names the one thing such a role
may legitimately do to head: write and sit idle in its transaction."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from logins import Logins, violations
from psycopg import sql

import rowver

LOCK_MODES = ("access exclusive", "exclusive", "share row exclusive", "share", "share update exclusive",
              "row exclusive", "row share", "access share")
ROW_LOCKS = ("update", "no key update", "share", "key share")
TIMEOUT = "-c statement_timeout=5s"  # a writer kept waiting longer than this fails the test


def _try(conn: psycopg.Connection, statement: sql.Composable | str, params: tuple = ()) -> bool:
    """Run a statement in a savepoint of the open transaction; whether it worked."""
    try:
        with conn.transaction():
            conn.execute(statement, params)
        return True
    except psycopg.Error:
        return False


def _advisory_keys(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """Every advisory lock rowver used or uses: the model store's, and the version locks and
    allocation mutex of rowver 0.1 for the versions around head."""
    head = conn.execute("select rowver.head()").fetchone()[0]
    keys = [conn.execute("select key1, key2 from rowver.model_gc_lock()").fetchone()]
    tag = 0x5256 << 16
    for v in range(max(0, head - 10), head + 400):
        keys.append((tag | (v >> 32), (v & 0xFFFFFFFF) - (1 << 32 if v & 0x80000000 else 0)))
    mutex = 281474976710655
    keys.append((tag | (mutex >> 32), -1))
    return keys


def _squat(conn: psycopg.Connection, history: str) -> list[str]:
    """Hold, in one open transaction and as session locks, everything this role can get.
    Returns what it got (beyond what no one else needs)."""
    got = []
    for k1, k2 in _advisory_keys(conn):
        conn.execute("select pg_advisory_lock(%s, %s)", (k1, k2))
        conn.execute("select pg_advisory_lock(%s::bigint << 32 | (%s::bigint & 4294967295))", (k1, k2))
    conn.execute("begin")
    tables = [r[0] for r in conn.execute(
        "select c.oid::regclass::text from pg_class c where c.relnamespace = 'rowver'::regnamespace"
        " and c.relkind in ('r', 'p') order by 1").fetchall()] + [history]
    for table in tables:
        for mode in LOCK_MODES:
            if _try(conn, sql.SQL("lock table {} in {} mode").format(sql.SQL(table), sql.SQL(mode))):
                got.append(f"{table}: {mode}")
                break
        for strength in ROW_LOCKS:
            if _try(conn, sql.SQL("select from {} for {}").format(sql.SQL(table), sql.SQL(strength))):
                got.append(f"{table}: rows for {strength}")
                break
        # a key another writer will want: a changeset row for the next versions
    for v in range(1, 5):
        if _try(conn, "insert into rowver.changeset (version, xid) values (rowver.head() + %s, pg_current_xact_id())",
                (v,)):
            got.append(f"changeset row above head + {v}")
    return got


def _grab_what_others_hold(conn: psycopg.Connection, stop: threading.Event) -> None:
    """While writers run, take every advisory lock anyone else is seen holding."""
    while not stop.is_set():
        for classid, objid, subid in conn.execute(
                "select classid::bigint, objid::bigint, objsubid from pg_locks"
                " where locktype = 'advisory' and pid <> pg_backend_pid()").fetchall():
            if subid == 2:
                conn.execute("select pg_try_advisory_lock(%s::int, %s::int)",
                             (classid - (1 << 32 if classid >= 1 << 31 else 0), objid - (1 << 32 if objid >= 1 << 31 else 0)))
            else:
                conn.execute("select pg_try_advisory_lock(%s::bigint << 32 | %s::bigint)", (classid, objid))
        time.sleep(0.01)


def _writer(url: str, role: str, worker: int, errors: list) -> None:
    try:
        with psycopg.connect(url, user=role, options=TIMEOUT) as conn:
            for i in range(25):
                conn.execute("update acct set n = n + 1 where id = %s", (worker,))
                conn.execute("update acct set n = n + 1 where id = %s", (10 + i % 3,))  # hot rows
                conn.commit()
        db = rowver.connect(psycopg.conninfo.make_conninfo(url, user=role, options=TIMEOUT))
        for i in range(5):
            with db.changeset(message=f"squatted {worker}.{i}", retries=0) as cs:
                cs.upsert("acct", [{"id": 20 + worker, "n": i}])
        db.close()
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))


def test_a_dml_role_cannot_hold_writers_head_or_status(logins: Logins, db_url: str, tmp_path: Path) -> None:
    su = logins.su
    su.execute("create table acct (id int primary key, n int not null)")
    su.execute("insert into acct select g, 0 from generate_series(1, 12) g")
    app, squatter = logins.role("app"), logins.role("squatter")
    for role in (app, squatter):
        su.execute(sql.SQL("grant select, insert, update, delete on acct to {}").format(sql.Identifier(role)))
    su.execute("select rowver.enable('acct')")
    history = su.execute("select rowver.versions_sql('acct'::regclass)").fetchone()[0]

    squat = logins.login(squatter)
    got = _squat(squat, history)
    idle = psycopg.connect(db_url, user=squatter)  # writes, and sits idle in its transaction
    logins.conns.append(idle)
    idle.execute("insert into acct values (100, 0)")
    idle_pid = idle.info.backend_pid
    held = idle.execute("select rowver.current_version()").fetchone()[0]
    # renumbering as often as it likes takes no more slots than its first version's
    idle.execute("select rowver.renumber() from generate_series(1, 5000)")
    grabber = logins.login(squatter)
    stop = threading.Event()
    grabbing = threading.Thread(target=_grab_what_others_hold, args=(grabber, stop))
    grabbing.start()

    errors: list = []
    writers = [threading.Thread(target=_writer, args=(db_url, app, w, errors)) for w in range(1, 5)]
    started = time.monotonic()
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    stop.set()
    grabbing.join(10)
    assert errors == [], f"writers failed while a squatter held {got}: {errors}"
    assert time.monotonic() - started < 60
    reader = logins.login(app)
    reader.execute("set statement_timeout = '5s'")
    assert reader.execute("select rowver.head()").fetchone()[0] == held - 1
    assert reader.execute("select n from acct where id = 10").fetchone()[0] == 4 * 9  # i % 3 == 0 nine times

    env = {"ROWVER_URL": db_url, "COLUMNS": "200", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([str(Path(sys.executable).parent / "rowver"), "status"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"version {held}, pid {idle_pid}" in done.stdout

    squat.execute("rollback")
    idle.rollback()
    assert reader.execute("select rowver.head()").fetchone()[0] > held
    assert violations(su) == []
