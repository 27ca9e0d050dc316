"""rowver's writers against a peer (issue 16): pgbench TPC-B and a single-row UPDATE by key, on
plain tables, on tables system-versioned by the C extension ``periods`` (xocolatl/periods, the
Debian package postgresql-15-periods), on tables versioned by the floor (docs/floor_versioning.sql:
the least a PL/pgSQL trigger can do, a stamp and a copy of each superseded row, none of rowver's
guarantees), by the floor one step up (the same file: one version and one changeset row per
transaction, history written by a SECURITY DEFINER trigger) and on rowver-versioned tables,
interleaved round by round.

    .venv/bin/python docs/peer_bench.py postgresql://postgres@127.0.0.1:5432/postgres [SECONDS] [ROUNDS]

It makes five scratch databases (pgbench -i -s 2, a key added to pgbench_history, all four tables
versioned) and drops them afterwards. 4 clients, 2 threads, no retries, as figure 9 of rowver bench.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

from rowver import Database
from rowver.bench import _pgbench

TABLES = ", ".join(f"'{t}'" for t in _pgbench.TABLES)
FLOOR = Path(__file__).with_name("floor_versioning.sql")
SINGLE_ROW = "\\set aid random(1, 200000)\nupdate pgbench_accounts set abalance = abalance + 1 where aid = :aid;\n"


def make(url: str, side: str) -> None:
    _pgbench.init(url, scale=2)
    with psycopg.connect(url, autocommit=True) as conn:
        if side == "periods":
            conn.execute("create extension periods cascade")
            conn.execute(f"select periods.add_system_time_period(t), periods.add_system_versioning(t)"
                         f" from unnest(array[{TABLES}]::regclass[]) t")
        if side == "rowver":
            with Database(url) as db:
                for t in _pgbench.TABLES:
                    db.enable(t)
        if side in ("floor", "floor_tx"):
            conn.execute(FLOOR.read_text())
            conn.execute(f"select {side}_enable(t) from unnest(array[{TABLES}]::regclass[]) t")
        conn.execute("vacuum analyze")


def run(url: str, seconds: float, extra: tuple[str, ...]) -> tuple[float, int, int]:
    """tps, failed transactions and aborted clients of one pgbench run. periods aborts a client
    whose transaction meets a row a newer one wrote ("invalid row version"); pgbench then exits
    non-zero and reports the rest."""
    out = subprocess.run([str(_pgbench.binary()), "-n", "-c", "4", "-j", "2", "-T", str(round(seconds)), *extra, url],
                         capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    tps = re.search(r"^tps = ([\d.]+)", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if tps is None:
        raise RuntimeError(text[-2000:])
    return float(tps.group(1)), int(failed.group(1)) if failed else 0, len(re.findall(r"client \d+ script \d+ aborted", text))


def main(url: str, seconds: float, rounds: int) -> None:
    names = {side: f"peer_{side}_{uuid.uuid4().hex[:6]}" for side in ("plain", "periods", "floor", "floor_tx", "rowver")}
    urls = {side: psycopg.conninfo.make_conninfo(url, dbname=name) for side, name in names.items()}
    with psycopg.connect(url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'create database "{name}"')
        try:
            for side in names:
                make(urls[side], side)
            with tempfile.TemporaryDirectory() as tmp:
                script = Path(tmp, "single_row.sql")
                script.write_text(SINGLE_ROW)
                for what, extra in (("TPC-B", ()), ("single-row UPDATE", ("-M", "prepared", "-f", str(script)))):
                    tps: dict[str, list[float]] = {side: [] for side in names}
                    failed, aborted = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
                    for _ in range(rounds):
                        for side in names:
                            t, f, a = run(urls[side], seconds, extra)
                            tps[side].append(t)
                            failed[side] += f
                            aborted[side] += a
                    plain = statistics.median(tps["plain"])
                    for side in names:
                        median = statistics.median(tps[side])
                        print(f"{what:18} {side:8} tps {', '.join(f'{t:,.0f}' for t in tps[side])}"
                              f" (median {median:,.0f}, {median / plain:.2f}x plain), {failed[side]} failed,"
                              f" {aborted[side]} of {4 * rounds} clients aborted")
        finally:
            for name in names.values():
                admin.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
