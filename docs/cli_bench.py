"""The CLI's reads at real sizes (issue 19): on the database at URL, a versioned table of N rows
(id int primary key, a int, b text, c float8; default 1,000,000) with one round that updates 10% of
them, then, each timed as a whole command (process start included):

- ``rowver show T --format csv`` against ``psql -c "\\copy (select * from T__as_of(head)) to stdout csv
  header"``, RUNS times each, interleaved (target: rowver within 1.5x of psql);
- ``rowver diff T V1 head --format csv`` of the N/10 changed rows (target: < 5 s);
- ``rowver show T`` in the table format (the first 1,000 rows): until its first screen (50 lines)
  is out (target: < 1 s), and until it ends;
- peak memory (``/usr/bin/time -f %M``) of ``show`` as csv and as json, and of ``diff`` as csv.

    python docs/cli_bench.py postgresql://postgres@127.0.0.1:5432/bench [N] [RUNS]

The table (cli_bench) is made again on each run; output goes to /dev/null. rowver runs as after a
plain ``pip install``: with its bytecode cached (here under a temporary PYTHONPYCACHEPREFIX, after
one warm-up run) and stdout buffered, whatever PYTHONDONTWRITEBYTECODE and PYTHONUNBUFFERED say.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

import rowver

TABLE = "cli_bench"
ROWVER = str(Path(sys.executable).with_name("rowver"))


def build(url: str, n: int) -> int:
    """The table, versioned, after one 10% update round; returns the version enable made."""
    db = rowver.connect(url)
    db.init()
    name, history = sql.Identifier(TABLE), sql.Identifier(f"{TABLE}__history")
    db.conn.execute(sql.SQL("drop table if exists {}, {} cascade").format(name, history))
    db.conn.execute(sql.SQL("create table {} (id int primary key, a int, b text, c float8)").format(name))
    db.conn.execute(sql.SQL("insert into {} select g, g %% 1000, 'row ' || g || ' \"quoted\", text', random() * 1e6"
                            " from generate_series(1, %s) g").format(name), (n,))
    first = db.enable(TABLE)
    with db.changeset(message="10% update round"):
        db.conn.execute(sql.SQL("update {} set a = a + 1, c = c / 3 where id % 10 = 0").format(name))
    db.conn.execute(sql.SQL("vacuum analyze {}, {}").format(name, history))
    db.close()
    return first


ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "ROWVER_URL")}


def timed(command: list[str]) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one command, its stdout to /dev/null."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True, env=ENV)
    return time.perf_counter() - start, int(done.stderr.strip().splitlines()[-1])


def first_screen(command: list[str], lines: int = 50) -> tuple[float, float]:
    """Seconds until a command has printed its first ``lines`` lines (a screen), and until it ends."""
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=ENV) as running:
        assert running.stdout is not None
        for _ in range(lines):
            running.stdout.readline()
        seen = time.perf_counter() - start
        running.stdout.read()
    return seen, time.perf_counter() - start


def main(url: str, n: int, runs: int) -> None:
    first = build(url, n)
    psql = [shutil.which("psql") or "psql", url, "-X", "-q", "-c",
            f"\\copy (select * from {TABLE}__as_of(rowver.head())) to stdout csv header"]
    show = [ROWVER, "show", TABLE, "--url", url]
    timed([*show, "--format", "csv", "--limit", "1"])  # (the warm-up: bytecode cached)
    print(f"{n:,} rows, {n // 10:,} changed; PostgreSQL at {url}")
    ours, theirs = [], []
    for _ in range(runs):
        theirs.append(timed(psql)[0])
        ours.append(timed([*show, "--format", "csv"])[0])
    print(f"psql \\copy csv:          {', '.join(f'{t:.2f}' for t in theirs)} s")
    print(f"rowver show --format csv: {', '.join(f'{t:.2f}' for t in ours)} s "
          f"(ratio of medians {sorted(ours)[runs // 2] / sorted(theirs)[runs // 2]:.2f}, target <= 1.5)")
    diff = [timed([ROWVER, "diff", TABLE, str(first), "head", "--format", "csv", "--url", url]) for _ in range(runs)]
    print(f"rowver diff --format csv: {', '.join(f'{t:.2f}' for t, _ in diff)} s (target < 5), "
          f"peak RSS {max(m for _, m in diff) / 1024:.0f} MiB")
    table = [first_screen([*show, "--no-pager"]) for _ in range(runs)]
    print(f"rowver show (table format, 1,000 rows): first screen (50 lines) "
          f"{', '.join(f'{t:.2f}' for t, _ in table)} s (target < 1), all {', '.join(f'{t:.2f}' for _, t in table)} s")
    for fmt in ("csv", "json"):
        print(f"peak RSS, show --format {fmt}: {timed([*show, '--format', fmt])[1] / 1024:.0f} MiB")


if __name__ == "__main__":
    os.environ.pop("ROWVER_URL", None)
    ENV["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="rowver-bench-pycache-")
    try:
        main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000,
             int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    finally:
        shutil.rmtree(ENV["PYTHONPYCACHEPREFIX"])
