"""Backend CPU per one-row UPDATE transaction, compared between databases: the server's own
account of each backend's time on a CPU (/proc/PID/schedstat, so the server must run on this
machine and be readable), in short chunks taken in turn from each database, so that the
machine's drift (up to 40% here) falls on all of them alike. A change to what rowver installs
is measured by making one database before it and one after, then running them side by side.

    python docs/write_cpu.py make URL NAME [--plain]    # NAME: t (id, a, b, c), 100,000 rows, versioned unless --plain
    python docs/write_cpu.py run URL NAME NAME ...      # chunks of one-row UPDATEs, in turn; medians, and paired differences

URL names the server (its maintenance database); `make` replaces NAME if it exists. Commits are
asynchronous (synchronous_commit off): the flush, the same on both sides, is left out.
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
ROWS = 100_000


def make(url: str, name: str, plain: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    target = make_conninfo(url, dbname=name)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("create table t (id int primary key, a int, b text, c float8)")
        conn.execute("insert into t select g, 0, md5(g::text), g from generate_series(1, %s) g", (ROWS,))
    if not plain:
        with Database(target) as db:
            db.init()
            db.enable("t")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def run(url: str, names: list[str], chunks: int, size: int) -> None:
    conns = {n: psycopg.connect(make_conninfo(url, dbname=n), autocommit=True) for n in names}
    rng = random.Random(1)
    pids = {}
    for n, conn in conns.items():
        conn.execute("set synchronous_commit = off")
        pids[n] = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        for _ in range(300):  # plans made, caches warm
            conn.execute(UPDATE, (rng.randint(1, ROWS),), prepare=True)
    took: dict[str, list[float]] = {n: [] for n in names}
    for k in range(chunks):
        for n in names if k % 2 == 0 else names[::-1]:
            start = _cpu_ns(pids[n])
            for _ in range(size):
                conns[n].execute(UPDATE, (rng.randint(1, ROWS),), prepare=True)
            took[n].append((_cpu_ns(pids[n]) - start) / size / 1000)
    for n in names:
        xs = sorted(took[n])
        print(f"{n:<16} median {statistics.median(xs):6.1f} us   quartiles {xs[len(xs) // 4]:6.1f} {xs[3 * len(xs) // 4]:6.1f}")
    for n in names[1:]:
        d = sorted(b - a for a, b in zip(took[names[0]], took[n]))
        print(f"{n} - {names[0]}, paired by chunk: median {statistics.median(d):+.1f} us,"
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
    r.add_argument("--size", type=int, default=250, help="UPDATEs in a chunk")
    args = parser.parse_args()
    if args.command == "make":
        make(args.url, args.name, args.plain)
    else:
        run(args.url, args.names, args.chunks, args.size)


if __name__ == "__main__":
    main()
