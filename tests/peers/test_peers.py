"""The peer comparison as a test: slow, and run only when asked (ROWVER_PEERS=1).

    ROWVER_PEERS=1 ROWVER_TEST_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m pytest -m slow tests/peers -s

ROWVER_PEERS_ROWS sets the size (default 300,000; continuum runs at most 20,000). It
prints rowver's figures beside periods' and sqlalchemy-continuum's. It asserts that every
workload was measured where it applies, never how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ROWVER_PEERS") != "1",
                       reason="the peer comparison takes minutes; run it with ROWVER_PEERS=1"),
]

SCRIPT = Path(__file__).with_name("peers.py")


def test_peers_side_by_side(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        available = c.execute("select exists (select from pg_available_extensions where name = 'periods')").fetchone()
        version = c.execute("show server_version").fetchone()
    if not (available and available[0]):
        pytest.skip(f"the periods extension is not available on this server (PostgreSQL {version and version[0]}); "
                    "on Debian: apt-get install postgresql-15-periods (for the system PostgreSQL 15)")
    out = tmp_path / "peers.json"
    rows = os.environ.get("ROWVER_PEERS_ROWS", "300000")
    # a process of its own: sqlalchemy-continuum's setup is global to the process
    done = subprocess.run([sys.executable, str(SCRIPT), "--url", db_url, "--rows", rows, "--json", str(out)],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-4000:]
    print(done.stdout)
    result = json.loads(out.read_text())

    measured = {peer: {f["name"]: f for f in figures} for peer, figures in result["peers"].items()
                if not isinstance(figures, str)}
    assert set(measured) >= {"rowver", "periods"}
    for name in ("bulk_update", "concurrent_updates", "current_scan", "as_of_scan", "as_of_point_lookup",
                 "history_bytes_per_changed_row", "history_bytes_per_unchanged_row"):
        for peer in ("rowver", "periods"):
            assert isinstance(measured[peer][name]["ratio"], (int, float)), (peer, name)
    assert isinstance(measured["rowver"]["sync_vs_copy"]["ratio"], (int, float))
    if "continuum" in measured:
        for name in ("bulk_update", "concurrent_updates", "current_scan", "as_of_scan", "as_of_point_lookup",
                     "history_bytes_per_changed_row"):
            assert isinstance(measured["continuum"][name]["ratio"], (int, float)), name

    with psycopg.connect(db_url, autocommit=True) as c:  # nothing left behind
        assert c.execute("select count(*) from pg_namespace where nspname like 'rowver\\_bench\\_%'").fetchone() == (0,)
        assert c.execute("select count(*) from pg_extension where extname in ('periods', 'btree_gist')").fetchone() == (0,)
