"""Staged changesets (issue 22): ``cs.sync(..., stage="name")`` computes a write and keeps it
under a name, writing nothing and taking no version; ``db.diff(table, staged=name)`` (``rowver
diff TABLE --staged NAME``) shows what publishing would do; ``db.publish(name)`` (``rowver
publish NAME``) writes it as one changeset, equal to what the sync would have written then, and
refuses, naming the keys and writing nothing, when a staged key changed underneath since."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

import rowver
from rowver._server import server_url_for
from rowver.cli import app

runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})


@pytest.fixture
def db(conn: psycopg.Connection, db_url: str) -> Iterator[rowver.Database]:
    """items: 10 rows (ids 1..10, price = id), versioned."""
    conn.execute("create table items (id int primary key, name text, price numeric)")
    conn.execute("insert into items select g, 'item ' || g, g from generate_series(1, 10) g")
    conn.execute("select rowver.enable('items')")
    conn.execute("select rowver.publish_head()")
    with rowver.connect(db_url) as database:
        yield database


def snapshot() -> list[dict[str, Any]]:
    """items with 3 repriced, 5 renamed, 10 gone and 11 new."""
    rows = [{"id": i, "name": f"item {i}", "price": i} for i in range(1, 10)]
    rows[2]["price"] = 33
    rows[4]["name"] = "five"
    return [*rows, {"id": 11, "name": "item 11", "price": 11}]


def state(conn: psycopg.Connection, db: rowver.Database) -> tuple[Any, ...]:
    """What staging must leave as it was: head, rows, the log, history, changesets."""
    return (db.head(),
            conn.execute("select array_agg((id, name, price, rv_version) order by id)::text from items").fetchone(),
            conn.execute("select array_agg(version order by version) from rowver.changeset").fetchone(),
            conn.execute("select count(*) from items__history").fetchone(),
            conn.execute("select last_value from rowver.version_seq").fetchone())


def rows_now(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("select id, name, price from items order by id").fetchall()


def test_a_staged_sync_writes_nothing_shows_its_diff_and_publishes_as_one_changeset(
        conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    with db.changeset(message="nightly prices", author="ana") as cs:
        kept = cs.sync("items", snapshot(), stage="nightly")
    assert (kept.inserted, kept.updated, kept.deleted, kept.unchanged) == (1, 2, 1, 7)
    assert kept.stage == "nightly" and kept.version is None and cs.version is None
    assert state(conn, db) == before  # nothing written, no version taken

    diff = db.diff("items", staged="nightly")
    assert [(r.op, r.key["id"], list(r.changed)) for r in diff.itertuples()] == [
        ("changed", 3, ["price"]), ("changed", 5, ["name"]), ("removed", 10, ["id", "name", "price"]), ("added", 11, [])]
    five = diff[diff.op == "changed"].iloc[1]
    assert (five.old_name, five.new_name, int(five.old_price), int(five.new_price)) == ("item 5", "five", 5, 5)
    listed = db.stages()
    assert list(listed.name) == ["nightly"] and list(listed.table) == ["items"]
    assert (int(listed.base[0]), listed.message[0], listed.author[0]) == (before[0], "nightly prices", "ana")

    published = db.publish("nightly")
    assert (published.inserted, published.updated, published.deleted) == (1, 2, 1)
    versions = conn.execute("select version, message, author from rowver.changeset where version > %s",
                            (before[0],)).fetchall()
    assert versions == [(published.version, "nightly prices", "ana")]  # exactly one changeset
    assert db.stages().empty  # a published stage is gone

    # the rows equal what syncing the same snapshot right away writes
    conn.execute("create table twin (id int primary key, name text, price numeric)")
    conn.execute("insert into twin select g, 'item ' || g, g from generate_series(1, 10) g")
    conn.execute("select rowver.enable('twin')")
    with db.changeset() as cs:
        cs.sync("twin", snapshot())
    assert rows_now(conn) == conn.execute("select id, name, price from twin order by id").fetchall()
    assert conn.execute("select count(*) from items__history").fetchone() == \
        conn.execute("select count(*) from twin__history").fetchone()


def test_a_stage_whose_keys_changed_underneath_is_refused_naming_them_and_nothing_is_written(
        conn: psycopg.Connection, db: rowver.Database) -> None:
    with db.changeset() as cs:
        cs.sync("items", snapshot(), stage="nightly")
    conn.execute("update items set price = 300 where id = 3")  # a conflicting write, after staging
    conn.execute("delete from items where id = 10")  # and another
    conn.execute("update items set name = 'untouched by the stage' where id = 1")  # not staged: no conflict
    before = state(conn, db)

    with pytest.raises(rowver.StaleStageError) as refused:
        db.publish("nightly")
    assert refused.value.keys == [{"id": 3}, {"id": 10}] and refused.value.count == 2
    assert refused.value.stage == "nightly" and refused.value.table == "public.items"
    assert '{"id": 3}' in str(refused.value) and '{"id": 10}' in str(refused.value)
    assert state(conn, db) == before  # nothing written, no version taken
    assert list(db.stages().name) == ["nightly"]  # kept, for a look and a decision

    result = runner.invoke(app, ["publish", "nightly", "--url", db.url])  # the CLI says the same, in one line
    assert result.exit_code != 0
    assert '{"id": 3}' in result.output and '{"id": 10}' in result.output and "Traceback" not in result.output

    assert db.unstage("nightly") == "public.items"
    assert db.stages().empty and state(conn, db) == before


def test_a_write_that_commits_while_publish_waits_for_its_row_still_refuses_the_stage(
        conn: psycopg.Connection, db: rowver.Database, db_url: str) -> None:
    """A writer still open when publish first looks, which commits while publish waits for its row
    lock: READ COMMITTED would let publish's update overwrite it; the second look, after publish's
    own writes, sees that writer's version and refuses."""
    with db.changeset() as cs:
        cs.upsert("items", [{"id": 3, "name": "item 3", "price": 33}], stage="reprice")
    failure: list[BaseException] = []
    with psycopg.connect(db_url) as other:
        other.execute("update items set price = 300 where id = 3")  # holds the row lock, uncommitted

        def publish() -> None:
            try:
                with rowver.connect(db_url) as publisher:
                    publisher.publish("reprice")
            except BaseException as exc:  # (reported below)
                failure.append(exc)

        worker = threading.Thread(target=publish)
        worker.start()
        for _ in range(500):  # until publish waits for the row
            if conn.execute("select count(*) from pg_stat_activity where datname = current_database()"
                            " and wait_event_type = 'Lock'").fetchone() == (1,):
                break
            time.sleep(0.01)
        else:
            raise AssertionError("publish never waited for the row lock")
        other.commit()
        worker.join(30)
    assert len(failure) == 1 and isinstance(failure[0], rowver.StaleStageError), failure
    assert failure[0].keys == [{"id": 3}]
    assert conn.execute("select price from items where id = 3").fetchone() == (300,)
    assert list(db.stages().name) == ["reprice"]


def test_a_dry_run_publish_writes_nothing_and_keeps_the_stage(conn: psycopg.Connection, db: rowver.Database) -> None:
    with db.changeset() as cs:
        cs.delete("items", [{"id": 1}, {"id": 2}, {"id": 99}], stage="cleanup")
    before = state(conn, db)
    counted = db.publish("cleanup", dry_run=True)
    assert (counted.deleted, counted.version) == (2, None)
    assert state(conn, db)[1:4] == before[1:4] and list(db.stages().name) == ["cleanup"]
    done = db.publish("cleanup", message="cleanup, reviewed")
    assert done.deleted == 2 and rows_now(conn)[0][0] == 3
    assert conn.execute("select message from rowver.changeset where version = %s",
                        (done.version,)).fetchone() == ("cleanup, reviewed",)


def test_bad_names_an_existing_name_and_an_unknown_stage_are_one_clear_error(
        conn: psycopg.Connection, db: rowver.Database) -> None:
    before = state(conn, db)
    for bad in ("", "1st", "has space", "x" * 101, "semi;colon"):
        with pytest.raises(rowver.InvalidInputError, match="invalid stage name"), db.changeset() as cs:
            cs.sync("items", snapshot(), stage=bad)
    with db.changeset() as cs:
        cs.sync("items", snapshot(), stage="nightly")
    with pytest.raises(rowver.InvalidInputError, match="already exists"), db.changeset() as cs:
        cs.sync("items", snapshot()[:5], stage="nightly")
    with db.changeset() as cs:
        assert cs.sync("items", snapshot()[:5], stage="nightly", replace=True).deleted == 5
    assert db.stages().deleted.tolist() == [5]
    with pytest.raises(rowver.InvalidInputError, match="no stage 'nope'"):
        db.publish("nope")
    with pytest.raises(rowver.InvalidInputError, match="no stage 'nope'"):
        db.unstage("nope")
    with pytest.raises(rowver.InvalidInputError, match="no stage 'nope'"):
        db.diff("items", staged="nope")
    with pytest.raises(rowver.InvalidInputError, match="not both"):
        db.diff("items", 1, staged="nightly")
    with pytest.raises(rowver.InvalidInputError, match="stage='name'"), db.changeset() as cs:
        cs.sync("items", snapshot(), replace=True)
    assert state(conn, db) == before
    with pytest.raises(rowver.UnsupportedError, match="before this changeset writes"), db.changeset() as cs:
        cs.upsert("items", [{"id": 1, "name": "one", "price": 1}])
        cs.sync("items", snapshot(), stage="late")
    assert state(conn, db)[1:4] == before[1:4]  # (the upsert's version number is burnt)


def test_guards_are_judged_when_staging(conn: psycopg.Connection, db: rowver.Database) -> None:
    with pytest.raises(rowver.CheckFailedError, match="max_deleted"), db.changeset() as cs:
        cs.sync("items", snapshot()[:3], stage="too-much", max_deleted=2)
    assert db.stages().empty


@pytest.fixture
def roles(conn: psycopg.Connection, db: rowver.Database, db_url: str) -> Iterator[dict[str, str]]:
    """Three roles: a writer of items, a reader of items, and one with nothing on it."""
    made = {kind: f"rv_stage_{kind}_{uuid.uuid4().hex[:6]}" for kind in ("writer", "reader", "stranger")}
    for role in made.values():
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    conn.execute(sql.SQL("grant select, insert, update, delete on items to {}").format(sql.Identifier(made["writer"])))
    conn.execute(sql.SQL("grant select on items to {}").format(sql.Identifier(made["reader"])))
    conn.execute("select rowver.refresh('items')")  # mirrors the grants onto history
    dbname = str(conninfo_to_dict(db_url)["dbname"])
    try:
        yield {kind: server_url_for(make_conninfo(db_url, user=role), dbname) for kind, role in made.items()} \
            | {f"{kind}_role": role for kind, role in made.items()}
    finally:
        for role in made.values():
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_role_without_write_rights_can_neither_stage_nor_publish_and_a_stranger_cannot_read_it(
        conn: psycopg.Connection, db: rowver.Database, roles: dict[str, str]) -> None:
    with rowver.connect(roles["reader"]) as reader, pytest.raises(rowver.PermissionDeniedError, match="may not"), \
            reader.changeset() as cs:
        cs.sync("items", snapshot(), stage="by-reader")
    with rowver.connect(roles["writer"]) as writer, writer.changeset(message="by the writer") as cs:
        cs.sync("items", snapshot(), stage="nightly")
    before = state(conn, db)
    with rowver.connect(roles["reader"]) as reader:
        assert len(reader.diff("items", staged="nightly")) == 4  # it may read items, so it may look
        with pytest.raises(rowver.PermissionDeniedError):
            reader.publish("nightly")
        with pytest.raises(rowver.PermissionDeniedError):
            reader.unstage("nightly")
    with rowver.connect(roles["stranger"]) as stranger:
        with pytest.raises(rowver.PermissionDeniedError):
            stranger.diff("items", staged="nightly")
        assert stranger.conn.execute("select count(*) from rowver.staged_row").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.conn.execute("insert into rowver.staged_row values ('nightly', 'delete', '{\"id\": 1}', null)")
        with pytest.raises(rowver.PermissionDeniedError):
            stranger.publish("nightly")
    assert state(conn, db) == before and list(db.stages().name) == ["nightly"]
    with rowver.connect(roles["writer"]) as writer:
        assert writer.publish("nightly").updated == 2
    assert conn.execute("select db_role::text from rowver.changeset order by version desc limit 1").fetchone() == \
        (roles["writer_role"],)


def test_a_stage_grants_nothing_a_reader_lacks_even_when_the_writer_staged_it(
        conn: psycopg.Connection, db: rowver.Database, roles: dict[str, str]) -> None:
    """Publishing writes as the publisher: a role that may read the table but lost write rights
    cannot publish, even a stage it made while it had them."""
    conn.execute(sql.SQL("grant insert, update, delete on items to {}").format(sql.Identifier(roles["reader_role"])))
    with rowver.connect(roles["reader"]) as reader, reader.changeset() as cs:
        cs.sync("items", snapshot(), stage="mine")
    conn.execute(sql.SQL("revoke insert, update, delete on items from {}").format(sql.Identifier(roles["reader_role"])))
    before = state(conn, db)
    with rowver.connect(roles["reader"]) as reader, pytest.raises(rowver.PermissionDeniedError):
        reader.publish("mine")
    assert state(conn, db)[1:] == before[1:] and list(db.stages().name) == ["mine"]


def test_the_cli_shows_publishes_lists_and_drops_stages(conn: psycopg.Connection, db: rowver.Database) -> None:
    with db.changeset(message="nightly") as cs:
        cs.sync("items", snapshot(), stage="nightly")
        cs.upsert("items", [{"id": 1, "name": "one", "price": 1}], stage="spare")
    shown = runner.invoke(app, ["diff", "items", "--staged", "nightly", "--url", db.url])
    assert shown.exit_code == 0, shown.output
    assert "stage nightly" in shown.output and "1 added, 1 removed, 2 changed" in shown.output
    as_json = runner.invoke(app, ["diff", "items", "--staged", "nightly", "--format", "json", "--url", db.url])
    assert [(r["op"], r["key"]) for r in json.loads(as_json.output)] == [
        ("changed", {"id": 3}), ("changed", {"id": 5}), ("removed", {"id": 10}), ("added", {"id": 11})]
    listed = runner.invoke(app, ["stages", "--format", "json", "--url", db.url])
    assert [s["name"] for s in json.loads(listed.output)] == ["nightly", "spare"]
    dry = runner.invoke(app, ["publish", "nightly", "--dry-run", "--url", db.url])
    assert dry.exit_code == 0 and "would" in dry.output and rows_now(conn)[2] == (3, "item 3", 3)
    done = runner.invoke(app, ["publish", "nightly", "--message", "reviewed", "--url", db.url])
    assert done.exit_code == 0, done.output
    assert rows_now(conn)[2] == (3, "item 3", 33)
    assert conn.execute("select message from rowver.changeset order by version desc limit 1").fetchone() == ("reviewed",)
    dropped = runner.invoke(app, ["unstage", "spare", "--url", db.url])
    assert dropped.exit_code == 0 and db.stages().empty
    again = runner.invoke(app, ["unstage", "spare", "--url", db.url])
    assert again.exit_code != 0 and "no stage 'spare'" in again.output and "Traceback" not in again.output
    empty = runner.invoke(app, ["diff", "items", "--url", db.url])
    assert empty.exit_code != 0 and "REF_A" in empty.output


def test_on_a_table_with_row_level_security_only_the_stager_and_the_owner_read_a_stage(
        conn: psycopg.Connection, db: rowver.Database, roles: dict[str, str]) -> None:
    """A tenant never reads another tenant's staged rows: SELECT on a table under row-level
    security does not open its stages."""
    conn.execute("alter table items enable row level security")
    conn.execute("create policy everyone on items using (true)")
    conn.execute("select rowver.refresh('items')")
    with rowver.connect(roles["writer"]) as writer, writer.changeset() as cs:
        cs.sync("items", snapshot(), stage="nightly")
    with rowver.connect(roles["reader"]) as reader:
        with pytest.raises(rowver.PermissionDeniedError, match="may not read stage"):
            reader.diff("items", staged="nightly")
        assert reader.conn.execute("select count(*) from rowver.staged_row").fetchone() == (0,)
    with rowver.connect(roles["writer"]) as writer:
        assert len(writer.diff("items", staged="nightly", columns=["price"])) == 3  # 3 repriced, 10 gone, 11 new
    assert len(db.diff("items", staged="nightly")) == 4  # the owner


def test_rowver_load_stage_keeps_a_file_for_a_look(conn: psycopg.Connection, db: rowver.Database,
                                                  tmp_path: Any) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,name,price\n" + "".join(f"{r['id']},{r['name']},{r['price']}\n" for r in snapshot()))
    before = state(conn, db)
    kept = runner.invoke(app, ["load", "items", str(path), "--stage", "from-file", "--url", db.url])
    assert kept.exit_code == 0, kept.output
    assert "staged as from-file, nothing written (1 inserted, 2 updated, 1 deleted, 7 unchanged)" in kept.output
    assert state(conn, db) == before
    again = runner.invoke(app, ["load", "items", str(path), "--stage", "from-file", "--url", db.url])
    assert again.exit_code != 0 and "already exists" in again.output
    assert runner.invoke(app, ["load", "items", str(path), "--stage", "from-file", "--replace",
                               "--url", db.url]).exit_code == 0
    assert db.publish("from-file").version is not None
    assert rows_now(conn) == [(r["id"], r["name"], r["price"]) for r in snapshot()]
