"""A streaming standby (DESIGN §8): advisory locks are not WAL-logged, so a standby knows
only the published head. `rowver.head()` there returns head_mark, and as-of reads through
it are repeatable and equal the primary's, while writers (two-phase commit included) run on
the primary and publish head.

Uses a throwaway primary (tests/pgserver.py) and a standby taken from it with
pg_basebackup over loopback.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgserver import PgServer, report, server_major, throwaway, wait_for

import rowver
import rowver._install

_mp = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
SECONDS = 5.0


def digest(rows: list[tuple]) -> str:
    return hashlib.md5(repr(rows).encode()).hexdigest()


def as_of(conn: psycopg.Connection, v: int) -> list[tuple]:
    return conn.execute("select id, n, note, rv_version from acct__as_of(%s) order by id", (v,)).fetchall()


def all_versions(conn: psycopg.Connection, head: int) -> list[tuple[int, str]]:
    """A digest of acct as of every version 0..head, computed by the server."""
    return conn.execute(
        "select v.v, (select md5(coalesce(string_agg(x::text, ';' order by x.id), '')) from acct__as_of(v.v) x)"
        " from generate_series(0::bigint, %s::bigint) v(v) order by v.v", (head,)).fetchall()


def _writer(url: str, w: int, deadline: float) -> None:
    rnd = random.Random(w)
    with psycopg.connect(url) as conn:
        i = 0
        while time.time() < deadline:
            i += 1
            prepared = w == 0 and i % 4 == 0
            try:
                if prepared:
                    conn.tpc_begin(f"rvreplica-{w}-{i}")
                for _ in range(rnd.randint(1, 3)):
                    k = rnd.randint(1, 149)  # the write-layer writer has 150..199
                    if rnd.random() < 0.75:
                        conn.execute("insert into acct values (%s, 0, %s) on conflict (id) do update"
                                     " set n = acct.n + 1, note = excluded.note", (k, f"w{w}-{i}"))
                    else:
                        conn.execute("delete from acct where id = %s", (k,))
                    time.sleep(rnd.uniform(0, 0.01))
                if prepared:
                    conn.tpc_prepare()
                    time.sleep(0.02)
                    conn.tpc_commit()
                else:
                    conn.commit()
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                (conn.tpc_rollback if prepared else conn.rollback)()
            conn.execute("select rowver.publish_head()")
            conn.commit()


def _layer_writer(url: str, deadline: float) -> None:
    """Write-layer changesets publish head themselves after each commit."""
    rnd = random.Random(99)
    with rowver.connect(url) as db:
        i = 0
        while time.time() < deadline:
            i += 1
            with db.changeset(message=f"layer {i}") as cs:
                cs.upsert("acct", [{"id": k, "n": i, "note": f"layer-{i}"}
                                   for k in sorted(rnd.sample(range(150, 200), 3))])
            time.sleep(0.01)


def _standby_reader(url: str, deadline: float, out: str) -> None:
    reads, conflicts, errors = [], 0, []
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            try:
                h, mark = conn.execute("select rowver.head(), (select head from rowver.head_mark)").fetchone()
                if h < mark:  # head() reads head_mark after this statement's snapshot: never older
                    errors.append(f"head() {h} < head_mark {mark}")
                reads.append([h, digest(as_of(conn, h))])
                if rowver_resolve(conn, "head") < h:
                    errors.append("resolve('head') went back")
            except psycopg.errors.SerializationFailure:  # a query cancelled by recovery: retry
                conflicts += 1
            time.sleep(0.005)
    Path(out).write_text(json.dumps({"reads": reads, "conflicts": conflicts, "errors": errors}))


def rowver_resolve(conn: psycopg.Connection, ref: str) -> int:
    return conn.execute("select rowver.resolve(%s)", (ref,)).fetchone()[0]


@pytest.fixture
def replicated(server_url: str) -> Iterator[tuple[PgServer, PgServer]]:
    with throwaway({"wal_level": "replica", "max_wal_senders": 4}, major=server_major(server_url)) as primary:
        with primary.connect() as c:
            rowver._install.install(c)
            c.execute("create table acct (id int primary key, n int not null, note text)")
            c.execute("insert into acct select g, 0, 'seed' from generate_series(1, 100) g")
            c.execute("select rowver.enable('acct')")
            c.execute("select rowver.publish_head()")
        standby = primary.standby()
        standby.start()
        with standby.connect() as s:
            assert s.execute("select pg_is_in_recovery()").fetchone()[0]
        yield primary, standby


def caught_up(primary: psycopg.Connection, standby: psycopg.Connection) -> bool:
    lsn = primary.execute("select pg_current_wal_lsn()").fetchone()[0]
    return bool(standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0])


def test_standby_reads_through_head_mark(replicated: tuple[PgServer, PgServer], tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    primary, standby = replicated
    deadline = time.time() + SECONDS
    procs = [_mp.Process(target=_writer, args=(primary.url(), w, deadline), daemon=True) for w in range(4)]
    procs.append(_mp.Process(target=_layer_writer, args=(primary.url(), deadline), daemon=True))
    procs.append(_mp.Process(target=_standby_reader, args=(standby.url(), deadline, str(tmp_path / "r.json")),
                             daemon=True))
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(SECONDS + 60)
        assert [p.exitcode for p in procs] == [0] * len(procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["errors"] == []
    reads = result["reads"]
    assert len({h for h, _ in reads}) > 5, "head did not move on the standby while the primary wrote"

    with primary.connect() as p, standby.connect() as s:
        assert p.execute("select count(*) from pg_prepared_xacts").fetchone()[0] == 0
        head = p.execute("select rowver.publish_head()").fetchone()[0]
        assert head == p.execute("select rowver.head()").fetchone()[0]
        wait_for(lambda: caught_up(p, s), timeout=30, what="the standby to replay the primary's WAL")
        # on the standby, head is the published head, and refs resolve against it
        assert s.execute("select rowver.head(), rowver.resolve('head')").fetchone() == (head, head)
        with pytest.raises(psycopg.DatabaseError, match="above head") as refused:
            s.execute("select rowver.resolve(%s)", (str(head + 1),))
        assert refused.value.sqlstate == "RV004"  # rowver's own code (rowver/errors.py)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            s.execute("update acct set n = 0 where id = 1")
        # every as-of read made on the standby during the run reads the same now, there and on
        # the primary
        for h, seen in reads:
            assert digest(as_of(s, h)) == seen == digest(as_of(p, h)), f"as of {h}"
        # and every version up to head reads the same on both
        assert all_versions(s, head) == all_versions(p, head)
        assert p.execute("select * from rowver.check()").fetchall() == []
        assert s.execute("select * from rowver.check()").fetchall() == []
        changesets = p.execute("select count(*) from rowver.changeset").fetchone()[0]
    report(request.config, f"replica (PostgreSQL {primary.bins.major}, streaming over loopback): "
                           f"{len(reads)} as-of reads on the standby through head_mark "
                           f"({len({h for h, _ in reads})} distinct heads) re-verified there and on the primary; "
                           f"versions 0..{head} ({changesets} changesets) equal; "
                           f"{result['conflicts']} standby reads cancelled by recovery and retried")
