"""Guarded changesets: a write call's limits (max_deleted, max_changed, expect_rows) and a
changeset's checks (rowver.Check SQL conditions, functions of its counts) are judged inside its
transaction before the commit. A refusal is one CheckFailedError naming the check, the counts and
some keys, and changes nothing: head, rows, the log and history stay as they were. A passing
guarded changeset commits once; a dry run writes nothing; bad guard values fail before any write."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import rowver
from rowver.cli import app

runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})


@pytest.fixture
def db(conn: psycopg.Connection, db_url: str) -> Iterator[rowver.Database]:
    """items: 20 rows (ids 1..20, price = id), versioned."""
    conn.execute("create table items (id int primary key, name text, price numeric)")
    conn.execute("insert into items select g, 'item ' || g, g from generate_series(1, 20) g")
    conn.execute("select rowver.enable('items')")
    with rowver.connect(db_url) as database:
        yield database


def rows(n: int, price: int = 1) -> list[dict[str, Any]]:
    """A snapshot of items with ids 1..n."""
    return [{"id": i, "name": f"item {i}", "price": i * price} for i in range(1, n + 1)]


def log(conn: psycopg.Connection) -> list[int]:
    """The versions rowver.log lists, newest first."""
    return [r[0] for r in conn.execute("select version from rowver.log(1000)").fetchall()]


def same_but_head(now: tuple[Any, ...], before: tuple[Any, ...]) -> bool:
    """Unchanged, but for the live head: a refusal after the changeset wrote (a check at commit)
    rolls back a version number it took; no changeset has it, and reads at it see the old rows."""
    return now[1:] == before[1:] and now[0] >= before[0]


def state(conn: psycopg.Connection, db: rowver.Database) -> tuple[Any, ...]:
    """Everything a refusal must leave as it was: head, rows, the log, history, the sequence's use."""
    return (db.head(),
            conn.execute("select array_agg((id, name, price) order by id)::text from items").fetchone(),
            log(conn),
            conn.execute("select count(*) from items__history").fetchone(),
            conn.execute("select count(*) from rowver.changeset").fetchone())


def test_a_sync_deleting_more_than_max_deleted_is_refused_and_changes_nothing(
        conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    with pytest.raises(rowver.CheckFailedError) as refused, db.changeset(message="feed") as cs:
        cs.sync("items", rows(10), max_deleted=0.05)  # would delete 10 of 20 rows
    error = refused.value
    assert error.check == "max_deleted=0.05" and error.table == "public.items" and error.sqlstate == "RV001"
    assert error.counts == {"inserted": 0, "updated": 0, "deleted": 10, "unchanged": 10,
                            "rows_before": 20, "rows_after": 10}
    assert error.sample_keys == [{"id": i} for i in range(11, 16)]
    message = str(error)
    assert "check max_deleted=0.05 refused the sync of public.items: 10 rows deleted, more than 5% of the 20 rows" in message
    assert '0 inserted, 0 updated, 10 deleted, 10 unchanged; 20 rows before, 10 after' in message
    assert 'deleted keys include {"id": 11}, {"id": 12}, {"id": 13}, {"id": 14}, {"id": 15};' in message
    assert "nothing written" in message and "\n" not in message
    assert isinstance(error, rowver.RowverError)
    assert state(conn, db) == before

    # a number of rows, not a fraction: 1 is one row (1.0 would be all of them)
    with pytest.raises(rowver.CheckFailedError, match="19 rows deleted, more than 1 rows"), db.changeset() as cs:
        cs.sync("items", rows(1), max_deleted=1)
    assert state(conn, db) == before


def test_a_passing_guarded_sync_commits_exactly_one_changeset(conn: psycopg.Connection, db: rowver.Database) -> None:
    before_log = log(conn)
    with db.changeset(message="trim") as cs:
        result = cs.sync("items", rows(19, price=2), max_deleted=0.05, max_changed=1.0, expect_rows=(19, None))
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == (0, 19, 1, 0)
    assert log(conn) == [result.version, *before_log]
    assert result.version == db.head()
    assert conn.execute("select count(*), sum(price) from items").fetchone() == (19, 380)
    # at the limit is allowed: 1 of 19 deleted is under 5.3%, 1 row is at max_deleted=1
    with db.changeset() as cs:
        assert cs.sync("items", rows(18, price=2), max_deleted=1).deleted == 1


def test_max_changed_and_expect_rows_refuse_with_their_keys(conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    with pytest.raises(rowver.CheckFailedError) as refused, db.changeset() as cs:
        cs.upsert("items", rows(20, price=3)[:12], max_changed=0.5)  # updates 12 of 20
    assert refused.value.check == "max_changed=0.5"
    assert "12 rows changed, more than 50% of the 20 rows it held before" in str(refused.value)
    assert refused.value.sample_keys == [{"id": i} for i in range(1, 6)]

    with pytest.raises(rowver.CheckFailedError) as refused, db.changeset() as cs:
        cs.delete("items", [{"id": 1}, {"id": 2}], expect_rows=(19, 25))
    assert refused.value.check == "expect_rows=19:25"
    assert "18 rows after it, outside 19:25" in str(refused.value)
    assert refused.value.sample_keys == [{"id": 1}, {"id": 2}]  # too few rows: the deleted keys

    with pytest.raises(rowver.CheckFailedError) as refused, db.changeset() as cs:
        cs.insert("items", [{"id": 21, "name": "new", "price": 1}], expect_rows=(None, 20))
    assert refused.value.counts["rows_after"] == 21
    assert refused.value.sample_keys == [{"id": 21}]  # too many: the keys it wrote
    assert state(conn, db) == before


def test_a_caught_refusal_still_rolls_the_whole_changeset_back(conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    with pytest.raises(rowver.CheckFailedError), db.changeset() as cs:
        cs.upsert("items", [{"id": 99, "name": "earlier call", "price": 0}])
        try:
            cs.sync("items", rows(2), max_deleted=0.5)
        except rowver.CheckFailedError:
            pass  # swallowed: the changeset must still not commit its first call
        with pytest.raises(rowver.RowverError, match="refused by check max_deleted=0.5"):
            cs.upsert("items", [{"id": 98, "name": "later call", "price": 0}])
    assert same_but_head(state(conn, db), before)


def test_checks_judge_the_rows_a_changeset_wrote_before_it_commits(conn: psycopg.Connection,
                                                                  db: rowver.Database) -> None:
    conn.execute("create table notes (id int primary key, body text)")
    conn.execute("select rowver.enable('notes')")
    conn.execute("update items set price = -1 where id = 3")  # an old bad row: not this changeset's
    before = state(conn, db)
    priced = rowver.Check("items", "price >= 0", name="prices are not negative")
    with pytest.raises(rowver.CheckFailedError) as refused, db.changeset(checks=[priced]) as cs:
        cs.upsert("items", [{"id": 5, "name": "x", "price": -5}, {"id": 30, "name": "y", "price": None},
                            {"id": 31, "name": "z", "price": 7}])
        cs.upsert("notes", [{"id": 1, "body": "hi"}])
    error = refused.value
    assert error.check == "prices are not negative" and error.table == "items"
    assert error.sample_keys == [{"id": 5}, {"id": 30}]  # false or NULL both fail; id 3 is not judged
    assert "2 of the rows it wrote to items fail it (2 inserted, 1 updated" in str(error)
    assert same_but_head(state(conn, db), before)
    assert conn.execute("select count(*) from notes").fetchone() == (0,)

    # a function of the counts per table (named as PostgreSQL prints them)
    seen: dict[str, Any] = {}

    def no_deletes(effect: dict[str, rowver.WriteResult]) -> bool:
        seen.update(effect)
        return all(r.deleted == 0 for r in effect.values())

    with pytest.raises(rowver.CheckFailedError, match="check no_deletes refused the changeset"), \
            db.changeset(checks=[priced, no_deletes]) as cs:
        cs.delete("public.items", [{"id": 1}])
        cs.upsert("items", [{"id": 2, "name": "two", "price": 2}])
    assert seen["items"].deleted == 1 and seen["items"].updated == 1
    assert same_but_head(state(conn, db), before)

    with db.changeset(message="checked", checks=[priced, no_deletes]) as cs:
        cs.upsert("items", [{"id": 40, "name": "forty", "price": 40}])
    assert conn.execute("select message from rowver.log(1)").fetchone() == ("checked",)
    assert log(conn)[1:] == before[2]


def test_a_check_runs_read_only_and_a_bad_one_is_a_clear_error(conn: psycopg.Connection,
                                                               db: rowver.Database) -> None:
    conn.execute("create sequence probe_seq")
    before = state(conn, db)
    writes = rowver.Check("items", "nextval('probe_seq') > 0")
    with pytest.raises(rowver.RowverError, match="read-only transaction.*in check") as refused, \
            db.changeset(checks=[writes]) as cs:
        cs.upsert("items", [{"id": 50, "name": "x", "price": 1}])
    assert refused.value.sqlstate == "25006"
    with pytest.raises(rowver.UnknownTableError, match="no_such_column.*in check"), \
            db.changeset(checks=[rowver.Check("items", "no_such_column > 0")]) as cs:
        cs.upsert("items", [{"id": 50, "name": "x", "price": 1}])
    with pytest.raises(rowver.NotVersionedError), db.changeset(checks=[rowver.Check("probe_seq", "true")]):
        pass
    assert same_but_head(state(conn, db), before)
    assert conn.execute("select last_value, is_called from probe_seq").fetchone() == (1, False)


def test_a_dry_run_writes_nothing_and_still_judges(conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    with db.changeset(dry_run=True, checks=[rowver.Check("items", "price > 0")]) as cs:
        result = cs.sync("items", rows(15), max_deleted=0.25)
    assert (result.inserted, result.deleted, result.unchanged) == (0, 5, 15)
    with pytest.raises(rowver.CheckFailedError), db.changeset(dry_run=True) as cs:
        cs.sync("items", rows(10), max_deleted=0.25)
    assert state(conn, db)[1:] == before[1:]  # (a dry run burns a version number, never a changeset)


@pytest.mark.parametrize("guard", [
    {"max_deleted": -1}, {"max_deleted": 1.5}, {"max_deleted": math.nan}, {"max_deleted": -0.1},
    {"max_deleted": True}, {"max_changed": "0.05"}, {"expect_rows": (5, 1)}, {"expect_rows": (1,)},
    {"expect_rows": (-1, 2)}, {"expect_rows": (1.5, 2)}, {"expect_rows": 10}, {"expect_rows": (None, False)},
])
def test_bad_guard_values_fail_before_anything_is_written(conn: psycopg.Connection, db: rowver.Database,
                                                          guard: dict[str, Any]) -> None:
    before = state(conn, db)
    with pytest.raises(rowver.InvalidInputError) as bad, db.changeset() as cs:
        cs.sync("items", rows(3), **guard)
    assert next(iter(guard)) in str(bad.value)
    assert state(conn, db) == before
    with pytest.raises(rowver.InvalidInputError), db.changeset() as cs:  # after another call: all rolled back
        cs.upsert("items", [{"id": 70, "name": "earlier", "price": 1}])
        cs.sync("items", rows(3), **guard)
    assert same_but_head(state(conn, db), before)


def test_bad_checks_fail_before_anything_is_written(conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    bad_calls: list[Callable[[], object]] = [
        lambda: rowver.Check("items", ""), lambda: rowver.Check("items", "true; drop table items"),
        lambda: rowver.Check("", "true"), lambda: db.changeset(checks="price > 0"),  # type: ignore[arg-type]
        lambda: db.changeset(checks=[42])]  # type: ignore[list-item]
    for bad in bad_calls:
        with pytest.raises(rowver.InvalidInputError):
            bad()
    assert state(conn, db) == before


def test_rowver_load_with_guards(conn: psycopg.Connection, db: rowver.Database, db_url: str,
                                 tmp_path: Path) -> None:
    """A refused load prints one error line, exits 1 and writes nothing; a passing one loads."""
    few = tmp_path / "few.csv"
    few.write_text("id,name,price\n" + "".join(f"{i},item {i},{i}\n" for i in range(1, 11)))
    before = state(conn, db)

    def load(*args: str) -> Any:
        return runner.invoke(app, ["load", "items", str(few), *args, "--url", db_url])

    for args, said in [(["--max-deleted", "0.05"], "check max_deleted=0.05 refused the sync of public.items"),
                       (["--max-deleted", "9"], "10 rows deleted, more than 9 rows"),
                       (["--max-changed", "5%"], "check max_changed=0.05"),
                       (["--expect-rows", "15:"], "10 rows after it, outside 15:"),
                       (["--max-deleted", "0.05", "--dry-run"], "check max_deleted=0.05"),
                       (["--max-deleted", "-1"], "cannot be negative"),
                       (["--max-deleted", "1.5"], "between 0 and 1"),
                       (["--max-deleted", "nan"], "between 0 and 1"),
                       (["--max-changed", "many"], "--max-changed takes a number of rows"),
                       (["--expect-rows", "5:1"], "lo 5 is above hi 1"),
                       (["--expect-rows", "5"], "--expect-rows takes LO:HI")]:
        result = load("--yes", *args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], (args, result.stderr)
        assert "Traceback" not in result.output
    assert state(conn, db) == before

    result = load("--yes", "--max-deleted", "50%", "--expect-rows", "10:10")
    assert result.exit_code == 0, result.output
    assert "0 inserted, 0 updated, 10 deleted, 10 unchanged" in result.stdout
    assert conn.execute("select count(*) from items").fetchone() == (10,)
    assert log(conn)[1:] == before[2]  # exactly one changeset more
