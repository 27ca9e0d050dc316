"""Concurrency under load, on a real server with real processes.

Repeatable time travel: at least 8 writer processes (inserts, updates of hot and cold keys,
deletes and re-inserts, key changes, MERGE, multi-table transactions, some rolled back,
some prepared with two-phase commit, random pauses inside transactions) while reader
processes read head and then, in a separate statement, as-of snapshots. Afterwards every
as-of result recorded during the run is read again and must be identical, and the state
at every version equals a replay of the committed transactions' effects in version order
(each writer logs what its statements returned and the version it got before COMMIT).

No lost update: concurrent increments and write-layer upserts of the same rows; every
committed update appears in history exactly once, in version order; a writer that meets a newer
version renumbers above it instead of failing, in plain SQL and in the write layer alike.

The CI run is short (~10 s of load); ROWVER_STRESS_SECONDS runs it longer.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver import report, wait_for
from psycopg import IsolationLevel

import rowver

STRESS_SECONDS = float(os.environ.get("ROWVER_STRESS_SECONDS") or 10)
WRITERS = 8
HOT = range(1, 7)          # every writer fights over these
COLD = range(7, 401)       # rarely touched twice at once
CHURN = range(401, 601)    # deleted, re-inserted, keys changed into and out of
TABLES = {"acct": "id, n, note, rv_version", "ledger": "id, acct, amount, rv_version"}

# fork: children start at once and import nothing again; each opens its own connection
# and leaves the parent's alone (they exit with os._exit, running no finalizers).
_mp = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def digest(rows: list[tuple]) -> str:
    """The digest of an as-of result; the same text the server-side digest() SQL hashes."""
    text = ";".join("|".join("<null>" if v is None else str(v) for v in row) for row in rows)
    return hashlib.md5(text.encode()).hexdigest()


def digest_sql(table: str) -> str:
    """digest() computed by the server over table's as-of function at version v.v."""
    cols = ", ".join(f"coalesce({c}::text, '<null>')" for c in TABLES[table].split(", "))
    return (f"(select md5(coalesce(string_agg(concat_ws('|', {cols}), ';' order by id), ''))"
            f" from {table}__as_of(v.v))")


# -- the writers ---------------------------------------------------------------------------

class _Tx:
    """One writer transaction's statements, and their net effect as RETURNING reported it."""

    def __init__(self, conn: psycopg.Connection, rnd: random.Random, tag: str, ledger_ids: list[int]):
        self.conn, self.rnd, self.tag, self.ledger_ids = conn, rnd, tag, ledger_ids
        self.effects: dict[tuple[str, int], list | None] = {}
        self.step = 0

    def note(self, nullable: bool = False) -> str | None:
        """A note unique to this statement, so every write but the explicit no-op changes
        its row; NULL now and then where the statement changes the row anyway."""
        self.step += 1
        return None if nullable and self.rnd.random() < 0.1 else f"{self.tag}s{self.step}"

    def put(self, table: str, rows: list[tuple]) -> None:
        for row in rows:
            self.effects[(table, row[0])] = list(row)

    def run(self, sql: str, params: tuple) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def statement(self) -> None:
        rnd = self.rnd
        op = rnd.random()
        if op < 0.25:    # hot update
            k = rnd.choice(HOT)
            self.put("acct", self.run("update acct set n = n + 1, note = %s where id = %s returning id, n, note",
                                      (self.note(nullable=True), k)))
        elif op < 0.40:  # cold update, sometimes several rows in one statement
            keys = sorted(rnd.sample(COLD, rnd.randint(1, 3)))
            self.put("acct", self.run("update acct set n = n + 1, note = %s where id = any(%s)"
                                      " returning id, n, note", (self.note(nullable=True), keys)))
        elif op < 0.52:  # upsert (insert or update)
            k = rnd.choice(CHURN if rnd.random() < 0.7 else COLD)
            self.put("acct", self.run("insert into acct values (%s, %s, %s) on conflict (id) do update"
                                      " set n = excluded.n, note = excluded.note returning id, n, note",
                                      (k, rnd.randint(0, 999), self.note())))
        elif op < 0.62:  # delete
            k = rnd.choice(CHURN)
            for (key,) in self.run("delete from acct where id = %s returning id", (k,)):
                self.effects[("acct", key)] = None
        elif op < 0.70:  # re-insert (nothing when the key is there)
            k = rnd.choice(CHURN)
            self.put("acct", self.run("insert into acct values (%s, 0, %s) on conflict do nothing"
                                      " returning id, n, note", (k, self.note(nullable=True))))
        elif op < 0.74:  # key change: the old key ends with a tombstone
            old, new = rnd.sample(CHURN, 2)
            moved = self.run("update acct set id = %s, note = %s where id = %s and not exists"
                             " (select from acct where id = %s) returning id, n, note",
                             (new, self.note(), old, new))
            if moved:
                self.effects[("acct", old)] = None
                self.put("acct", moved)
        elif op < 0.78:  # MERGE (no RETURNING before PostgreSQL 17: read back this transaction's row)
            k = rnd.choice(CHURN)
            note = self.note()
            self.conn.execute("merge into acct t using (select %s::int as id) s on t.id = s.id"
                              " when matched then update set n = t.n + 10, note = %s"
                              " when not matched then insert (id, n, note) values (s.id, 10, %s)",
                              (k, note, note))
            self.put("acct", self.run("select id, n, note from acct where id = %s", (k,)))
        elif op < 0.82:  # a no-op: no version, no history
            self.run("update acct set n = n, note = note where id = %s returning id", (rnd.choice(HOT),))
        elif op < 0.94:  # multi-table: a transfer between two accounts, with a ledger row
            a, b = sorted(rnd.sample(COLD, 2))
            amount = rnd.randint(1, 50)
            self.put("acct", self.run("update acct set n = n + case when id = %s then %s else -%s end,"
                                      " note = %s where id in (%s, %s) returning id, n, note",
                                      (a, amount, amount, self.note(), a, b)))
            lid = self.ledger_ids[0] = self.ledger_ids[0] + 1
            self.put("ledger", self.run("insert into ledger values (%s, %s, %s) returning id, acct, amount",
                                        (lid, a, amount)))
        else:            # delete a ledger row this writer wrote earlier (perhaps rolled back)
            lid = rnd.randint(self.ledger_ids[1], max(self.ledger_ids))
            for (key,) in self.run("delete from ledger where id = %s returning id", (lid,)):
                self.effects[("ledger", key)] = None


def _writer(url: str, w: int, deadline: float, out: str, two_phase: bool) -> None:
    rnd = random.Random(1000 + w)
    stats: Counter = Counter()
    committed: list = []
    errors: list[str] = []
    ledger_ids = [w * 1_000_000, w * 1_000_000]  # [last used, first]
    conn = psycopg.connect(url, application_name=f"rv-stress-w{w}")
    conn.execute("set lock_timeout = '20s'")
    conn.commit()
    i = 0
    while time.time() < deadline:
        i += 1
        fate = rnd.random()
        mode = "rollback" if fate < 0.10 else "prepare" if two_phase and fate < 0.22 else "commit"
        tx = _Tx(conn, rnd, f"w{w}t{i}", ledger_ids)
        in_tpc = prepared = False
        try:
            if mode == "prepare":
                conn.tpc_begin(f"rvstress-{os.getpid()}-{i}")
                in_tpc = True
            for _ in range(rnd.randint(1, 4)):
                tx.statement()
                if rnd.random() < 0.6:  # pauses inside the transaction: versions interleave
                    time.sleep(rnd.uniform(0, 0.012) if rnd.random() < 0.9 else rnd.uniform(0.02, 0.06))
            version = conn.execute("select rowver.current_version()").fetchone()[0]
            if bool(tx.effects) != (version is not None) and mode != "rollback":
                errors.append(f"w{w}t{i}: version {version} for effects {tx.effects}")
            if mode == "rollback":
                (conn.tpc_rollback if in_tpc else conn.rollback)()
                stats["rolled back"] += 1
                continue
            if mode == "prepare":
                conn.tpc_prepare()
                prepared = True
                stats["prepared"] += 1
                time.sleep(rnd.uniform(0, 0.03))  # head must wait for it meanwhile
                if rnd.random() < 0.2:
                    conn.tpc_rollback()
                    stats["prepared, then rolled back"] += 1
                    stats["rolled back"] += 1
                    continue
                conn.tpc_commit()
            else:
                conn.commit()
            stats["committed"] += 1
            if version is None:
                stats["committed without changes"] += 1
            else:
                committed.append([version, [[t, k, row] for (t, k), row in tx.effects.items()]])
        except psycopg.Error as exc:
            if prepared:
                errors.append(f"w{w}t{i}: after PREPARE: {exc!r}")
                break
            (conn.tpc_rollback if in_tpc else conn.rollback)()
            if isinstance(exc, psycopg.errors.SerializationFailure):
                stats["40001"] += 1
            elif isinstance(exc, psycopg.errors.DeadlockDetected):
                stats["40P01"] += 1
            elif isinstance(exc, psycopg.errors.UniqueViolation):
                stats["23505"] += 1  # two writers inserting one key at once
            else:
                errors.append(f"w{w}t{i}: {exc.sqlstate} {exc!r}")
                break
    conn.close()
    Path(out).write_text(json.dumps({"stats": stats, "committed": committed, "errors": errors}))


# -- the readers ---------------------------------------------------------------------------

def _reader(url: str, r: int, deadline: float, out: str) -> None:
    """r == 0: live head, autocommit, a new statement for each read, and now and then
    rowver check; r == 1: head_mark in a REPEATABLE READ transaction (the published head is
    safe in any snapshot)."""
    reads: list = []
    lags: list = []
    errors: list[str] = []
    conn = psycopg.connect(url, application_name=f"rv-stress-r{r}", autocommit=(r == 0))
    if r == 1:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
    i = 0
    try:
        while time.time() < deadline:
            i += 1
            if r == 0:
                if i % 5 == 0:
                    conn.execute("select rowver.publish_head()")
                # the newest committed version, as of this statement's start, against head
                h, newest = conn.execute(
                    f"select rowver.{'head()' if i % 2 else 'resolve(%s)'},"
                    " (select max(version) from rowver.changeset)", () if i % 2 else ("head",)).fetchone()
                lags.append(max(0, newest - h))
            else:
                h = conn.execute("select head from rowver.head_mark").fetchone()[0]
            for table, cols in TABLES.items():
                if r == 0 and i % 3 == 0:  # the convenience for any ref
                    q = f"select {cols} from rowver.as_of(null::{table}, %s) order by id"
                    rows = conn.execute(q, (str(h),)).fetchall()
                else:
                    rows = conn.execute(f"select {cols} from {table}__as_of(%s) order by id", (h,)).fetchall()
                reads.append([h, table, digest(rows), len(rows)])
            if r == 0 and i % 25 == 0:
                # rowver check holds while writers run (each invariant reads one snapshot)
                errors += [f"r0: check while writing: {v}" for v in conn.execute("select * from rowver.check()")]
            if r == 1:
                conn.commit()
            time.sleep(0.002)
    except psycopg.Error as exc:
        errors.append(f"r{r}: {exc!r}")
    conn.close()
    Path(out).write_text(json.dumps({"reads": reads, "lags": lags, "errors": errors}))


# -- the test --------------------------------------------------------------------------------

@pytest.fixture
def two_phase(server_url: str) -> bool:
    """Whether PREPARE TRANSACTION is available (the stress run uses it where it is)."""
    with psycopg.connect(server_url, autocommit=True) as c:
        return int(c.execute("show max_prepared_transactions").fetchone()[0]) >= WRITERS


def _start(target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
    p = _mp.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def _rollback_leftover_prepared(conn: psycopg.Connection) -> None:
    for (gid,) in conn.execute("select gid from pg_prepared_xacts where database = current_database()"
                               " and gid like 'rvstress-%'").fetchall():
        conn.execute(f"rollback prepared '{gid}'")


def test_repeatable_time_travel_under_load(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                           two_phase: bool, request: pytest.FixtureRequest) -> None:
    conn.execute("create table acct (id int primary key, n int not null, note text)")
    conn.execute("create table ledger (id bigint primary key, acct int not null, amount int not null)")
    conn.execute("insert into acct select g, 0, 'seed' from generate_series(1, 400) g")
    conn.execute("select rowver.enable('acct'), rowver.enable('ledger')")
    base = conn.execute("select rowver.publish_head()").fetchone()[0]
    state: dict[str, dict[int, tuple[list, int]]] = {
        t: {row[0]: (list(row[:-1]), row[-1])
            for row in conn.execute(f"select {cols} from {t} order by id").fetchall()}
        for t, cols in TABLES.items()}

    deadline = time.time() + STRESS_SECONDS
    procs = [_start(_writer, db_url, w, deadline, str(tmp_path / f"w{w}.json"), two_phase)
             for w in range(WRITERS)]
    procs += [_start(_reader, db_url, r, deadline, str(tmp_path / f"r{r}.json")) for r in range(2)]
    try:
        for p in procs:
            p.join(STRESS_SECONDS + 90)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        _rollback_leftover_prepared(conn)

    writers = [json.loads((tmp_path / f"w{w}.json").read_text()) for w in range(WRITERS)]
    readers = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(2)]
    assert [e for x in writers + readers for e in x["errors"]] == []
    stats = sum((Counter(x["stats"]) for x in writers), Counter())
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select count(*) from rowver.in_flight()").fetchone()[0] == 0
    assert head == conn.execute("select last_value from rowver.version_seq").fetchone()[0]

    # every committed transaction that changed something has its changeset, and nothing else has
    log = sorted((v, effects) for x in writers for v, effects in x["committed"])
    versions = [v for v, _ in log]
    assert len(set(versions)) == len(versions), "two committed transactions got one version"
    assert versions == [v for (v,) in conn.execute(
        "select version from rowver.changeset where version > %s order by version", (base,)).fetchall()]

    # replay the committed effects in version order; the state at every version from base
    # to head must equal the table as of that version (rv_version included)
    expected: dict[str, list[str]] = {t: [] for t in TABLES}
    pending = iter(log)
    nxt = next(pending, None)
    for v in range(base, head + 1):
        changed = set(TABLES) if v == base else set()
        while nxt is not None and nxt[0] == v:
            for table, key, row in nxt[1]:
                changed.add(table)
                if row is None:
                    state[table].pop(key, None)
                else:
                    state[table][key] = (row, v)
            nxt = next(pending, None)
        for t in TABLES:
            expected[t].append(digest([(*row, rv) for _, (row, rv) in sorted(state[t].items())])
                               if t in changed else expected[t][-1])
    for t in TABLES:
        got = [d for _, d in conn.execute(f"select v.v, {digest_sql(t)}"
                                          " from generate_series(%s::bigint, %s::bigint) v(v)"
                                          " order by v.v", (base, head)).fetchall()]
        assert len(got) == len(expected[t]) == head - base + 1
        wrong = [base + i for i, (a, b) in enumerate(zip(got, expected[t], strict=False)) if a != b]
        assert not wrong, f"{t} as of these versions differs from the replay: {wrong[:10]}"

    # every as-of result recorded during the run reads the same now (and equals the replay)
    reads = [r for x in readers for r in x["reads"]]
    assert len(reads) > 20
    seen: dict[tuple[int, str], set[str]] = {}
    for h, table, d, _n in reads:
        seen.setdefault((h, table), set()).add(d)
    for (h, table), digests in sorted(seen.items()):
        again = conn.execute(f"select {TABLES[table]} from {table}__as_of(%s) order by id", (h,)).fetchall()
        assert digests == {digest(again)} == {expected[table][h - base]}, f"{table} as of {h} changed"

    lags = [lag for x in readers for lag in x["lags"]]
    attempted = stats["committed"] + stats["rolled back"] + stats["40001"] + stats["40P01"] + stats["23505"]
    via_2pc = stats["prepared"] - stats["prepared, then rolled back"]
    report(request.config,
           f"stress ({STRESS_SECONDS:.0f}s, {WRITERS} writer + 2 reader processes, 2PC {'on' if two_phase else 'off'}):"
           f" {stats['committed']} committed ({len(log)} changesets, {via_2pc}"
           f" via 2PC), {stats['rolled back']} rolled back on purpose ({stats['prepared, then rolled back']} after"
           f" PREPARE), 40001 {stats['40001']}/{attempted} = {stats['40001'] / max(attempted, 1):.1%},"
           f" 40P01 {stats['40P01']}, 23505 {stats['23505']}; versions {base}..{head} replayed;"
           f" {len(reads)} as-of reads re-verified; head lag behind newest committed: mean"
           f" {sum(lags) / max(len(lags), 1):.2f}, max {max(lags, default=0)} versions over {len(lags)} samples")
    assert stats["committed"] > 50 and stats["rolled back"] > 0
    if two_phase:
        assert stats["prepared"] > 0


# -- no lost update -----------------------------------------------------------------------------

def _incrementer(url: str, w: int, deadline: float, out: str) -> None:
    """Increment shared counters in plain SQL, READ COMMITTED, never retrying: allocate early
    (a write to `side`) and pause, so that a newer version often commits first."""
    rnd = random.Random(w)
    log, i = [], 0
    with psycopg.connect(url) as conn:
        while time.time() < deadline:
            i += 1
            k = rnd.choice((1, 2))
            conn.execute("insert into side values (%s)", (w * 1_000_000 + i,))  # allocates
            time.sleep(rnd.uniform(0, 0.004))
            (n,) = conn.execute("update counter set n = n + 1 where id = %s returning n", (k,)).fetchone()
            v = conn.execute("select rowver.current_version()").fetchone()[0]
            conn.commit()
            log.append([k, n, v])
    Path(out).write_text(json.dumps({"log": log}))


def test_no_lost_increment(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:
    conn.execute("create table counter (id int primary key, n bigint not null)")
    conn.execute("create table side (id bigint primary key)")
    conn.execute("insert into counter values (1, 0), (2, 0)")
    conn.execute("select rowver.enable('counter'), rowver.enable('side')")
    seq0 = conn.execute("select last_value from rowver.version_seq").fetchone()[0]
    deadline = time.time() + 3
    procs = [_start(_incrementer, db_url, w, deadline, str(tmp_path / f"i{w}.json")) for w in range(6)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)  # (a 40001 would have ended one)
    results = [json.loads((tmp_path / f"i{w}.json").read_text()) for w in range(len(procs))]
    conn.execute("select rowver.publish_head()")
    for k in (1, 2):
        committed = sorted((v, n) for r in results for kk, n, v in r["log"] if kk == k)
        history = conn.execute("select rv_version, n from counter__versions where id = %s and not rv_deleted"
                               " order by rv_version", (k,)).fetchall()
        # every committed increment exactly once, in version order: 0, 1, 2, ... N
        assert [n for _, n in history] == list(range(len(committed) + 1))
        assert history[1:] == committed
    done = sum(len(r["log"]) for r in results)
    renumbered = conn.execute("select last_value from rowver.version_seq").fetchone()[0] - seq0 - done
    report(request.config, f"no lost increment: 6 processes, {done} increments committed, each once and in"
                           f" order, none retried; {renumbered} versions given up by writers that renumbered")
    assert renumbered > 0, "no writer met a newer version: the test did not provoke a conflict"


def _upserter(url: str, w: int, count: int, out: str) -> None:
    """Write-layer changesets: allocate early (upsert into `side`), pause, then upsert the hot
    rows with values unique to this changeset. (A deadlock between two of them, as on plain
    tables, is replayed.)"""
    rnd = random.Random(w)
    log = []
    with rowver.connect(url) as db:
        for i in range(count):
            value = f"w{w}-{i}"
            keys = sorted(rnd.sample(range(1, 5), rnd.randint(1, 2)))
            with db.changeset(message=value, retries=200) as cs:
                cs.upsert("side", [{"id": w * 1_000_000 + i}])
                time.sleep(rnd.uniform(0, 0.004))
                cs.upsert("hot", [{"id": k, "val": value} for k in keys])
            log.append([cs.version, value, keys])
    Path(out).write_text(json.dumps(log))


def test_no_lost_update_through_the_write_layer(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    conn.execute("create table hot (id int primary key, val text not null)")
    conn.execute("create table side (id bigint primary key)")
    conn.execute("insert into hot select g, 'init' from generate_series(1, 4) g")
    conn.execute("select rowver.enable('hot'), rowver.enable('side')")
    seq0 = conn.execute("select last_value from rowver.version_seq").fetchone()[0]
    procs = [_start(_upserter, db_url, w, 25, str(tmp_path / f"u{w}.json")) for w in range(6)]
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    log = sorted(tuple(x[:2]) + (tuple(x[2]),) for w in range(len(procs))
                 for x in json.loads((tmp_path / f"u{w}.json").read_text()))
    assert len(log) == 6 * 25 and len({v for v, _, _ in log}) == len(log)
    for k in range(1, 5):
        history = conn.execute("select rv_version, val from hot__versions where id = %s and not rv_deleted"
                               " order by rv_version", (k,)).fetchall()
        assert history[0][1] == "init"
        assert history[1:] == [(v, value) for v, value, keys in log if k in keys]
    # each changeset carries its own message: renumbering kept the metadata with the rows
    assert conn.execute("select version, message from rowver.changeset where version > %s order by version",
                        (seq0,)).fetchall() == [(v, value) for v, value, _ in log]
    assert conn.execute("select count(*) from side").fetchone()[0] == 6 * 25
    renumbered = conn.execute("select last_value from rowver.version_seq").fetchone()[0] - seq0 - len(log)
    report(request.config, f"no lost update (write layer): 6 processes x 25 changesets on 4 hot rows, each"
                           f" once and in order; {renumbered} versions given up by renumbering or a replay")
    assert renumbered > 0, "no changeset met a newer version: the test did not provoke a conflict"


def test_write_layer_reports_40001_when_out_of_retries(conn: psycopg.Connection, db_url: str) -> None:
    """Under REPEATABLE READ, PostgreSQL's own serialization failure (a row changed after the
    snapshot) is replayed by the write layer, and reported once it runs out of retries."""
    conn.execute("create table hot (id int primary key, val text not null)")
    conn.execute("create table side (id int primary key)")
    conn.execute("insert into hot values (1, 'init')")
    conn.execute("select rowver.enable('hot'), rowver.enable('side')")
    with rowver.connect(db_url) as db:
        db.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(rowver.ConflictError) as caught:
            with db.changeset(retries=0) as cs:
                cs.upsert("side", [{"id": 1}])  # this changeset's snapshot is taken
                with psycopg.connect(db_url) as newer:
                    newer.execute("update hot set val = 'newer' where id = 1")
                cs.upsert("hot", [{"id": 1, "val": "older"}])
        assert caught.value.sqlstate == "40001"
        assert db.head() > 0  # the handle is usable afterwards
    assert conn.execute("select val from hot").fetchall() == [("newer",)]
    assert conn.execute("select count(*) from side").fetchone()[0] == 0


def test_upsert_racing_an_insert_of_the_same_key(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table acct (id int primary key, n int not null)")
    conn.execute("select rowver.enable('acct')")
    other = psycopg.connect(db_url)
    other.execute("insert into acct values (1, 1)")  # not committed yet: the upsert's diff misses it
    outcome: dict[str, Any] = {}

    def upsert() -> None:
        try:
            with rowver.connect(db_url) as db, db.changeset(message="upsert") as cs:
                outcome["result"] = cs.upsert("acct", [{"id": 1, "n": 2}])
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=upsert)
    thread.start()
    try:
        wait_for(lambda: conn.execute("select count(*) from pg_stat_activity where datname = current_database()"
                                      " and wait_event_type = 'Lock'").fetchone()[0], timeout=30,
                 what="the upsert to wait for the uncommitted insert of its key")
        other.commit()
    finally:
        other.close()
        thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    assert conn.execute("select n from acct where id = 1").fetchone()[0] == 2
    assert conn.execute("select n from acct__versions where id = 1 order by rv_version").fetchall() == [(1,), (2,)]
