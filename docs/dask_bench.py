"""Reading a versioned table as of a past version: rowver.dask.read_as_of on a distributed
LocalCluster of 1 and 2 worker processes, against db.as_of, in a scratch database created and
dropped here (README, "Scaling out"):

    .venv/bin/python docs/dask_bench.py postgresql://postgres@127.0.0.1:5432/postgres [ROWS]

The table has ROWS rows (default 1,000,000), a tenth of them updated once before the version read,
and one change after it, so v is below head and every read goes through T__as_of(v) and history.
Each figure is the best of three, server caches warm, the read's planning
(resolving the ref, the splits) included; the result's row count is checked each time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

import rowver
import rowver.dask


def best(run: Callable[[], Any], times: int = 3) -> float:
    found = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        found.append(time.perf_counter() - started)
    return min(found)


def warm() -> None:
    import pandas  # noqa: F401
    import psycopg  # noqa: F401

    import rowver.dask  # noqa: F401


def check(frame: Any, rows: int) -> None:
    assert len(frame) == rows, (len(frame), rows)


def main(server: str, rows: int) -> None:
    from distributed import Client, LocalCluster

    name = "rowver_dask_bench"
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        db = rowver.connect(url)
        db.init()
        db.conn.execute("create table items (id bigint primary key, grp int, name text, price float8, note text)")
        db.conn.execute("insert into items select g, g %% 100, 'item ' || g, g / 7.0,"
                        " case when g %% 3 = 0 then 'note ' || g end from generate_series(1, %s) g", (rows,))
        db.enable("items")
        db.conn.execute("update items set price = price + 1 where id % 10 = 0")
        version = db.resolve_for("items", "head")
        db.conn.execute("update items set price = price + 1 where id = 1")  # v is now below head
        db.conn.execute("vacuum analyze items")
        db.conn.execute("vacuum analyze items__history")
        expected = len(db.as_of("items", version))
        print(f"{rows:,} rows as of version {version} ({expected:,} rows), server {db.scalar('show server_version')}")
        print(f"db.as_of: {best(lambda: db.as_of('items', version)):.2f} s")
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                              dashboard_address=None) as cluster, Client(cluster) as client:
                client.run(warm)  # (rowver, pandas and psycopg imported in each worker)
                for parts in sorted({workers, 2 * workers, 8}):
                    took = []
                    for _ in range(3):
                        # the previous run's results released (the cluster would serve them again)
                        while any(client.has_what().values()):
                            time.sleep(0.05)
                        started = time.perf_counter()
                        check(rowver.dask.read_as_of(url, "items", version, npartitions=parts).compute(), expected)
                        took.append(time.perf_counter() - started)
                    print(f"rowver.dask.read_as_of, {workers} worker(s), {parts} partitions: {min(took):.2f} s")
        db.close()
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
