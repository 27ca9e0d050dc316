"""What progress costs, and what it shows (issue 19): a sync of a 1,000,000-row DataFrame (1% of
its rows changed; all of them are sent), a Parquet export and a diff of the same table, each
timed without and with a ``progress=`` callback (interleaved, best of N), and enable's copy of
the table, watched: how many calls, when the first count above 0 came, and how far the
estimate (the table's size before) was from the copy's size.

    .venv/bin/python docs/progress_bench.py postgresql://postgres@127.0.0.1:5432/postgres [ROWS] [RUNS]

It creates a scratch database on that server and drops it afterwards.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from psycopg import conninfo, sql

import rowver


def best(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main(url: str, rows: int, runs: int) -> None:
    name = f"rowver_progress_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    target = conninfo.make_conninfo(url, dbname=name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # (a timeout still drops the database)
    try:
        run(target, rows, runs)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def run(url: str, rows: int, runs: int) -> None:
    calls: list[tuple[float, int, int | None]] = []
    start = [0.0]

    def tell(done: int, total: int | None) -> None:
        calls.append((time.perf_counter() - start[0], done, total))

    with rowver.connect(url) as db, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table bench (id int primary key, name text, price float8)")
        # (the rows the frame below holds: its first sync changes nothing)
        conn.execute("insert into bench select g, 'item ' || g, g::float8 / 99 from generate_series(1, %s) g", (rows,))
        size = conn.execute("select pg_total_relation_size('bench')").fetchone()[0]
        calls.clear()
        start[0] = time.perf_counter()
        db.enable("bench", rewrite=True, progress=tell)
        took = time.perf_counter() - start[0]
        copied = conn.execute("select pg_total_relation_size('bench')").fetchone()[0]
        moving = [c for c in calls if 0 < c[1]]
        print(f"enable --rewrite of {rows:,} rows ({size / 1e6:.1f} MB): {took:.2f} s, {len(calls)} calls; first "
              f"count above 0 at {moving[0][0]:.2f} s; last watched {calls[-2][1] / 1e6:.1f} MB of an estimate of "
              f"{size / 1e6:.1f} MB; the copy is {copied / 1e6:.1f} MB (last call {calls[-1][1] / 1e6:.1f} MB)", flush=True)

        frame = pd.DataFrame({"id": range(1, rows + 1), "name": [f"item {i}" for i in range(1, rows + 1)],
                              "price": [i / 99.0 for i in range(1, rows + 1)]})
        flip = [0]

        def sync(progress: Any) -> Callable[[], None]:
            def work() -> None:
                flip[0] += 1
                frame.loc[frame["id"] % 100 == 0, "price"] += flip[0]  # (1% of the rows change each time)
                with db.changeset() as cs:
                    cs.sync("bench", frame, progress=progress)
            return work

        without, with_ = [], []
        for _ in range(runs):  # interleaved
            without.append(best(1, sync(None)))
            with_.append(best(1, sync(lambda d, t: None)))
        print(f"sync of {rows:,} rows (1% changed): {min(without):.2f} s without progress, {min(with_):.2f} s with "
              f"(best of {runs})", flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            n = [0]

            def export(progress: Any) -> Callable[[], None]:
                def work() -> None:
                    n[0] += 1
                    db.export("bench", Path(tmp) / str(n[0]), progress=progress)
                return work

            without, with_ = [], []
            for _ in range(runs):
                without.append(best(1, export(None)))
                with_.append(best(1, export(lambda d, t: None)))
            print(f"Parquet export of {rows:,} rows: {min(without):.2f} s without progress, {min(with_):.2f} s with",
                  flush=True)

        first = db.head()
        conn.execute("update bench set price = -price where id % 10 = 0")
        db.publish_head()
        without, with_ = [], []
        for _ in range(runs):
            without.append(best(1, lambda: db.diff("bench", first)))
            with_.append(best(1, lambda: db.diff("bench", first, progress=lambda d, t: None)))
        print(f"diff of {rows // 10:,} changed rows: {min(without):.2f} s without progress (one fetch), "
              f"{min(with_):.2f} s with (streamed, told every 10,000 rows)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000, int(sys.argv[3]) if len(sys.argv) > 3 else 2)
