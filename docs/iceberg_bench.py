"""Exporting to Iceberg: the whole table, then after a changeset updating 1% of its rows (every
hundredth key, so every data file holds some), in a scratch database created and dropped here
(README, "Scaling out"):

    .venv/bin/python docs/iceberg_bench.py postgresql://postgres@127.0.0.1:5432/postgres [ROWS]

The table has ROWS rows (default 1,000,000): bigint key, int, text, numeric(12,2), timestamptz.
Each export is timed once, cold target, through db.export (PostgreSQL read, Arrow, pyiceberg
write and commit to the default SQLite catalog in a temporary warehouse).
"""

from __future__ import annotations

import sys
import tempfile
import time

import psycopg
from psycopg import sql

import rowver

NAME = "rowver_iceberg_bench"


def main(admin: str, rows: int) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(NAME)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(NAME)))
    url = psycopg.conninfo.make_conninfo(admin, dbname=NAME)
    try:
        db = rowver.connect(url)
        try:
            run(db, rows)
        finally:
            db.conn.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(NAME)))


def run(db: rowver.Database, rows: int) -> None:
    conn = db.conn
    conn.execute("create table facts (id bigint primary key, grp int, label text, amount numeric(12,2), at timestamptz)")
    conn.execute("insert into facts select g, g %% 100, 'row ' || g, g / 100.0, now() - g * interval '1 second'"
                 " from generate_series(1, %s) g", (rows,))
    db.enable("facts")
    conn.execute("analyze facts")
    with tempfile.TemporaryDirectory() as warehouse:
        started = time.perf_counter()
        full = db.export("facts", warehouse, format="iceberg")
        whole = time.perf_counter() - started
        with conn.transaction():
            conn.execute("update facts set amount = amount + 1, label = label || '!' where id % 100 = 7")
        started = time.perf_counter()
        changes = db.export("facts", warehouse, format="iceberg")
        changed = time.perf_counter() - started
    assert full.rows == changes.rows == rows and changes.changed == rows // 100
    print(f"{rows:,} rows: whole {whole:.2f} s; after 1% changed ({changes.changed:,} rows) {changed:.2f} s; "
          f"ratio {changed / whole:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
