"""What a staged changeset costs: stage, show (diff --staged) and publish a sync that changes N
rows, against syncing the same rows at once, on the database at URL (its role makes and owns the
tables). With ROLE, the stage is made, shown and published as that role (it is given the table
privileges), so row-level security on rowver.staged_row applies, as for any non-superuser.

    python docs/stage_bench.py postgresql://postgres@127.0.0.1:5432/bench 100000 [ROLE]
"""

from __future__ import annotations

import sys
import time

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import rowver


def main(url: str, n: int, role: str | None) -> None:
    owner = rowver.connect(url)
    owner.init()
    for table in ("staged_t", "direct_t"):
        owner.conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier(table)))
        owner.conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier(f"{table}__history")))
        owner.conn.execute(sql.SQL("create table {} (id int primary key, name text, price numeric)")
                           .format(sql.Identifier(table)))
        owner.conn.execute(sql.SQL("insert into {} select g, 'item ' || g, g from generate_series(1, %s) g")
                           .format(sql.Identifier(table)), (n,))
        owner.enable(table)
    db = owner
    if role is not None:
        owner.conn.execute(sql.SQL("grant select, insert, update, delete on staged_t to {}").format(sql.Identifier(role)))
        owner.refresh("staged_t")
        db = rowver.connect(make_conninfo(url, user=role, dbname=str(conninfo_to_dict(url)["dbname"])))
    rows = [{"id": i, "name": f"item {i}", "price": i + 1} for i in range(1, n + 1)]
    t0 = time.perf_counter()
    with db.changeset() as cs:
        cs.sync("staged_t", rows, stage="bench")
    t1 = time.perf_counter()
    shown = db.diff("staged_t", staged="bench")
    t2 = time.perf_counter()
    published = db.publish("bench")
    t3 = time.perf_counter()
    with owner.changeset() as cs:
        cs.sync("direct_t", rows)
    t4 = time.perf_counter()
    assert len(shown) == n and published.updated == n
    print(f"{n:,} changed rows{f' as {role}' if role else ''}: stage {t1 - t0:.2f} s, diff --staged {t2 - t1:.2f} s, "
          f"publish {t3 - t2:.2f} s; the same sync at once {t4 - t3:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
