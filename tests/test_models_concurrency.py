"""The model store under concurrent saves, a concurrent gc, and a saver killed mid-upload,
with real processes: version numbers are never duplicated or skipped, a save either lands
whole or not at all, no visible version names a missing chunk, and gc reclaims what a
killed save left behind."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from pgserver import report, wait_for

import rowver

# A saver: three versions of "shared", each with one tensor of its own and one that every
# saver shares (deduplicated chunks). Prints "version digest" per save.
SAVER = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    import rowver
    url, seed = sys.argv[1], int(sys.argv[2])
    shared = np.arange(300_000, dtype=np.float32)
    with rowver.connect(url) as db:
        for k in range(3):
            own = np.random.default_rng(seed * 10 + k).standard_normal(300_000).astype(np.float32)
            v = db.models.save("shared", weights={"shared": shared, "own": own}, chunk_size=256 * 1024)
            print(v.version, hashlib.sha256(own.tobytes()).hexdigest(), flush=True)
""")

# A saver of one large model, slowly enough (small chunks, small batches) to be killed mid-upload.
BIG_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    import rowver
    from rowver.models import _chunks
    _chunks.BATCH_BYTES = 4 << 20
    with rowver.connect(sys.argv[1]) as db:
        w = {f"t{i}": np.random.default_rng(i).standard_normal(4_000_000).astype(np.float32) for i in range(8)}
        db.models.save("big", weights=w, chunk_size=1 << 20)
        print("saved", flush=True)
""")


def _with_app(url: str, app: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={app}"


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ROWVER_URL", "ROWVER_DEBUG")}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_saves_and_gc(db_url: str, request: pytest.FixtureRequest) -> None:
    savers = [_python(SAVER, db_url, str(seed)) for seed in range(4)]
    gc_runs = 0
    with rowver.connect(db_url) as db:
        while any(p.poll() is None for p in savers):  # gc with no grace at all, all the time
            db.models.gc(grace=dt.timedelta(0))
            gc_runs += 1
        saved: dict[int, str] = {}
        for p in savers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            for line in out.splitlines():
                version, digest = line.split()
                assert int(version) not in saved, f"version {version} was handed out twice"
                saved[int(version)] = digest
        # gc waits for saves in flight, so none failed, and none was numbered twice or skipped
        assert sorted(saved) == list(range(1, 13))
        for version, digest in saved.items():
            loaded = db.models.load(f"shared/{version}")  # every hash verified
            assert hashlib.sha256(loaded.weights["own"].tobytes()).hexdigest() == digest
        assert db.models.check() == []
    report(request.config, f"models: 4 processes x 3 saves of one model against {gc_runs} gc runs with no "
                           "grace: all 12 saved, numbered 1..12, each loads, check clean")


def test_a_save_killed_mid_upload_leaves_nothing_visible(db_url: str, request: pytest.FixtureRequest) -> None:
    app = "rv-model-killed"
    child = _python(BIG_SAVER, _with_app(db_url, app))
    with rowver.connect(db_url) as db:
        try:
            def uploading() -> bool:  # some batches committed, another being copied
                assert child.poll() is None, child.communicate()
                return db.conn.execute(
                    "select (select count(*) from rowver.model_chunk) > 0 and exists (select from pg_stat_activity"
                    " where application_name = %s and query like 'copy rowver.model_chunk%%')", (app,)).fetchone()[0]

            wait_for(uploading, timeout=60, interval=0.01, what="the saver to be uploading chunks")
            os.kill(child.pid, signal.SIGKILL)
            out, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == -signal.SIGKILL and "saved" not in out
        wait_for(lambda: db.conn.execute("select count(*) = 0 from pg_stat_activity where application_name = %s",
                                         (app,)).fetchone()[0], timeout=60, what="the killed saver's backend to end")
        orphans = db.conn.execute("select count(*) from rowver.model_chunk").fetchone()[0]
        assert orphans > 0
        assert db.models.list() == [] and db.models.check() == []
        freed, size = db.models.gc(grace=dt.timedelta(0))  # nothing names them: all reclaimable
        assert freed == orphans and size > 0
        done = subprocess.run([sys.executable, "-c", BIG_SAVER, db_url], capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0 and done.stdout.strip() == "saved", done.stderr
        assert db.models.get("big").version == 1 and db.models.check() == []
    report(request.config, f"models: a save killed (SIGKILL) mid-upload left {orphans} committed chunks and "
                           "no version; gc reclaimed them all; the rerun saved big/1")
