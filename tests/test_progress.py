"""Progress on long work: the ``progress=`` callbacks of the write layer (frames, dicts, CSV and
Parquet files), export and diff are told increasing counts that end at the real total, enable's
copy its bytes (an estimate of the total, then the copy's size); the CLI draws a bar with counts
and a rate on a terminal only, so scripts see clean stdout and stderr.
And ``rowver load --key``: the key must be the table's, else one error and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import rowver
from rowver.cli import app
from rowver.errors import InvalidInputError

runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})
ROWS = 25_000  # more than two of the write layer's progress steps (10,000 rows)

Calls = list[tuple[int, "int | None"]]


def _recorder() -> tuple[Calls, Any]:
    calls: Calls = []
    return calls, lambda done, total: calls.append((done, total))


def _ends_at(calls: Calls, total: int, *, at_least: int = 2, exact: bool = True) -> None:
    """Increasing counts, at least ``at_least`` calls, the last one (total, total); ``exact``: a
    total told before the end is the real one (else an estimate, which may only grow)."""
    done = [d for d, _ in calls]
    assert len(calls) >= at_least and done == sorted(done) and calls[-1] == (total, total), calls[-4:]
    if exact:
        assert all(t is None or t == total for _, t in calls), calls
    else:
        totals = [t for _, t in calls]
        assert None not in totals and totals == sorted(totals) and all(d <= t for d, t in calls), calls


def _rowver() -> str:
    return str(Path(sys.executable).parent / "rowver")


@pytest.fixture
def items(conn: psycopg.Connection, db_url: str) -> psycopg.Connection:
    conn.execute("create table items (id int primary key, name text, price numeric(8, 2))")
    conn.execute("insert into items select g, 'item ' || g, g / 100.0 from generate_series(1, 100) g")
    with rowver.connect(db_url) as db:
        db.enable("items")
    return conn


def test_writes_of_frames_and_dicts_tell_the_rows_sent(items: psycopg.Connection, db_url: str) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": range(1, ROWS + 1), "name": [f"item {i}" for i in range(1, ROWS + 1)],
                          "price": [i / 100 for i in range(1, ROWS + 1)]})
    with rowver.connect(db_url) as db:
        synced, tell_sync = _recorder()
        with db.changeset(message="frame") as cs:
            result = cs.sync("items", frame, progress=tell_sync)
        assert (result.inserted, result.unchanged) == (ROWS - 100, 100)
        _ends_at(synced, ROWS, at_least=3)
        assert synced[0] == (10_000, ROWS)  # the total is known from the start

        upserted, tell_upsert = _recorder()
        with db.changeset() as cs:
            cs.upsert("items", [{"id": 1, "name": "renamed"}, {"id": ROWS + 1, "name": "new"}], progress=tell_upsert)
        assert upserted == [(2, 2)]
    assert items.execute("select count(*) from items").fetchone() == (ROWS + 1,)


def test_loads_of_csv_and_parquet_files_tell_bytes_and_rows(items: psycopg.Connection, db_url: str,
                                                           tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = tmp_path / "items.csv"
    text.write_text("id,name,price\n" + "".join(f"{i},{'x' * 40} {i},{i}.25\n" for i in range(1, 50_001)))
    parquet = tmp_path / "items.parquet"
    pq.write_table(pa.table({"id": list(range(1, ROWS + 1)), "name": [f"p {i}" for i in range(1, ROWS + 1)]}),
                   parquet, row_group_size=5_000)
    with rowver.connect(db_url) as db:
        read, tell_read = _recorder()
        with db.changeset() as cs:
            assert cs.load("items", text, progress=tell_read).inserted == 50_000 - 100
        size = text.stat().st_size
        assert size > 2 << 20  # (read a MiB at a time: several calls)
        _ends_at(read, size, at_least=3)

        sent, tell_sent = _recorder()
        with db.changeset() as cs:
            cs.load("items", parquet, mode="upsert", progress=tell_sent)
        _ends_at(sent, ROWS, at_least=3)
        assert sent[0] == (10_000, ROWS)
    assert items.execute("select name from items where id = 7").fetchone() == ("p 7",)


def test_rowver_load_draws_a_bar_on_a_terminal_only(items: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    from terminal import stderr_on_terminal

    text = tmp_path / "items.csv"
    text.write_text("id,name\n" + "".join(f"{i},n {i}\n" for i in range(1, ROWS + 1)))
    done, drawn = stderr_on_terminal([_rowver(), "load", "items", str(text), "--mode", "upsert", "--url", db_url])
    assert done.returncode == 0 and "items from items.csv" not in drawn.decode(errors="replace")
    assert b"loading items.csv into items" in drawn
    size = f"{text.stat().st_size / 1000:.1f}".encode()
    assert size + b"/" + size + b" kB" in drawn  # (bytes read of bytes in all: the rate shows on longer loads)
    assert "inserted" in done.stdout and "\x1b" not in done.stdout  # (the bar is on stderr, stdout stays plain)

    text.write_text("id,name\n" + "".join(f"{i},m {i}\n" for i in range(1, ROWS + 1)))
    piped = subprocess.run([_rowver(), "load", "items", str(text), "--mode", "upsert", "--format", "json",
                            "--url", db_url], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
    [row] = json.loads(piped.stdout)
    assert row["updated"] == ROWS


def test_rowver_load_key_must_be_the_tables(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    """--key states the key rows are matched by: the table's own (any order) loads; an unknown
    column, or columns that are not the table's key, are one clear error and nothing is written."""
    conn.execute("create table seats (hall text, seat int, guest text, code text not null unique,"
                 " primary key (hall, seat))")
    conn.execute("insert into seats values ('a', 1, 'ann', 'c1')")
    with rowver.connect(db_url) as db:
        db.enable("seats")
    text = tmp_path / "seats.csv"
    text.write_text("hall,seat,guest,code\na,1,bob,c1\na,2,cy,c2\n")

    def state() -> tuple[Any, ...]:
        return (conn.execute("select array_agg((hall, seat, guest) order by hall, seat)::text from seats").fetchone(),
                conn.execute("select count(*) from rowver.changeset").fetchone())

    before = state()
    for keys, said in ((["nope"], "seats has no column 'nope' (given as the key)"),
                       (["code"], "seats is versioned by the key (hall, seat), not (code)"),
                       (["hall"], "seats is versioned by the key (hall, seat), not (hall)"),
                       (["hall", "seat", "seat"], "not (hall, seat, seat)")):
        result = runner.invoke(app, ["load", "seats", str(text), "--mode", "upsert",
                                     *[a for k in keys for a in ("--key", k)], "--url", db_url])
        assert result.exit_code == 1, (keys, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], (keys, result.stderr)
    assert state() == before
    with rowver.connect(db_url) as db, pytest.raises(InvalidInputError, match="not \\(code\\)"):
        with db.changeset() as cs:
            cs.load("seats", text, key=["code"])
    assert state() == before

    result = runner.invoke(app, ["load", "seats", str(text), "--mode", "upsert", "--key", "seat", "--key", "hall",
                                 "--url", db_url])
    assert result.exit_code == 0, result.output
    assert "1 inserted, 1 updated" in result.stdout
    assert conn.execute("select array_agg(guest order by seat) from seats").fetchone() == (["bob", "cy"],)


@pytest.mark.parametrize("fmt", ["parquet", "delta", "iceberg"])
def test_exports_tell_the_rows_written(conn: psycopg.Connection, db_url: str, tmp_path: Path, fmt: str) -> None:
    pytest.importorskip({"parquet": "pyarrow", "delta": "deltalake", "iceberg": "pyiceberg"}[fmt])
    conn.execute("create table wide (id int primary key, v int)")
    conn.execute("insert into wide select g, g from generate_series(1, 120000) g")
    with rowver.connect(db_url) as db:
        db.enable("wide")
        written, tell = _recorder()
        result = db.export("wide", tmp_path / "out", format=fmt, progress=tell)
        assert result.rows == 120_000
        _ends_at(written, 120_000, at_least=3)  # (a batch is 50,000 rows)
        assert all(t is None for _, t in written[:-1])  # the total is not guessed

        again, tell_again = _recorder()
        assert not db.export("wide", tmp_path / "out", format=fmt, progress=tell_again).written
        assert again == []  # (exported already: nothing read)
        if fmt == "parquet":
            return
        conn.execute("update wide set v = -v where id <= 7")
        conn.execute("select rowver.publish_head()")
        changed, tell_changed = _recorder()
        assert db.export("wide", tmp_path / "out", format=fmt, progress=tell_changed).changed == 7
        assert changed == [(7, None), (7, 7)]  # only the changed rows are read, and told


def test_rowver_export_draws_a_bar_on_a_terminal_only(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    from terminal import stderr_on_terminal

    conn.execute("create table wide (id int primary key, v int)")
    conn.execute("insert into wide select g, g from generate_series(1, 60000) g")
    with rowver.connect(db_url) as db:
        db.enable("wide")
    done, drawn = stderr_on_terminal([_rowver(), "export", "wide", "--to", str(tmp_path / "a"), "--url", db_url])
    assert done.returncode == 0 and "60,000 rows" in done.stdout
    assert b"exporting wide as of head" in drawn and b"60000/60000" in drawn
    piped = subprocess.run([_rowver(), "export", "wide", "--to", str(tmp_path / "b"), "--url", db_url],
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and "60,000 rows" in piped.stdout


def test_a_diff_tells_the_rows_read(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table wide (id int primary key, v int)")
    conn.execute("insert into wide select g, g from generate_series(1, 30000) g")
    with rowver.connect(db_url) as db:
        first = db.enable("wide")
        conn.execute("update wide set v = -v where id <= 25000")
        db.publish_head()
        read, tell = _recorder()
        frame = db.diff("wide", first, progress=tell)
        assert len(frame) == 25_000 and frame.equals(db.diff("wide", first))
        _ends_at(read, 25_000, at_least=3)
        assert read[0] == (10_000, None)
        with pytest.raises(InvalidInputError, match="progress= is for a whole diff"):
            db.diff("wide", first, chunksize=10, progress=tell)


def test_enable_with_a_copy_tells_the_bytes_copied(conn: psycopg.Connection, db_url: str) -> None:
    """enable's rewrite is one ALTER TABLE, watched from a second connection: (0, the table's size
    before), growing counts, and last the copy's size, which the table then has."""
    size_of = "select pg_total_relation_size(%s::regclass)"
    for name in ("copied", "kept"):
        conn.execute(f"create table {name} (id int primary key, body text)")
        conn.execute(f"insert into {name} select g, repeat('x', 80) from generate_series(1, 100000) g")
    before = conn.execute(size_of, ("copied",)).fetchone()[0]
    with rowver.connect(db_url) as db:
        told, tell = _recorder()
        db.enable("copied", rewrite=True, progress=tell)
        after = conn.execute(size_of, ("copied",)).fetchone()[0]
        assert told[0] == (0, before) and after > before  # (each row now stores its version)
        _ends_at(told, after, exact=False)  # (the copy's rows are wider: the size before is an estimate)
        assert all(d <= before for d, _ in told[:-1])  # (watched, the copy is at most the estimate)

        untold, tell_nothing = _recorder()
        db.enable("kept", rewrite=False, progress=tell_nothing)
        assert untold == []  # no copy, nothing to count
    assert conn.execute("select rowver.stores_version('copied'), rowver.stores_version('kept')").fetchone() == \
        (True, False)


def test_rowver_enable_draws_a_bar_on_a_terminal_only(conn: psycopg.Connection, db_url: str) -> None:
    from terminal import stderr_on_terminal

    for name in ("one", "two"):
        conn.execute(f"create table {name} (id int primary key, body text)")
        conn.execute(f"insert into {name} select g, repeat('x', 80) from generate_series(1, 50000) g")
    done, drawn = stderr_on_terminal([_rowver(), "enable", "one", "--rewrite", "--url", db_url])
    assert done.returncode == 0 and "one is versioned" in done.stdout
    assert b"enabling versioning of one" in drawn and b" MB" in drawn
    piped = subprocess.run([_rowver(), "enable", "two", "--rewrite", "--url", db_url],
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and "two is versioned" in piped.stdout
