"""Where a versioned writer's time goes, by rowver function (issue 16): the server's own account
(track_functions = all, pg_stat_user_functions) of a run of one-row UPDATEs, or of pgbench TPC-B,
on rowver-versioned tables in a scratch database, which is dropped afterwards. Per call: the
function's time with what it calls, and its own. Needs a role that may set track_functions (a
superuser). The times are elapsed, and include what tracking costs: under TPC-B's 4 clients on
fewer cores, waits for a core and for locks too, so compare shares there, not microseconds.

    .venv/bin/python docs/write_profile.py postgresql://postgres@127.0.0.1:5432/postgres [update|tpcb] [N]

update: N one-row UPDATEs by key (default 5,000), one client, each its own transaction, on the
200,000 rows of pgbench_accounts; tpcb: pgbench's TPC-B for N seconds (default 15), 4 clients,
no retries, as figure 9 of rowver bench.
"""

from __future__ import annotations

import random
import sys
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rowver import Database
from rowver.bench import _pgbench

REPORT = """select funcname, calls, total_time / calls * 1000, self_time / calls * 1000
              from pg_stat_user_functions where calls > 0 order by total_time desc"""


def profile(url: str, workload: str, n: int) -> None:
    _pgbench.init(url, scale=2)
    with Database(url) as db:
        db.init()
        for table in _pgbench.TABLES:
            db.enable(table)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("set track_functions = 'all'")
        conn.execute(sql.SQL("alter database {} set track_functions = 'all'").format(
            sql.Identifier(str(conninfo_to_dict(url)["dbname"]))))
        conn.execute("select pg_stat_reset()")
    if workload == "tpcb":
        run = _pgbench.run(url, clients=4, jobs=2, seconds=n)
        what = f"TPC-B, 4 clients, {n} s ({run.tps:.0f} tps, {run.failed} failed)"
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            rng = random.Random(7)
            for _ in range(n):
                conn.execute("update pgbench_accounts set abalance = abalance + 1 where aid = %s",
                             (rng.randint(1, 200_000),), prepare=True)
        what = f"{n:,} one-row UPDATEs"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_stat_force_next_flush()")
        transactions = conn.execute("select count(*) from rowver.changeset").fetchone()[0]  # type: ignore[index]
        rows = conn.execute(REPORT).fetchall()
    print(f"{what}: {transactions:,} changesets (the enabling four among them)")
    print(f"{'function':<34}{'calls':>9}{'us/call':>10}{'own us':>9}")
    for name, calls, total, own in rows:
        print(f"{name:<34}{calls:>9,}{total:>10.1f}{own:>9.1f}")


def main(url: str, workload: str = "update", n: int | None = None) -> None:
    name = f"rowver_profile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        profile(make_conninfo(url, dbname=name), workload, n or (15 if workload == "tpcb" else 5000))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "update", int(sys.argv[3]) if len(sys.argv) > 3 else None)
