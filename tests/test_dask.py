"""rowver.dask.read_as_of: a table as of one version as a Dask DataFrame whose partitions read key
ranges on connections of their own, here from the worker processes of a real distributed cluster
on loopback, while four writers keep changing the table: the frame equals ``db.as_of`` at that
version, rows whose keys have left the table since included. Bad input is one rowver error,
raised before any partition runs."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from distributed import Client, LocalCluster, get_task_stream

import rowver
import rowver._query
import rowver.dask
from rowver.errors import InvalidInputError, UnknownTableError

ROWS = 200_000
WRITERS = 4


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes of one thread each, scheduler and workers on loopback."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as connected:
        yield connected


def _item(i: int, rng: random.Random) -> dict[str, Any]:
    return {"id": i, "grp": rng.randrange(100), "name": f"item {rng.random()}", "price": rng.random() * 100,
            "note": None if rng.random() < 0.3 else "n" * rng.randrange(5)}


def _write(url: str, writer: int, stop: threading.Event, done: list[int], errors: list[BaseException]) -> None:
    """Changesets until stopped: update 40 rows, delete 5, insert 5, on keys = writer (mod 4)."""
    rng = random.Random(writer)
    fresh = ROWS * 10 + writer
    try:
        with rowver.connect(url) as db:
            while not stop.is_set():
                keys = {rng.randrange(ROWS // WRITERS) * WRITERS + writer for _ in range(45)}
                gone = set(list(keys)[:5])
                with db.changeset(message=f"writer {writer}") as cs:
                    cs.upsert("items", [_item(i, rng) for i in sorted(keys - gone)])
                    cs.delete("items", [{"id": i} for i in sorted(gone)])
                    cs.insert("items", [_item(fresh + WRITERS * k, rng) for k in range(5)])
                fresh += WRITERS * 5
                done[writer] += 1
    except BaseException as exc:  # (reported by the test)
        errors.append(exc)


def _equal(frame: Any, expected: pd.DataFrame, key: str) -> None:
    """A computed Dask frame, in key order, equals ``expected`` (conformed to the Dask dtypes)."""
    got = frame.compute().sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(got, rowver.dask.conform(expected, frame.dtypes.to_dict()), check_exact=True)


def test_a_read_while_four_writers_write_equals_as_of_its_version(db_url: str, conn: psycopg.Connection,
                                                                  client: Client) -> None:
    conn.execute("create table items (id bigint primary key, grp int, name text, price float8, note text)")
    conn.execute("insert into items select g, g %% 100, 'item ' || g, g / 7.0, null from generate_series(1, %s) g",
                 (ROWS,))
    db = rowver.connect(db_url)
    db.enable("items")
    conn.execute("analyze items")  # (the splits then come from a sample)
    edges = [{"id": i, "grp": 0, "name": "edge", "price": 0.0, "note": "edge"} for i in (-5, -1, ROWS * 100)]
    with db.changeset(message="keys beyond both ends") as cs:
        cs.insert("items", edges)
    stop, errors, done = threading.Event(), [], [0] * WRITERS
    writers = [threading.Thread(target=_write, args=(db_url, w, stop, done, errors)) for w in range(WRITERS)]
    for t in writers:
        t.start()
    try:
        while sum(done) < 8 and not errors:
            stop.wait(0.05)
        version = db.resolve_for("items", "head")
        with db.changeset(message="the edges go, after the version read") as cs:
            cs.delete("items", [{"id": e["id"]} for e in edges])
        frame = rowver.dask.read_as_of(db_url, "items", version, npartitions=8)
        before = sum(done)
        with get_task_stream(client) as tasks:
            got = frame.compute()
        during = sum(done) - before
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert not errors, errors
    assert during > 0, "no writer committed while the partitions read"
    assert frame.npartitions == 8
    assert len({task["worker"] for task in tasks.data}) == 2, "the partitions ran on one worker only"
    expected = db.as_of("items", version)
    assert set(expected["id"]) >= {-5, -1, ROWS * 100}  # outside the keys the splits were cut from
    now = db.as_of("items", "head")
    assert len(now) != len(expected) or not now.equals(expected)  # the writers did change it
    got = got.sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(got, rowver.dask.conform(expected, frame.dtypes.to_dict()), check_exact=True)
    assert got["id"].is_unique
    db.close()


def test_one_partition_a_text_key_and_a_composite_key(db_url: str, conn: psycopg.Connection, client: Client) -> None:
    conn.execute("create table words (w text primary key, n int, seen timestamptz)")
    conn.execute("insert into words select 'w' || g, case when g % 3 = 0 then null else g end,"
                 " case when g % 5 <> 0 then timestamptz '2026-01-01' + g * interval '1 minute' end"
                 " from generate_series(1000, 2999) g")
    conn.execute("create table pairs (a int, b text, v numeric, primary key (a, b))")
    conn.execute("insert into pairs select g % 7, 'b' || g, g / 3.0 from generate_series(1, 700) g")
    db = rowver.connect(db_url)
    db.enable("words")
    db.enable("pairs")  # (neither analyzed: the splits then come from every row)
    version = db.resolve_for("words", "head")
    with db.changeset(message="words beyond both ends, and one gone") as cs:  # after the version read
        cs.delete("words", [{"w": "w1000"}, {"w": "w2999"}])
        cs.insert("words", [{"w": "a", "n": 1}, {"w": "zz", "n": 2}])
    for n in (1, 3):
        frame = rowver.dask.read_as_of(db_url, "words", version, npartitions=n)
        assert frame.npartitions == n
        _equal(frame, db.as_of("words", version), "w")
    _equal(rowver.dask.read_as_of(db_url, "words", "head", npartitions=4, columns=["n", "w"]),
           db.as_of("words", "head")[["n", "w"]], "w")
    pairs = rowver.dask.read_as_of(db_url, "pairs", "head", npartitions=20)
    assert pairs.npartitions <= 7  # cut on its first key column, which has 7 values
    got = pairs.compute().sort_values(["a", "b"], ignore_index=True)
    expected = db.as_of("pairs", "head")
    pd.testing.assert_frame_equal(got, rowver.dask.conform(expected, pairs.dtypes.to_dict()), check_exact=True)
    db.close()


def test_a_computation_reads_only_the_columns_it_needs(db_url: str, conn: psycopg.Connection,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("create table t (id int primary key, x float8, s text)")
    conn.execute("insert into t select g, g, 's' from generate_series(1, 100) g")
    rowver.connect(db_url).enable("t")
    read, asked = rowver._query.read, []

    def seen(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("columns"))
        return read(*args, **kwargs)

    monkeypatch.setattr(rowver._query, "read", seen)
    frame = rowver.dask.read_as_of(db_url, "t", "head", npartitions=2)
    assert frame["x"].sum().compute(scheduler="synchronous") == 5050
    assert asked[1:] == [["x"], ["x"]]  # (the first: read_as_of's own zero-row read of every column)


@pytest.mark.parametrize(("change", "error", "says"), [
    ({"table": "nowhere"}, UnknownTableError, "nowhere"),
    ({"ref": 10**9}, InvalidInputError, "above head"),
    ({"ref": "no-such-tag"}, InvalidInputError, "no-such-tag"),
    ({"npartitions": 0}, InvalidInputError, "npartitions"),
    ({"npartitions": True}, InvalidInputError, "npartitions"),
    ({"npartitions": "2"}, InvalidInputError, "npartitions"),
    ({"columns": ["id", "colour"]}, InvalidInputError, "no column 'colour'"),
    ({"columns": []}, InvalidInputError, "columns"),
    ({"columns": ["x", "x"]}, InvalidInputError, "twice"),
])
def test_bad_input_is_one_error_before_any_partition_runs(db_url: str, conn: psycopg.Connection,
                                                          change: dict[str, Any], error: type, says: str) -> None:
    conn.execute("create table t (id int primary key, x int)")
    conn.execute("insert into t values (1, 1)")
    rowver.connect(db_url).enable("t")
    call: dict[str, Any] = {"table": "t", "ref": "head", "npartitions": 2, "columns": None, **change}
    with pytest.raises(error, match=re.escape(says)):  # raised by the call itself: nothing was computed
        rowver.dask.read_as_of(db_url, call["table"], call["ref"], npartitions=call["npartitions"],
                               columns=call["columns"])


def test_importing_rowver_does_not_import_dask() -> None:
    found = subprocess.run([sys.executable, "-c", "import sys, rowver; print('dask' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
