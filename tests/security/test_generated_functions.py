"""Class 3: the functions rowver generates for a table (DESIGN §6). No one but the table's
owner may run or attach its trigger functions, rowver_admin alone its admin function, and
capture, attached to any other table, refuses to run before it reads or writes anything."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, past, violations
from psycopg import sql


@pytest.fixture
def items(logins: Logins) -> dict:
    owner = logins.owner("own")
    app = logins.owner("app")  # a writer of items with a schema (and tables) of its own
    s = owner  # (role names here need no quotes)
    own = logins.login(owner)
    own.execute(f"create table {s}.items (id integer primary key, name text)")
    own.execute(f"insert into {s}.items values (1, 'one'), (2, 'two')")
    own.execute(f"grant usage on schema {s} to public")
    own.execute(f"grant select, insert, update, delete on {s}.items to {app}")
    own.execute("select rowver.enable(%s)", (f"{s}.items",))
    logins.su.execute("select rowver.publish_head()")
    return {"owner": owner, "app": app, "s": s, "table": f"{s}.items",
            "a": sql.Identifier(app).as_string(logins.su)}


def test_no_generated_function_is_public(items: dict, logins: Logins) -> None:
    s = items["s"]
    rows = logins.su.execute(
        "select p.proname, has_function_privilege('public', p.oid, 'EXECUTE'),"
        "       has_function_privilege(%s, p.oid, 'EXECUTE'), has_function_privilege('rowver_admin', p.oid, 'EXECUTE')"
        "  from pg_proc p where p.pronamespace = %s::regnamespace order by 1", (items["app"], s)).fetchall()
    assert rows == [("items__as_of", False, True, False),  # readers of items may read its past
                    ("items__rv_admin", False, False, True),
                    ("items__rv_capture", False, False, False),
                    ("items__rv_restamp", True, True, True),  # moves only its caller's own rows
                    ("items__rv_stamp", False, False, False)]


@pytest.mark.parametrize("function", ["items__rv_capture", "items__rv_stamp", "items__rv_admin"])
def test_a_writer_cannot_attach_or_call_them(items: dict, logins: Logins, function: str) -> None:
    app = logins.login(items["app"])
    app.execute(f"create table {items['a']}.mine (id integer primary key, name text, rv_version bigint)")
    before = past(logins.su, items["table"], 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
        if function.endswith("admin"):
            app.execute(f"select {items['s']}.{function}('prune', '{{\"horizon\": 1}}')")
        else:
            timing = "after" if function.endswith("capture") else "before"
            app.execute(f"create trigger forge {timing} insert on {items['a']}.mine "
                        f"for each statement execute function {items['s']}.{function}()")
    assert past(logins.su, items["table"], 1) == before


def test_capture_attached_elsewhere_refuses_to_run(items: dict, logins: Logins) -> None:
    """Even its owner (who may attach it) cannot make it write items' history for another
    table: it would forge tombstones there, and report another table's writes."""
    own = logins.login(items["owner"])
    s = items["s"]
    own.execute(f"create table {s}.decoy (id integer primary key, name text, rv_version bigint)")
    own.execute(f"create trigger forge after delete on {s}.decoy referencing old table as rv_old "
                f"for each statement execute function {s}.items__rv_capture()")
    own.execute(f"insert into {s}.decoy values (1, 'x', 1)")
    before = past(logins.su, items["table"], 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="captures changes of .*items only"):
        own.execute(f"delete from {s}.decoy")
    assert past(logins.su, items["table"], 1) == before
    own.execute(f"drop table {s}.decoy")
    assert violations(logins.su) == []


def test_a_restamp_moves_only_its_callers_own_rows(items: dict, logins: Logins) -> None:
    """T__rv_restamp is anyone's to call (a renumbered transaction calls it at commit), and
    moves nothing but rows of a version the calling transaction itself gave up."""
    app = logins.login(items["app"])
    app.execute(f"update {items['table']} set name = 'uno' where id = 1")
    head = logins.su.execute("select rowver.publish_head()").fetchone()[0]
    before = past(logins.su, items["table"], head)
    attacker = psycopg.connect(logins.url, user=items["app"])  # a transaction of its own
    try:
        attacker.execute(f"insert into {items['table']} values (9, 'mine')")  # it has a version now
        attacker.execute("select set_config('rowver.abandoned', %s, true), set_config(%s, '*', true)",
                         (",".join(str(v) for v in range(1, head + 1)),
                          f"rowver.w{logins.su.execute('select %s::regclass::oid', (items['table'],)).fetchone()[0]}"))
        attacker.execute(f"select {items['s']}.items__rv_restamp()")
        attacker.execute(f"update {items['table']} set rv_version = rowver.allocated() where id = 2")  # a no-op
        attacker.commit()
    finally:
        attacker.close()
    assert past(logins.su, items["table"], head) == before
