"""Backend CPU per one-row UPDATE transaction, compared between databases: the server's own
account of each backend's time on a CPU (/proc/PID/schedstat, so the server must run on this
machine and be readable), in short chunks taken in turn from each database, so that the
machine's drift (up to 40% here) falls on all of them alike. A change to what rowver installs
is measured by making one database before it and one after, then running them side by side.

    python docs/write_cpu.py make URL NAME [--plain]    # NAME: t (id, a, b, c), 100,000 rows, and hot (one row)
    python docs/write_cpu.py run URL NAME NAME ...      # chunks of one-row UPDATEs, in turn; medians, and paired differences
    python docs/write_cpu.py run URL NAME NAME ... --renumber

--renumber: a transaction updates a row of t, then the row of hot, after a second session (whose
transaction began later, so took a later version) has updated t and hot and committed: the first
renumbers at hot and restamps its row of t at commit, as about a third of TPC-B's transactions do
at a hot teller or branch. Measured: that transaction's CPU, and that of the same statements run
next without a rival (which pay too: the restamp ran the triggers under another search path).

URL names the server (its maintenance database); `make` replaces NAME if it exists, and versions
its tables unless --plain. Commits are asynchronous (synchronous_commit off): the flush, the same
on both sides, is left out.
"""

from __future__ import annotations

import argparse
import random
import statistics

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rowver import Database

UPDATE = "update t set a = a + 1 where id = %s"
HOT = "update hot set n = n + 1 where id = 1"
ROWS = 100_000


def make(url: str, name: str, plain: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    target = make_conninfo(url, dbname=name)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("create table t (id int primary key, a int, b text, c float8)")
        conn.execute("insert into t select g, 0, md5(g::text), g from generate_series(1, %s) g", (ROWS,))
        conn.execute("create table hot (id int primary key, n int)")
        conn.execute("insert into hot values (1, 0)")
    if not plain:
        with Database(target) as db:
            db.init()
            db.enable("t")
            db.enable("hot")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _connect(url: str, name: str) -> psycopg.Connection:
    conn = psycopg.connect(make_conninfo(url, dbname=name), autocommit=True)
    conn.execute("set synchronous_commit = off")
    return conn


def _one_row(conn: psycopg.Connection, pid: int, key: int) -> dict[str, int]:
    start = _cpu_ns(pid)
    conn.execute(UPDATE, (key,), prepare=True)
    return {"one-row UPDATE": _cpu_ns(pid) - start}


def _renumbered(conn: psycopg.Connection, rival: psycopg.Connection, pid: int, key: int) -> dict[str, int]:
    """CPU of a transaction that renumbers at hot (a later version committed it first), then
    of the same transaction without a rival."""
    start = _cpu_ns(pid)
    conn.execute("begin")
    conn.execute(UPDATE, (key,), prepare=True)
    paused = _cpu_ns(pid)
    rival.execute("begin")
    rival.execute(UPDATE, (key % ROWS + 1,), prepare=True)
    rival.execute(HOT, prepare=True)
    rival.execute("commit")
    resumed = _cpu_ns(pid)
    conn.execute(HOT, prepare=True)
    conn.execute("commit")
    late = paused - start + _cpu_ns(pid) - resumed
    start = _cpu_ns(pid)
    conn.execute("begin")
    conn.execute(UPDATE, (key,), prepare=True)
    conn.execute(HOT, prepare=True)
    conn.execute("commit")
    return {"renumbered": late, "the next, in order": _cpu_ns(pid) - start}


def run(url: str, names: list[str], chunks: int, size: int, renumber: bool) -> None:
    conns = {n: _connect(url, n) for n in names}
    rivals = {n: _connect(url, n) for n in names} if renumber else {}
    pids = {n: conn.info.backend_pid for n, conn in conns.items()}
    rng = random.Random(1)

    def once(n: str) -> dict[str, int]:
        key = rng.randint(1, ROWS)
        return _renumbered(conns[n], rivals[n], pids[n], key) if renumber else _one_row(conns[n], pids[n], key)
    for n in names:
        for _ in range(300 // (10 if renumber else 1)):  # plans made, caches warm
            once(n)
    took: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for k in range(chunks):
        for n in names if k % 2 == 0 else names[::-1]:
            spent: dict[str, int] = {}
            for _ in range(size):
                for what, ns in once(n).items():
                    spent[what] = spent.get(what, 0) + ns
            for what, ns in spent.items():
                took[n].setdefault(what, []).append(ns / size / 1000)
    for what in took[names[0]]:
        print(what)
        for n in names:
            xs = sorted(took[n][what])
            print(f"  {n:<16} median {statistics.median(xs):6.1f} us"
                  f"   quartiles {xs[len(xs) // 4]:6.1f} {xs[3 * len(xs) // 4]:6.1f}")
        for n in names[1:]:
            d = sorted(b - a for a, b in zip(took[names[0]][what], took[n][what]))
            print(f"  {n} - {names[0]}, paired by chunk: median {statistics.median(d):+.1f} us,"
                  f" quartiles {d[len(d) // 4]:+.1f} {d[3 * len(d) // 4]:+.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("url")
    m.add_argument("name")
    m.add_argument("--plain", action="store_true")
    r = sub.add_parser("run")
    r.add_argument("url")
    r.add_argument("names", nargs="+")
    r.add_argument("--chunks", type=int, default=40)
    r.add_argument("--size", type=int, default=250, help="transactions in a chunk (with --renumber, pairs)")
    r.add_argument("--renumber", action="store_true", help="transactions that renumber, and the next ones")
    args = parser.parse_args()
    if args.command == "make":
        make(args.url, args.name, args.plain)
    else:
        run(args.url, args.names, args.chunks, args.size, args.renumber)


if __name__ == "__main__":
    main()
