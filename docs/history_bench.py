"""What one key's long history costs as a DataFrame (db.history), on the database at URL (its
role makes and owns the table): a table of ROWS rows, one key updated VERSIONS times, and
OTHERS single-row changesets on other keys, so that rowver.changeset is as long as a busy
database's. db.history is timed interleaved with a plain psycopg fetch of the same rows (the
floor: psycopg's own loaders, no frame), median, quartile and fastest of REPS each. The table
is dropped and made again on each run; the changesets stay (history is append-only).

    python docs/history_bench.py postgresql://postgres@127.0.0.1:5432/bench [ROWS VERSIONS OTHERS REPS]
"""

from __future__ import annotations

import statistics
import sys
import time

import psycopg
from psycopg import sql

import rowver
from rowver import _query

TABLE = "history_bench_t"
T, H = sql.Identifier(TABLE), sql.Identifier(f"{TABLE}__history")


def main(url: str, rows: int, versions: int, others: int, reps: int) -> None:
    db = rowver.connect(url)
    db.init()
    db.conn.execute(sql.SQL("drop table if exists {}, {} cascade").format(T, H))
    db.conn.execute(sql.SQL("create table {} (id bigint primary key, qty int not null, name text not null,"
                            " note text, updated_at timestamptz not null)").format(T))
    db.conn.execute(sql.SQL("insert into {} select i, i %% 1000, 'item ' || md5(i::text),"
                            " case when i %% 3 = 0 then null else left(md5(i::text), 16) end,"
                            " timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'"
                            " from generate_series(1, %s) i").format(T), (rows,))
    db.enable(TABLE)
    with psycopg.connect(url, autocommit=True) as writer:
        writer.execute("set synchronous_commit = off")  # (setting up, not measuring)
        for _ in range(versions):
            writer.execute(sql.SQL("update {} set qty = qty + 1 where id = 101").format(T), prepare=True)
        for i in range(others):
            writer.execute(sql.SQL("update {} set qty = qty + 1 where id = %s").format(T), (1000 + i % rows,),
                           prepare=True)
        writer.execute("select rowver.publish_head()")
        writer.execute(sql.SQL("vacuum analyze {}, {}, rowver.changeset").format(T, H))
    query, params = _query._history_query(db, TABLE, 101)
    plain = psycopg.connect(url, autocommit=True)  # (psycopg's own loaders: rowver's read infinity too)

    def fetch() -> int:
        with psycopg.RawCursor(plain) as cur:
            return len(cur.execute(query, params).fetchall())

    timed = {"db.history": lambda: len(db.history(TABLE, 101)), "plain fetch": fetch}
    times: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(5):  # warm, and prepared (psycopg prepares a statement run 5 times)
        for f in timed.values():
            f()
    for _ in range(reps):
        for name, f in timed.items():
            t = time.perf_counter()
            f()
            times[name].append((time.perf_counter() - t) * 1e3)
    changesets = db.conn.execute("select count(*) from rowver.changeset").fetchone()[0]  # type: ignore[index]
    print(f"one key's history of {versions + 1:,} states, {rows:,} rows, {changesets:,} changesets:")
    for name, ms in times.items():
        ms.sort()
        print(f"  {name}: median {statistics.median(ms):.1f} ms, quartile {ms[len(ms) // 4]:.1f} ms,"
              f" fastest {ms[0]:.1f} ms")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[2:6]]
    main(sys.argv[1], *(args + [200_000, 5000, 60_000, 40][len(args):]))
