"""The rowver command: every command through typer's runner on a real server, its errors
(message and exit status), nothing half-done after a failure, and the installed console
script end to end, including `rowver demo` on a fresh embedded server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

import rowver
from rowver import _output
from rowver._server import embedded_info, stop_embedded
from rowver.cli import app
from rowver.errors import InvalidInputError

runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})


def rv(url: str | None, *args: str, code: int = 0) -> Result:
    """Run `rowver ARGS --url URL` and check its exit status."""
    result = runner.invoke(app, [*args, *(["--url", url] if url else [])])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def rv_json(url: str, *args: str) -> Any:
    return json.loads(rv(url, *args, "--format", "json").stdout)


def error(result: Result) -> str:
    """The one error line on stderr."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def shop(conn: psycopg.Connection) -> psycopg.Connection:
    """customers (versioned, at version 1; one update makes version 2) and lines (composite key)."""
    conn.execute("""create table customers (id int primary key, name text not null, city text,
                    balance numeric(20, 2), photo bytea, seen timestamptz, score float8)""")
    conn.execute("""insert into customers values
                    (1, 'Ada', 'London', 10.50, '\\x00ff', '2026-01-02 03:04:05+00', 1.5),
                    (2, 'Alan', 'Manchester', 12345678901234.01, null, null, 'NaN'),
                    (3, 'Grace', 'Arlington', 0, null, null, null)""")
    conn.execute("select rowver.enable('customers')")
    conn.execute("update customers set city = 'Lisbon' where id = 1")
    conn.execute("create table lines (order_id int, line int, qty int, primary key (order_id, line))")
    conn.execute("insert into lines values (1, 1, 5), (1, 2, 7)")
    conn.execute("select rowver.enable('lines')")
    conn.execute("update lines set qty = 6 where order_id = 1 and line = 2")
    conn.execute("select rowver.publish_head()")
    return conn


def versioned(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("select relid::text from rowver.versioned order by 1")]


def changesets(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("select version from rowver.changeset order by 1")]


# -- the app --------------------------------------------------------------------------------


COMMANDS = ("init", "enable", "disable", "refresh", "ddl", "status", "log", "show", "history", "diff",
            "changes", "revert", "truncate", "tag", "tags", "check", "prune", "erase", "demo")


def test_help_lists_every_command() -> None:
    out = rv(None, "--help").stdout
    for command in COMMANDS:
        assert f" {command} " in out


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups if g.name}
    assert registered >= set(COMMANDS)
    missing = [c for c in sorted(registered) if f"`rowver {c}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_takes_url_and_data_commands_take_format() -> None:
    data = {"status", "log", "show", "history", "diff", "changes", "revert", "tags", "check"}
    for command in COMMANDS:
        out = rv(None, command, "--help").stdout
        assert "--url" in out and "ROWVER_URL" in out, command
        assert ("--format" in out) == (command in data), command


def test_json_help_documents_the_encodings() -> None:
    assert "base64" in rv(None, "show", "--help").stdout


# -- catalog and schema -----------------------------------------------------------------------


def test_init_installs_the_catalog(bare_url: str) -> None:
    result = rv(bare_url, "status", code=1)
    assert "rowver init" in error(result)
    out = rv(bare_url, "init").stdout
    assert "rowver catalog 2 is installed" in out
    assert "No table is versioned yet" in rv(bare_url, "status").stdout
    assert "installed" in rv(bare_url, "init").stdout  # idempotent


def test_enable_disable_and_ddl(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table items (id int primary key, name text)")
    conn.execute("insert into items values (1, 'one')")
    script = rv(db_url, "ddl", "items").stdout
    assert "items__history" in script and script.rstrip().endswith(";")
    assert rv(db_url, "enable", "items", "--sql").stdout == script
    assert versioned(conn) == []  # --sql changes nothing

    assert "items is versioned; its current rows are version 1" in rv(db_url, "enable", "items").stdout
    assert versioned(conn) == ["items"]
    assert conn.execute("select rv_version from items").fetchone() == (1,)

    drop = rv(db_url, "disable", "items", "--drop-history", "--sql").stdout
    assert "drop table if exists public.items__history" in drop
    assert "drop table" not in rv(db_url, "disable", "items", "--dry-run").stdout  # history is kept by default
    assert versioned(conn) == ["items"]
    assert "no longer versioned; its history is dropped" in rv(db_url, "disable", "items", "--drop-history").stdout
    assert versioned(conn) == []
    assert conn.execute("select to_regclass('items__history')").fetchone() == (None,)
    assert conn.execute("select * from items").fetchall() == [(1, "one")]


def test_enable_options_and_keep_history(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table codes (code text not null, note text, seen int)")
    conn.execute("create unique index on codes (code)")
    rv(db_url, "enable", "codes", "--key", "code", "--no-triggers", "--ignore", "seen")
    [row] = rv_json(db_url, "status")
    assert (row["table_name"], row["key_columns"], row["triggers"], row["ignore_columns"]) == \
        ("public.codes", ["code"], False, ["seen"])
    assert "its history table is kept" in rv(db_url, "disable", "codes").stdout
    assert conn.execute("select to_regclass('codes__history')::text").fetchone() == ("codes__history",)


def test_dry_run_changes_nothing(conn: psycopg.Connection, db_url: str) -> None:
    """--dry-run on revert, truncate, prune and erase: the counts they would change, and no row,
    history row, changeset or published head moves. (The live head may pass the version numbers
    a dry run burnt, as after any rolled-back write: reads as of it are the same.)"""
    conn.execute("create table stock (id int primary key, qty int)")
    conn.execute("insert into stock select g, g from generate_series(1, 5) g")
    rv(db_url, "enable", "stock")
    rv(db_url, "tag", "full")
    conn.execute("delete from stock where id > 3")
    conn.execute("update stock set qty = 0 where id = 1")
    conn.execute("select rowver.publish_head()")

    def state() -> tuple[object, ...]:
        return (conn.execute("select array_agg((id, qty, rv_version) order by id)::text from stock").fetchone(),
                conn.execute("select count(*) from stock__history").fetchone(),
                conn.execute("select count(*), max(version) from rowver.changeset").fetchone(),
                conn.execute("select head from rowver.head_mark").fetchone())

    before = state()
    out = rv(db_url, "revert", "stock", "--to", "full", "--dry-run").stdout
    assert "would insert 2, update 1 and delete 0 row(s) (dry run: nothing changed)" in out
    [row] = rv_json(db_url, "revert", "stock", "--to", "full", "--dry-run")
    assert (row["inserted"], row["updated"], row["deleted"], row["version"]) == (2, 1, 0, None)
    assert "3 row(s) would be deleted (dry run" in rv(db_url, "truncate", "stock", "--dry-run").stdout
    assert "would be erased (dry run" in rv(db_url, "erase", "stock", "1", "--dry-run").stdout
    assert "would be removed (dry run" in rv(db_url, "prune", "stock", "--before", "head", "--dry-run").stdout
    assert state() == before
    # and without --dry-run (no terminal, so no question) they act
    assert "3 row(s) deleted, on record" in rv(db_url, "truncate", "stock").stdout
    assert conn.execute("select count(*) from stock").fetchone() == (0,)


def test_destructive_commands_ask_on_a_terminal(conn: psycopg.Connection, db_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """At a terminal, a command that deletes or drops asks first: 'n' changes nothing, --yes skips it."""
    from rowver.cli import _common

    conn.execute("create table bins (id int primary key)")
    conn.execute("insert into bins values (1), (2)")
    rv(db_url, "enable", "bins")
    monkeypatch.setattr(_common, "interactive", lambda: True)
    for args in (["truncate", "bins"], ["erase", "bins", "1"], ["prune", "bins", "--before", "head"],
                 ["revert", "bins", "--to", "head"], ["disable", "bins", "--drop-history"]):
        said = runner.invoke(app, [*args, "--url", db_url], input="n\n")
        assert said.exit_code == 1 and "?" in said.output, (args, said.output)
    assert conn.execute("select count(*) from bins").fetchone() == (2,)
    assert versioned(conn) == ["bins"]
    said = runner.invoke(app, ["truncate", "bins", "--yes", "--url", db_url])
    assert said.exit_code == 0 and "2 row(s) deleted" in said.output


# -- reading ------------------------------------------------------------------------------------


def test_status(shop: psycopg.Connection, db_url: str) -> None:
    out = rv(db_url, "status").stdout
    assert "customers" in out and "lines" in out
    assert "head: 4" in out
    assert "in-flight writers: none" in out
    rows = {r["table_name"]: r for r in rv_json(db_url, "status")}
    assert rows["public.customers"]["current_rows"] == 3
    assert rows["public.customers"]["history_rows"] == 1
    assert rows["public.customers"]["head"] == 4
    assert rows["public.customers"]["oldest_writer_version"] is None


def test_status_names_the_oldest_in_flight_writer(shop: psycopg.Connection, db_url: str) -> None:
    with psycopg.connect(db_url) as writer:  # not autocommit: the transaction stays open
        writer.execute("update customers set city = 'Paris' where id = 2")
        out = rv(db_url, "status").stdout
        assert f"oldest in-flight writer: version 5, pid {writer.info.backend_pid}, started" in out
        assert "head: 4" in out
        [row, _] = rv_json(db_url, "status")
        assert (row["oldest_writer_version"], row["oldest_writer_pid"]) == (5, writer.info.backend_pid)
        writer.rollback()


def test_log(shop: psycopg.Connection, db_url: str) -> None:
    with rowver.connect(db_url) as db, db.changeset(message="fix Grace", author="ops") as cs:
        cs.upsert("customers", [{"id": 3, "city": "New York"}])
    entries = rv_json(db_url, "log")
    assert [e["version"] for e in entries] == [5, 4, 3, 2, 1]
    assert (entries[0]["message"], entries[0]["author"], entries[0]["tables"], entries[0]["rows"]) == \
        ("fix Grace", "ops", ["public.customers"], 1)
    assert [e["version"] for e in rv_json(db_url, "log", "--limit", "2")] == [5, 4]
    assert [e["version"] for e in rv_json(db_url, "log", "--table", "lines")] == [4, 3]
    out = rv(db_url, "log", "-n", "1").stdout
    assert "fix Grace" in out and "ops" in out and "enable" not in out


def test_show_formats(shop: psycopg.Connection, db_url: str) -> None:
    rows = rv_json(db_url, "show", "customers")
    assert rows[0] == {"id": 1, "name": "Ada", "city": "Lisbon", "balance": "10.50", "photo": "AP8=",
                       "seen": "2026-01-02T03:04:05+00:00", "score": 1.5, "rv_version": 2}
    assert rows[1]["balance"] == "12345678901234.01"  # exact
    assert rows[1]["score"] is None                   # NaN
    assert rows[2]["photo"] is None
    csv = rv(db_url, "show", "customers", "--format", "csv").stdout.splitlines()
    assert csv[0] == "id,name,city,balance,photo,seen,score,rv_version"
    assert csv[1] == "1,Ada,Lisbon,10.50,AP8=,2026-01-02T03:04:05+00:00,1.5,2"
    assert csv[3] == "3,Grace,Arlington,0.00,,,,1"
    table = rv(db_url, "show", "customers").stdout
    assert "Lisbon" in table and "12345678901234.01" in table
    assert "customers as of head (version 4): 3 row(s)" in table


def test_show_as_of_with_filters(shop: psycopg.Connection, db_url: str) -> None:
    assert rv_json(db_url, "show", "customers", "--at", "1", "--where", "id = 1")[0]["city"] == "London"
    rows = rv_json(db_url, "show", "customers", "--columns", "name, city", "--order-by", "city",
                   "--where", "balance > 1", "--limit", "1")
    assert rows == [{"name": "Ada", "city": "Lisbon"}]
    out = rv(db_url, "show", "customers", "--at", "1", "--where", "city like 'L%'").stdout
    assert "London" in out and "Manchester" not in out and "version 1: 1 row(s)" in out
    # a trailing comment cannot swallow the ORDER BY and LIMIT that follow
    assert len(rv_json(db_url, "show", "customers", "--where", "true -- all", "--limit", "2")) == 2


def test_show_where_is_read_only_and_one_statement(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("create table audit (n int)")
    shop.execute("create function noisy() returns boolean language sql as "
                 "'insert into audit values (1); select true'")
    result = rv(db_url, "show", "customers", "--where", "noisy()", code=1)
    assert "read-only transaction" in error(result)
    assert shop.execute("select count(*) from audit").fetchone() == (0,)
    result = rv(db_url, "show", "customers", "--where", "true; delete from customers", code=1)
    assert "without ';'" in error(result)
    assert shop.execute("select count(*) from customers").fetchone() == (3,)


def test_show_unknown_columns(shop: psycopg.Connection, db_url: str) -> None:
    result = rv(db_url, "show", "customers", "--columns", "id,nope", code=1)
    assert "customers has no column 'nope'; its columns are id, name, city" in error(result)
    result = rv(db_url, "show", "customers", "--order-by", "nope", code=1)
    assert "no column 'nope'" in error(result)
    result = rv(db_url, "show", "customers", "--where", "nope = 1", code=1)
    assert 'column "nope" does not exist' in error(result)


def test_history(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("delete from customers where id = 1")
    rows = rv_json(db_url, "history", "customers", "1")
    assert [(r["rv_version"], r["rv_until"], r["rv_deleted"], r["city"]) for r in rows] == \
        [(1, 2, False, "London"), (2, 5, False, "Lisbon"), (5, 5, True, None)]
    assert rows[0]["balance"] == "10.50" and rows[0]["photo"] == "AP8=" and rows[0]["id"] == 1
    assert rows[2]["id"] == 1  # a tombstone keeps its key
    assert list(rows[0])[:6] == ["rv_version", "rv_until", "rv_deleted", "created_at", "author", "message"]
    out = rv(db_url, "history", "customers", "1").stdout
    assert "London" in out and "Lisbon" in out and "enable public.customers" in out
    rows = rv_json(db_url, "history", "customers", "1", "--columns", "city")
    assert [list(r) for r in rows] == [["rv_version", "rv_until", "rv_deleted", "created_at", "author",
                                        "message", "city"]] * 3
    result = rv(db_url, "history", "customers", "1", "--columns", "city,nope", code=1)
    assert "customers has no column 'nope'; its columns are id, " in error(result)


def test_history_with_a_composite_key(shop: psycopg.Connection, db_url: str) -> None:
    rows = rv_json(db_url, "history", "lines", "1", "2")
    assert [(r["rv_version"], r["qty"]) for r in rows] == [(3, 7), (4, 6)]
    result = rv(db_url, "history", "lines", "1", code=1)
    assert "keyed by (order_id, line); got 1 value(s)" in error(result)
    result = rv(db_url, "history", "lines", "9", "9", code=1)
    assert "lines has no version of a row with key 9, 9" in error(result)


def test_diff(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("insert into customers values (4, 'Barbara', 'Boston', 1, null, null, null)")
    shop.execute("delete from customers where id = 3")
    shop.execute("update customers set balance = 11.25 where id = 1")
    shop.execute("select rowver.publish_head()")
    rows = rv_json(db_url, "diff", "customers", "1", "head")
    ops = {r["op"]: r for r in rows}
    assert sorted(ops) == ["added", "changed", "removed"]
    assert ops["changed"]["key"] == {"id": 1}
    assert ops["changed"]["changed"] == ["balance", "city"]
    assert (ops["changed"]["old"]["city"], ops["changed"]["new"]["city"]) == ("London", "Lisbon")
    assert ops["added"]["new"]["name"] == "Barbara" and ops["removed"]["old"]["name"] == "Grace"
    # numerics inside old and new rows: exact strings, as in every command
    text = rv(db_url, "diff", "customers", "1", "head", "--format", "json").stdout
    assert '"balance": "10.50"' in text and '"balance": "11.25"' in text
    out = rv(db_url, "diff", "customers", "1").stdout
    assert "customers, version 1 -> 7: 1 added, 1 removed, 1 changed" in out
    for text in ("London", "Lisbon", "10.50", "11.25", "Barbara", "id=3"):
        assert text in out
    assert "0 added, 0 removed, 0 changed" in rv(db_url, "diff", "customers", "head", "head").stdout


def test_diff_and_changes_narrowed_by_columns_and_where(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("insert into customers values (4, 'Barbara', 'Boston', 1, null, null, null)")
    shop.execute("update customers set balance = 11.25 where id = 1")
    shop.execute("update customers set score = 2 where id = 2")
    shop.execute("select rowver.publish_head()")
    # --columns: the key and those columns, and only rows where one of them differs
    rows = rv_json(db_url, "diff", "customers", "1", "--columns", "city")
    assert [(r["op"], r["key"], r["old"], r["new"]) for r in rows] == [
        ("changed", {"id": 1}, {"id": 1, "city": "London"}, {"id": 1, "city": "Lisbon"}),
        ("added", {"id": 4}, None, {"id": 4, "city": "Boston"})]
    assert rows[0]["changed"] == ["city"]  # (balance changed too, left out)
    assert "1 added, 0 removed, 1 changed" in rv(db_url, "diff", "customers", "1", "--columns", "city").stdout
    # --where: rows whose old or new state meets it ('%' is no placeholder)
    rows = rv_json(db_url, "diff", "customers", "1", "--where", "city like 'Lis%' or name = 'Barbara'")
    assert [r["key"]["id"] for r in rows] == [1, 4]
    assert [r["key"]["id"] for r in rv_json(db_url, "diff", "customers", "1", "--where", "city = 'London'")] == [1]
    rows = rv_json(db_url, "changes", "customers", "--since", "1", "--columns", "score", "--where", "op = 'update'")
    assert [(r["id"], r["score"]) for r in rows] == [(1, 1.5), (1, 1.5), (2, 2.0)] and set(rows[0]) == {
        "rv_version", "op", "id", "score"}
    # a condition is read-only and one statement; a bad one is one error, nothing changed
    before = changesets(shop)
    assert "without ';'" in error(rv(db_url, "diff", "customers", "1", "--where", "true; drop table customers", code=1))
    assert "cannot execute" in error(rv(db_url, "changes", "customers", "--since", "1", "--where",
                                        "nextval('rowver.version_seq') > 0", code=1))
    assert "customers has no column 'nope'" in error(rv(db_url, "diff", "customers", "1", "--columns", "nope", code=1))
    assert changesets(shop) == before
    with rowver.connect(db_url) as db:  # the same in Python
        assert list(db.diff("customers", 1, where="name = 'Barbara'")["key"]) == [{"id": 4}]
        assert list(db.changes("customers", 1, columns=["city"]).columns) == ["rv_version", "op", "id", "city"]


def test_one_rule_for_the_catalog(bare_url: str) -> None:
    """init or enable install it; every other command says, in one line, that it is missing."""
    for command in (["status"], ["log"], ["tags"], ["show", "t"], ["diff", "t", "1"], ["model", "list"], ["check"]):
        line = error(rv(bare_url, *command, code=1))
        assert "rowver is not installed in this database" in line and "`rowver init`" in line, (command, line)
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute("create table t (id int primary key)")
    assert "t is versioned" in rv(bare_url, "enable", "t").stdout  # enable installs it
    assert rv_json(bare_url, "tags") == [] and rv_json(bare_url, "model", "list") == []


def test_revert(shop: psycopg.Connection, db_url: str) -> None:
    out = rv(db_url, "revert", "customers", "--to", "1", "--message", "undo the move").stdout
    assert "customers is back to version 1 as version 5: 0 inserted, 1 updated, 0 deleted" in out
    assert shop.execute("select city from customers where id = 1").fetchone() == ("London",)
    assert shop.execute("select message from rowver.changeset where version = 5").fetchone() == ("undo the move",)
    assert "already matches version 1; no new version" in rv(db_url, "revert", "customers", "--to", "1").stdout
    [result] = rv_json(db_url, "revert", "customers", "--to", "2")
    assert (result["to"], result["updated"]) == (2, 1)
    assert result["version"] == max(changesets(shop)) > 5


def test_tag_and_tags(shop: psycopg.Connection, db_url: str) -> None:
    assert "No tags yet" in rv(db_url, "tags").stdout
    assert "before-move is version 1" in rv(db_url, "tag", "before-move", "--at", "1").stdout
    assert "latest is version 4" in rv(db_url, "tag", "latest").stdout
    assert [(t["name"], t["version"]) for t in rv_json(db_url, "tags")] == [("before-move", 1), ("latest", 4)]
    assert rv_json(db_url, "show", "customers", "--at", "before-move", "--where", "id = 1")[0]["city"] == "London"
    assert "before-move" in rv(db_url, "tags").stdout
    assert "tag 'latest' already exists" in error(rv(db_url, "tag", "latest", "--at", "2", code=1))
    assert "latest is version 2 (was 4)" in rv(db_url, "tag", "latest", "--at", "2", "--move").stdout
    assert "invalid tag name 'now'" in error(rv(db_url, "tag", "now", code=1))  # a ref would read it as a time
    assert "protected latest" in rv(db_url, "protect", "latest").stdout
    assert "is protected" in error(rv(db_url, "untag", "latest", code=1))
    assert "unprotected latest" in rv(db_url, "protect", "latest", "--off").stdout
    assert "removed tag latest (it named version 2)" in rv(db_url, "untag", "latest").stdout
    log = rv_json(db_url, "tags", "--history")
    assert [(e["name"], e["action"], e["old_version"], e["new_version"]) for e in log] == [
        ("before-move", "create", None, 1), ("latest", "create", None, 4), ("latest", "move", 4, 2),
        ("latest", "protect", 2, 2), ("latest", "unprotect", 2, 2), ("latest", "remove", 2, None)]
    assert {e["db_user"] for e in log} == {"postgres"}


@pytest.mark.corrupts_history
def test_check(shop: psycopg.Connection, db_url: str) -> None:
    assert "ok: every invariant holds" in rv(db_url, "check").stdout
    assert rv_json(db_url, "check", "customers") == []
    shop.execute("update customers__history set rv_until = rv_version")  # as superuser: corrupt history
    result = rv(db_url, "check", code=1)
    assert "customers" in result.stdout and "interval" in result.stdout
    assert error(result) == "error: 3 invariant violation(s)"
    violations = json.loads(rv(db_url, "check", "customers", "--format", "json", code=1).stdout)
    # (a current row whose state no longer ends where it begins reads as an insert none counted)
    assert sorted((v["table_name"], v["invariant"]) for v in violations) == [
        ("public.customers", "gap"), ("public.customers", "inserted"), ("public.customers", "interval")]
    assert "ok" in rv(db_url, "check", "lines").stdout


# -- errors ------------------------------------------------------------------------------------


def test_unknown_table(db_url: str) -> None:
    for args in (["show", "nope"], ["enable", "nope"], ["history", "nope", "1"], ["diff", "nope", "1"]):
        result = rv(db_url, *args, code=1)
        assert error(result) == 'error: relation "nope" does not exist', args


def test_unknown_ref(shop: psycopg.Connection, db_url: str) -> None:
    result = rv(db_url, "show", "customers", "--at", "nope", code=1)
    assert error(result).startswith("error: unknown ref 'nope' (a ref is a version number, a tag")
    result = rv(db_url, "show", "customers", "--at", "99", code=1)
    assert "version 99 is above head (4)" in error(result)
    result = rv(db_url, "diff", "customers", "1", "nope", code=1)
    assert "unknown ref 'nope'" in error(result)


def test_table_not_versioned(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table plain (id int primary key)")
    for args in (["show", "plain"], ["history", "plain", "1"], ["revert", "plain", "--to", "head"],
                 ["disable", "plain"], ["diff", "plain", "head"]):
        result = rv(db_url, *args, code=1)
        assert error(result).startswith("error: public.plain is not versioned"), args


def test_server_unreachable_names_the_url() -> None:
    url = "postgresql://postgres@127.0.0.1:1/x"
    result = rv(url, "status", code=1)
    assert error(result).startswith(f"error: cannot connect to {url}")


def test_password_is_not_printed() -> None:
    result = rv("postgresql://postgres:s3cret@127.0.0.1:1/x", "status", code=1)
    assert "s3cret" not in result.output
    assert "postgresql://postgres:***@127.0.0.1:1/x" in error(result)


def test_usage_errors_exit_2(db_url: str) -> None:
    assert rv(db_url, "show", code=2).exit_code == 2
    assert rv(db_url, "show", "t", "--format", "xml", code=2).exit_code == 2
    assert rv(db_url, "revert", "t", code=2).exit_code == 2  # --to is required
    assert runner.invoke(app, ["nope"]).exit_code == 2


def test_debug_shows_the_exception(db_url: str) -> None:
    result = runner.invoke(app, ["--debug", "show", "nope", "--url", db_url])
    assert result.exit_code == 1
    assert isinstance(result.exception, rowver.UnknownTableError)
    result = runner.invoke(app, ["show", "nope", "--url", db_url], env={"ROWVER_DEBUG": "1"})
    assert isinstance(result.exception, rowver.UnknownTableError)


def test_nothing_half_done_after_a_failure(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("create table fresh (id int primary key, name text)")
    before = changesets(shop)
    rv(db_url, "enable", "fresh", "--key", "nope", code=1)
    assert versioned(shop) == ["customers", "lines"]
    assert shop.execute("select to_regclass('fresh__history')").fetchone() == (None,)
    assert [r[0] for r in shop.execute(
        "select attname from pg_attribute where attrelid = 'fresh'::regclass and attnum > 0")] == ["id", "name"]
    rv(db_url, "revert", "customers", "--to", "nope", code=1)
    rv(db_url, "tag", "has space", code=1)
    rv(db_url, "tag", "later", "--at", "99", code=1)
    assert changesets(shop) == before
    assert shop.execute("select count(*) from rowver.tag").fetchone() == (0,)
    assert shop.execute("select city from customers where id = 1").fetchone() == ("Lisbon",)


# -- the demo and the console script --------------------------------------------------------------


def test_demo_on_a_given_database(db_url: str, conn: psycopg.Connection) -> None:
    for _ in range(2):  # rerunnable: the second run replaces the first
        out = rv(db_url, "demo").stdout
        assert "A bad load." in out and "The repair." in out and "Done in" in out
    assert [t for t in versioned(conn) if not t.startswith("rowver.model")] == [
        "rowver_demo.customers", "rowver_demo.orders"]
    # production holds the model trained on the good data; the retrain on the bad load was refused
    with rowver.connect(db_url) as db:
        production, newest = db.models.get("demo-prices@production"), db.models.get("demo-prices")
        assert (production.data_ref, production.metrics, production.version) == ("demo-good", {"mae": 0.0}, 3)
        assert newest.version == 4 and newest.metrics["mae"] > 100 and newest.aliases == []
        assert db.resolve("model:demo-prices@production") == db.resolve("demo-good")
    assert conn.execute("select count(*) from rowver_demo.orders").fetchone() == (35,)
    assert conn.execute("select count(*) from rowver_demo.orders where unit_price > 1000").fetchone() == (0,)
    assert "ok" in rv(db_url, "check").stdout


def _console_script() -> str:
    script = Path(sys.executable).parent / "rowver"
    return str(script) if script.exists() else shutil.which("rowver") or pytest.fail("rowver is not installed")


def test_console_script_end_to_end(shop: psycopg.Connection, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ROWVER_URL", "ROWVER_DEBUG")}
    env["ROWVER_URL"] = db_url
    done = subprocess.run([_console_script(), "show", "customers", "--at", "1", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["id"], r["city"]) for r in rows] == [(1, "London"), (2, "Manchester"), (3, "Arlington")]
    done = subprocess.run([_console_script(), "show", "nope"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr == 'error: relation "nope" does not exist\n'


@pytest.mark.slow
def test_demo_in_a_fresh_home() -> None:
    home = Path(tempfile.mkdtemp(prefix="rowver-demo-"))
    home.chmod(0o755)  # as root, the embedded server runs as its own user and must reach its pgdata
    env = {k: v for k, v in os.environ.items() if k not in ("ROWVER_URL", "ROWVER_DEBUG")}
    env["ROWVER_HOME"] = str(home)
    try:
        done = subprocess.run([_console_script(), "demo"], capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        assert "The repair." in done.stdout and "Done in" in done.stdout
        again = subprocess.run([_console_script(), "demo"], capture_output=True, text=True, env=env, timeout=60)
        assert again.returncode == 0, again.stderr
        done = subprocess.run([_console_script(), "show", "rowver_demo.customers", "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert len(json.loads(done.stdout)) == 12
    finally:
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


# -- rendering, without a server ---------------------------------------------------------------------


def test_json_encoding_rules() -> None:
    import datetime as dt
    from decimal import Decimal

    row = (None, float("nan"), Decimal("1.50"), _output.JsonNumber("2.50"), b"\x00\xff",
           dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2),
           dt.timedelta(days=1, seconds=3723, microseconds=500000), {"a": [_output.JsonNumber("0.1")]},
           [Decimal("3.0")], True, float("inf"))
    text = _output.to_json([f"c{i}" for i in range(len(row))], [row])
    assert json.loads(text) == [{
        "c0": None, "c1": None, "c2": "1.50", "c3": 2.5, "c4": "AP8=", "c5": "2026-01-02T03:04:05+00:00",
        "c6": "2026-01-02", "c7": "P1DT1H2M3.5S", "c8": {"a": [0.1]}, "c9": ["3.0"], "c10": True,
        "c11": "Infinity"}]
    assert '"c3": 2.50' in text  # written exactly as stored
    assert _output.to_json(["a"], []) == "[]\n"


def test_status_names_a_prepared_writer(shop: psycopg.Connection, db_url: str, needs_prepared: None) -> None:
    with psycopg.connect(db_url) as writer:
        writer.execute("update customers set city = 'Paris' where id = 2")
        writer.execute("prepare transaction 'rowver_cli_test'")
        try:
            out = rv(db_url, "status").stdout
            assert "oldest in-flight writer: version 5, prepared transaction" in out
        finally:
            shop.execute("rollback prepared 'rowver_cli_test'")


def test_tables_fit_the_width_without_losing_columns() -> None:
    import io

    from rich.console import Console

    columns = ["id", "customer_id", "product", "unit_price", "ordered_at"]
    rows = [(1, 8, "Pour-over kettle", 42, "2026-10-02 02:00:00+00:00")]
    for width in (100, 60, 30):
        out = io.StringIO()
        console = Console(file=out, width=width)
        console.print(_output.to_table(columns, rows, width=width))
        text = out.getvalue()
        assert all(len(line) <= width for line in text.splitlines())
        for word in [*columns, "Pour-over", "42"]:
            assert word in text, (width, text)


def test_a_table_drawn_at_its_natural_widths_is_the_one_rich_lays_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """to_tables gives rich the widths it would measure (faster), and splits the table after its
    first 100 rows (printed first): the same text as one table rich measured, wide characters,
    several lines and colours included, and at widths where the columns must wrap."""
    import io

    from rich.console import Console

    columns = ["id", "name", "日本", "a much longer column name", "at"]
    rows = [(i, "word " * (i % 7), "日本語" * (i % 3), "one\ntwo lines" if i % 4 else None,
             "2026-01-02 03:04:05+00:00") for i in range(150)]

    def drawn(width: int, colour: bool) -> str:
        console = Console(file=io.StringIO(), width=width, force_terminal=colour, color_system="truecolor")
        for part in _output.to_tables(columns, rows, width=width, title="t"):
            console.print(part)
        return console.file.getvalue()  # type: ignore[attr-defined]

    fast = {(w, c): drawn(w, c) for w in (50, 90, 300) for c in (False, True)}
    monkeypatch.setattr(_output, "_natural_widths", lambda *args: None)  # (rich measures every cell)
    assert fast == {(w, c): drawn(w, c) for w in (50, 90, 300) for c in (False, True)}


# -- schema changes, the change feed, retention ------------------------------------------------


def test_refresh_truncate_changes_prune_erase(shop: psycopg.Connection, db_url: str) -> None:
    shop.execute("alter table lines add column note text")
    assert "added note" in rv(db_url, "refresh", "lines").stdout
    assert "up to date" in rv(db_url, "refresh", "lines").stdout
    feed = rv_json(db_url, "changes", "customers", "--since", "0")
    assert [r["op"] for r in feed][-1] == "update" and feed[-1]["city"] == "Lisbon"
    assert "2 row(s) deleted" in rv(db_url, "truncate", "lines").stdout
    assert shop.execute("select count(*) from lines").fetchone()[0] == 0
    head = shop.execute("select rowver.head()").fetchone()[0]
    assert "removed" in rv(db_url, "prune", "customers", "--before", str(head)).stdout
    assert "erased" in rv(db_url, "erase", "customers", "2").stdout
    assert shop.execute("select count(*) from customers__versions where id = 2 and not rv_deleted").fetchone()[0] == 0
    assert "pruned" in error(rv(db_url, "show", "customers", "--at", "1", code=1))


# -- refs that predate a table -------------------------------------------------------------------


def test_a_ref_before_a_tables_first_version_is_refused_and_changes_nothing(shop: psycopg.Connection,
                                                                             db_url: str) -> None:
    shop.execute("select rowver.tag('before-late', '1')")
    shop.execute("create table late (id int primary key, v text)")
    shop.execute("insert into late values (1, 'a'), (2, 'b')")
    first = shop.execute("select rowver.enable('late')").fetchone()[0]
    assert first > 1
    shop.execute("update late set v = 'c' where id = 1")
    shop.execute("select rowver.publish_head()")
    before = (shop.execute("select * from late order by id").fetchall(),
              shop.execute("select count(*), max(version) from rowver.changeset").fetchone())
    hint = f" (read it as of version {first} or later)"
    said = f"error: public.late was first versioned at version {first}; version 1 predates it{hint}"
    for args in (["show", "late", "--at", "1"], ["diff", "late", "1", "head"], ["diff", "late", "head", "1"],
                 ["changes", "late", "--since", str(first), "--until", "1"], ["revert", "late", "--to", "1"]):
        assert error(rv(db_url, *args, code=1)) == said, args
    assert error(rv(db_url, "revert", "late", "--to", "before-late", code=1)) == \
        f"error: public.late was first versioned at version {first}; version 1 (before-late) predates it{hint}"
    # the change feed from before the table: every change since, its enabling rows first
    assert [c["op"] for c in rv_json(db_url, "changes", "late", "--since", "1")] == ["insert", "insert", "update"]
    assert (shop.execute("select * from late order by id").fetchall(),
            shop.execute("select count(*), max(version) from rowver.changeset").fetchone()) == before

    db = rowver.Database(db_url)
    for call in (lambda: db.as_of("late", 1), lambda: db.diff("late", 1, "head"),
                 lambda: db.changes("late", since=first, until=1), lambda: db.revert("late", 1)):
        with pytest.raises(InvalidInputError, match="first versioned at version"):
            call()
    with pytest.raises(psycopg.DatabaseError, match="predates it") as refused:
        shop.execute("select * from rowver.as_of(null::late, '1')")
    assert refused.value.sqlstate == "RV005"  # rowver's own code (rowver/errors.py)
    assert len(db.as_of("late", first)) == 2 and db.diff("late", first, "head")["op"].tolist() == ["changed"]
    db.close()


def test_first_steps_say_what_to_type(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table nokey (a int, b text)")
    said = error(rv(db_url, "enable", "nokey", code=1))
    assert said.startswith("error: table public.nokey has no primary key") and "rowver enable --key COL" in said
    # a time before the first published head says when that was
    conn.execute("create table t (id int primary key)")
    conn.execute("select rowver.enable('t')")
    first = conn.execute("select head from rowver.head_log order by at, head limit 1").fetchone()[0]
    said = error(rv(db_url, "show", "t", "--at", "2001-01-01T00:00:00Z", code=1))
    assert said.startswith("error: no head was published at or before 2001-01-01") and \
        f"(version {first})" in said and "the first was published at" in said, said


def test_show_at_size_pages_the_table_and_streams_csv_and_json(conn: psycopg.Connection, db_url: str) -> None:
    """The table format shows the first 1,000 rows and says how many there are; csv and json print
    every row, streamed in batches (12,345 rows cross a batch boundary), the same text as unstreamed."""
    conn.execute("create table big (id int primary key, label text, at timestamptz, blob bytea)")
    conn.execute("insert into big select g, 'row ' || g, '2026-01-01'::timestamptz + g * interval '1 s',"
                 " case when g % 3 = 0 then null else int4send(g) end from generate_series(1, 12345) g")
    rv(db_url, "enable", "big")
    table = rv(db_url, "show", "big").stdout
    assert "the first 1,000 of 12,345 rows; --limit N shows more" in table
    assert " 1000 " in table and " 1001 " not in table
    assert "12,345" not in rv(db_url, "show", "big", "--limit", "5").stdout
    assert "the first 1,000 of 4,115 rows" in rv(db_url, "show", "big", "--where", "id % 3 = 0").stdout

    with rowver.connect(db_url) as db:
        everything = db.read("big")
    streamed_json = rv(db_url, "show", "big", "--format", "json").stdout
    assert streamed_json == _output.to_json(everything.columns, everything.rows)
    assert len(json.loads(streamed_json)) == 12345
    streamed_csv = rv(db_url, "show", "big", "--format", "csv").stdout
    assert streamed_csv == _output.to_csv(everything.columns, everything.rows)
    assert rv(db_url, "show", "big", "--format", "json", "--where", "false").stdout == "[]\n"
    assert rv(db_url, "show", "big", "--format", "csv", "--where", "false").stdout == "id,label,at,blob,rv_version\n"


def test_stream_reads_in_batches_what_read_reads(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table few (id int primary key, v text)")
    conn.execute("insert into few select g, g::text from generate_series(1, 10) g")
    with rowver.connect(db_url) as db:
        db.enable("few")
        with db.stream("few", columns=["id"], where="id > 2", batch=3) as s:
            batches = list(s)
            assert (s.columns, s.version) == (["id"], db.head())
        assert [len(b) for b in batches] == [3, 3, 2]
        assert [r for b in batches for r in b] == db.read("few", columns=["id"], where="id > 2").rows
        with pytest.raises(InvalidInputError, match="batch must be a positive whole number"):
            with db.stream("few", batch=0):
                pass


def test_server_commands_show_start_and_stop_the_embedded_server(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    """rowver server status/start/url/psql/stop, on an embedded server of its own under a fresh ROWVER_HOME."""
    home = tmp_path / "home"
    env = {"ROWVER_HOME": str(home), "ROWVER_URL": None, "COLUMNS": None}
    status = json.loads(runner.invoke(app, ["server", "status", "--format", "json"], env=env).stdout)[0]
    assert status["running"] is False and status["url"] is None
    assert status["data_directory"] == str((home / "pgdata").resolve())
    try:
        started = runner.invoke(app, ["server", "start"], env=env)
        assert started.exit_code == 0, started.output
        url = started.stdout.strip()
        with psycopg.connect(url) as conn:
            assert conn.execute("select current_setting('data_directory')").fetchone() == (status["data_directory"],)
        status = json.loads(runner.invoke(app, ["server", "status", "--format", "json"], env=env).stdout)[0]
        assert status["running"] is True and status["pid"] > 0
        with psycopg.connect(status["url"]) as conn:  # (it names the port too)
            assert conn.execute("select current_setting('data_directory')").fetchone() == (status["data_directory"],)
        assert runner.invoke(app, ["server", "url"], env=env).stdout.strip() == url
        capfd.readouterr()
        said = runner.invoke(app, ["server", "psql", "-Atc", "select 6 * 7"], env=env)
        assert said.exit_code == 0 and capfd.readouterr().out.strip() == "42"
        assert "stopped" in runner.invoke(app, ["server", "stop"], env=env).stdout
        status = json.loads(runner.invoke(app, ["server", "status", "--format", "json"], env=env).stdout)[0]
        assert status["running"] is False
        assert "not running" in runner.invoke(app, ["server", "stop"], env=env).stdout
    finally:
        stop_embedded(home)


def test_log_filters(conn: psycopg.Connection, db_url: str) -> None:
    """rowver log --author, --grep, --since, --until (and db.log with the same names)."""
    conn.execute("create table notes (id int primary key, body text)")
    rv(db_url, "enable", "notes")
    with rowver.connect(db_url) as db:
        with db.changeset(message="Nightly LOAD of notes", author="etl") as cs:
            first = cs.insert("notes", [{"id": 1, "body": "a"}]).version
        db.tag("after-load")
        with db.changeset(message="fix typo (50% off)", author="ann") as cs:
            second = cs.upsert("notes", [{"id": 1, "body": "b"}]).version
        with db.changeset(message="nightly load again", author="etl") as cs:
            third = cs.upsert("notes", [{"id": 2, "body": "c"}]).version

        def versions(*args: str) -> list[int]:
            return [row["version"] for row in rv_json(db_url, "log", *args)]

        assert versions("--author", "etl") == [third, first]
        assert versions("--grep", "nightly load") == [third, first]
        assert versions("--grep", "50%") == [second]  # literally, not a LIKE pattern
        assert versions("--since", "after-load", "--author", "etl") == [third]
        assert versions("--until", "after-load", "--table", "notes") == [first, 1]
        assert versions("--author", "nobody") == []
        assert list(db.log(grep="TYPO")["version"]) == [second]
        assert list(db.log(since=first, until=second)["version"]) == [second]
    said = rv(db_url, "log", "--since", "no-such-tag", code=1)
    assert said.stderr.startswith("error:") and "no-such-tag" in said.stderr


def test_a_bad_key_value_names_its_column(conn: psycopg.Connection, db_url: str) -> None:
    """history and erase with a key value the key column's type cannot take: one line naming
    the column and its type, and nothing erased."""
    conn.execute("create table seats (row_no int, seat text, taken bool, primary key (row_no, seat))")
    conn.execute("insert into seats values (1, 'a', false)")
    rv(db_url, "enable", "seats")
    said = rv(db_url, "history", "seats", "one", "a", code=1)
    assert said.stderr.startswith("error: 'one' is not a value of public.seats's key column row_no (integer): "
                                  "invalid input syntax for type integer")
    said = rv(db_url, "erase", "seats", "99999999999", "a", code=1)
    assert "key column row_no (integer): value \"99999999999\" is out of range" in said.stderr
    assert conn.execute("select count(*) from seats").fetchone() == (1,)
    with rowver.connect(db_url) as db, pytest.raises(InvalidInputError, match="key column row_no"):
        db.history("seats", ("x", "a"))


def test_every_read_command_encodes_a_value_the_same_way(conn: psycopg.Connection, db_url: str) -> None:
    """One encoder: show, history, diff and changes print a numeric, bytea, timestamptz, float,
    jsonb and NULL alike, in json and in csv (numerics exact strings, bytea base64, full ISO-8601)."""
    conn.execute("create table enc (id int primary key, n numeric(10,3), b bytea, t timestamptz, f float8,"
                 " j jsonb, z text)")
    conn.execute("set timezone = 'UTC'")
    conn.execute("insert into enc values (1, 1.500, '\\x0102', '2026-01-02 03:04:05.123456+00', 0.1,"
                 " '{\"a\": 1.10}', null)")
    rv(db_url, "enable", "enc")
    first = int(conn.execute("select rowver.head()").fetchone()[0])
    conn.execute("update enc set f = 0.2")
    conn.execute("select rowver.publish_head()")
    expect = {"id": 1, "n": "1.500", "b": "AQI=", "t": "2026-01-02T03:04:05.123456+00:00", "j": {"a": 1.10}, "z": None}
    [shown] = rv_json(db_url, "show", "enc", "--at", str(first))
    history = rv_json(db_url, "history", "enc", "1")[0]
    [diffed] = rv_json(db_url, "diff", "enc", str(first))
    changed = rv_json(db_url, "changes", "enc", "--since", str(first - 1))[0]
    for row in (shown, history, diffed["old"], changed):
        assert {k: row[k] for k in expect} == expect, row
    assert json.dumps(shown["j"]) == '{"a": 1.1}' and '"j": {"a": 1.10}' in rv(db_url, "show", "enc", "-f", "json").stdout
    csv_line = "1,1.500,AQI=,2026-01-02T03:04:05.123456+00:00"
    assert csv_line in rv(db_url, "show", "enc", "--at", str(first), "-f", "csv").stdout
    assert csv_line in rv(db_url, "changes", "enc", "--since", str(first - 1), "-f", "csv").stdout


def test_load_a_csv_file(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    """rowver load: a CSV file through the write layer as one changeset (sync by default, so only
    differences become versions); a bad record is one error naming the file's line and column, or
    the records, and writes nothing."""
    conn.execute("create table prices (sku text primary key, price numeric(8,2), note text, seen timestamptz)")
    conn.execute("insert into prices values ('a', 1.00, 'old', null), ('gone', 9.99, null, null)")
    rv(db_url, "enable", "prices")
    good = tmp_path / "prices.csv"
    good.write_text('sku,price,note,seen\na,1.00,old,\nb,2.50,"with, comma",2026-01-02T03:04:05Z\n')

    def state() -> tuple[object, ...]:
        return (conn.execute("select array_agg((sku, price, note) order by sku)::text from prices").fetchone(),
                conn.execute("select count(*) from rowver.changeset").fetchone())

    before = state()
    said = rv(db_url, "load", "prices", str(good), "--dry-run").stdout
    assert "would be 1 inserted, 0 updated, 1 deleted, 1 unchanged (dry run: nothing changed)" in said
    assert state() == before
    [row] = rv_json(db_url, "load", "prices", str(good), "-m", "nightly prices")
    assert (row["inserted"], row["updated"], row["deleted"], row["unchanged"]) == (1, 0, 1, 1)
    assert conn.execute("select sku, price::text, note from prices order by sku").fetchall() == \
        [("a", "1.00", "old"), ("b", "2.50", "with, comma")]
    assert conn.execute("select message from rowver.changeset where version = %s",
                        (row["version"],)).fetchone() == ("nightly prices",)
    assert "already matches" in rv(db_url, "load", "prices", str(good)).stdout

    after = state()
    cases = {"price\n1\n": "rows for prices lack key column 'sku'",
             "sku,colour\na,red\n": "prices has no column 'colour'",
             "sku,price\na,1\nb,cheap\n": "line 3, column price: \"cheap\"",
             "sku,price\na,1\na,2\n": "records 1 and 2 hold the same key of public.prices ({\"sku\": \"a\"})",
             "sku,price\n,1\n": "record 1 has no whole key",
             "": "is empty"}
    for i, (text, error) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.csv"
        bad.write_text(text)
        said = rv(db_url, "load", "prices", str(bad), "--mode", "upsert", code=1)
        assert said.stderr.startswith("error:") and error in said.stderr, (text, said.stderr)
        assert len(said.stderr.strip().splitlines()) == 1
    assert state() == after

    # the Python twin, beside other calls in one changeset
    with rowver.connect(db_url) as db, db.changeset(message="two files") as cs:
        more = tmp_path / "more.csv"
        more.write_text("sku,price\nc,3.00\n")
        assert cs.load("prices", more, mode="insert").inserted == 1
        assert cs.delete("prices", [{"sku": "a"}]).deleted == 1
    assert [r[0] for r in conn.execute("select sku from prices order by sku").fetchall()] == ["b", "c"]


def test_load_a_parquet_file(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    """rowver load of a .parquet file: the same write layer, a record batch at a time; a value
    the column cannot take names the row and column, and nothing is written."""
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    conn.execute("create table prices (sku text primary key, price numeric(8,2), tags jsonb, seen timestamptz)")
    conn.execute("insert into prices values ('a', 1.00, null, null), ('gone', 9.99, null, null)")
    rv(db_url, "enable", "prices")
    seen = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    good = tmp_path / "prices.parquet"
    pq.write_table(pa.table({"sku": ["a", "b"], "price": pa.array([Decimal("1.00"), Decimal("2.50")], pa.decimal128(8, 2)),
                             "tags": ['{"new": true}', None], "seen": [None, seen]}), good, row_group_size=1)
    [row] = rv_json(db_url, "load", "prices", str(good))
    assert (row["inserted"], row["updated"], row["deleted"], row["unchanged"]) == (1, 1, 1, 0)
    assert conn.execute("select sku, price::text, tags, seen from prices order by sku").fetchall() == \
        [("a", "1.00", {"new": True}, None), ("b", "2.50", None, seen)]

    before = conn.execute("select count(*) from rowver.changeset").fetchone()
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"sku": ["a", "b", "c"], "price": ["1", "2", "cheap"]}), bad)
    said = rv(db_url, "load", "prices", str(bad), code=1)
    assert f"({bad}: row 3, column price: \"cheap\")" in error(said)
    notparquet = tmp_path / "x.parquet"
    notparquet.write_text("sku,price\n")
    assert "cannot read" in error(rv(db_url, "load", "prices", str(notparquet), code=1))
    assert conn.execute("select count(*) from rowver.changeset").fetchone() == before


def test_a_long_read_to_a_file_counts_its_rows_on_the_terminal(conn: psycopg.Connection, db_url: str,
                                                               tmp_path: Path) -> None:
    from terminal import stderr_on_terminal

    conn.execute("create table many (id int primary key, v text)")
    conn.execute("insert into many select g, 'v' || g from generate_series(1, 30000) g")
    rv(db_url, "enable", "many")
    with open(tmp_path / "many.csv", "w") as out:
        done, drawn = stderr_on_terminal([_console_script(), "show", "many", "--format", "csv", "--url", db_url], out)
    assert done.returncode == 0 and b"30000/?" in drawn and b"rows/s" in drawn
    assert (tmp_path / "many.csv").read_text() == rv(db_url, "show", "many", "--format", "csv").stdout  # (no bar here)


def test_diff_and_changes_at_size_stream_and_limit(conn: psycopg.Connection, db_url: str) -> None:
    """diff and changes stream csv and json (every row) and show 1,000 rows as a table unless
    --limit; diff's counts cover every row however many are shown."""
    conn.execute("create table wide (id int primary key, v int)")
    conn.execute("insert into wide select g, 0 from generate_series(1, 3000) g")
    rv(db_url, "enable", "wide")
    first = int(conn.execute("select rowver.head()").fetchone()[0])
    conn.execute("update wide set v = 1 where id <= 2500")
    conn.execute("delete from wide where id > 2990")
    conn.execute("insert into wide values (5000, 5)")
    conn.execute("select rowver.publish_head()")

    table = rv(db_url, "diff", "wide", str(first)).stdout
    assert "1 added, 10 removed, 2500 changed; the first 1,000 shown (--limit N shows more" in table
    records = rv_json(db_url, "diff", "wide", str(first))
    assert len(records) == 2511 and {r["op"] for r in records} == {"added", "removed", "changed"}
    assert records[0] == {"op": "changed", "key": {"id": 1}, "changed": ["v"], "old": {"id": 1, "v": 0},
                          "new": {"id": 1, "v": 1}}
    assert len(rv_json(db_url, "diff", "wide", str(first), "--limit", "7")) == 7
    assert rv(db_url, "diff", "wide", str(first), "-f", "csv", "--limit", "0").stdout == "op,key,changed,old,new\n"

    feed = rv_json(db_url, "changes", "wide", "--since", str(first))
    assert len(feed) == 2511 and feed[0] == {"rv_version": first + 1, "op": "update", "id": 1, "v": 1}
    assert len(rv_json(db_url, "changes", "wide", "--since", str(first), "-n", "3")) == 3
    shown = rv(db_url, "changes", "wide", "--since", str(first)).stdout
    assert "more changes follow: --limit N shows more" in shown


@pytest.mark.slow
def test_the_suite_stops_the_embedded_server_it_started(tmp_path: Path) -> None:
    """A run of the tests on the embedded server leaves none running behind it."""
    home = tmp_path / "home"
    home.mkdir()
    tmp_path.chmod(0o755)
    home.chmod(0o755)  # as root, the embedded server runs as its own user and must reach its pgdata
    env = {k: v for k, v in os.environ.items() if k not in ("ROWVER_URL", "ROWVER_TEST_URL")}
    env["ROWVER_TEST_HOME"] = str(home)
    test = "tests/test_api.py::test_changeset_counts_and_metadata"
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], capture_output=True,
                              text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stdout[-2000:]
        assert (home / "pgdata").exists()  # it ran there
        assert not embedded_info(home).running
    finally:
        stop_embedded(home)
