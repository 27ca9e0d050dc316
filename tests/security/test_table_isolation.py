"""Class 2: isolation between tables (DESIGN §6). Owning a table gives power over its history
and nothing else: team A's owner cannot write, move or forge anything of team B's, and needs
no rowver role to version its own table; rowver_admin prunes and erases any table through
that table's own admin function, as its owner."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, past, violations
from psycopg import sql


@pytest.fixture
def teams(logins: Logins) -> dict:
    """Two teams, each owning a schema and a versioned table with some history, each with an
    application role that writes it."""
    found: dict = {}
    for team, table in (("a", "items"), ("b", "ledger")):
        owner = logins.owner(f"own_{team}")
        app = logins.role(f"app_{team}")
        qualified = f"{sql.Identifier(owner).as_string(logins.su)}.{table}"
        own = logins.login(owner)
        own.execute(f"create table {qualified} (id integer primary key, amount integer)")
        own.execute(f"insert into {qualified} select g, g * 10 from generate_series(1, 3) g")
        own.execute(sql.SQL("grant usage on schema {} to public").format(sql.Identifier(owner)))  # one shared database
        own.execute(f"grant select, insert, update, delete on {qualified} to {app}")
        own.execute("select rowver.enable(%s)", (qualified,))
        writer = logins.login(app)
        writer.execute(f"update {qualified} set amount = amount + 1 where id = 1")
        writer.execute(f"delete from {qualified} where id = 3")
        table_id, oid = logins.su.execute("select id, relid::oid from rowver.versioned where relid = %s::regclass",
                                          (qualified,)).fetchone()
        found[team] = {"owner": owner, "app": app, "table": qualified, "id": table_id, "oid": oid,
                       "schema": sql.Identifier(owner).as_string(logins.su)}
    logins.su.execute("select rowver.publish_head()")
    return found


DENIED = psycopg.errors.InsufficientPrivilege  # 42501: also "new row violates row-level security policy"
NOTHING = None  # row-level security hides the other team's rows: the statement changes no row

ATTACKS = [
    ("insert into {b}.ledger__history (id, amount, rv_version, rv_until) values (1, 999, 0, 1)", DENIED),
    ("update {b}.ledger__history set amount = 999", DENIED),
    ("delete from {b}.ledger__history", DENIED),
    ("alter table {b}.ledger__history disable row level security", DENIED),
    ("create trigger forge before update on {b}.ledger for each row execute function {a}.items__rv_stamp()", DENIED),
    ("insert into rowver.changeset_table (version, table_id, rows, net) values (1, {b_id}, 5, 5)", DENIED),
    ("insert into rowver.changeset_table (version, table_id, rows, net)"
     " values (rowver.xact_version(), {b_id}, 5, 5)", DENIED),
    ("insert into rowver.changeset (version, xid, db_role) values (99999, '1', 'x')", DENIED),
    ("update rowver.changeset set message = 'forged' where version = 2", NOTHING),
    ("delete from rowver.changeset", DENIED),
    ("update rowver.changeset_table set rows = 0, net = 0 where table_id = {b_id}", NOTHING),
    ("delete from rowver.changeset_table where table_id = {b_id}", DENIED),
    ("update rowver.versioned set history_name = 'items__history' where id = {b_id}", DENIED),
    ("update rowver.versioned set definition_hash = 'x' where id = {b_id}", NOTHING),
    ("delete from rowver.versioned where id = {b_id}", DENIED),
    ("insert into rowver.retention (table_id, horizon, kept) values ({b_id}, 100, '{{}}')", DENIED),
    ("update rowver.column_life set added_version = 1 where table_id = {b_id}", NOTHING),
    ("select setval('rowver.version_seq', 1000)", DENIED),
    ("select rowver.allocate()", DENIED),
    ("select rowver.record_change(rowver.xact_version(), '{b}.ledger', 5, 5)", DENIED),
    ("select rowver.register('{b}.ledger', '{{id}}', '{{}}', true, 'x')", DENIED),
    ("select rowver.unregister('{b}.ledger')", psycopg.errors.ObjectNotInPrerequisiteState),
    ("select rowver.prune('{b}.ledger', 'head')", DENIED),
    ("select rowver.erase('{b}.ledger', '{{\"id\": 1}}')", DENIED),
    ("select rowver.admin_op('{b}.ledger', 'prune', '{{\"horizon\": 4}}')", DENIED),
    ("select rowver.prune_history('{b}.ledger', 4)", DENIED),
    ("select rowver.erase_key('{b}.ledger', '{{\"id\": 1}}', null)", DENIED),
    ("select {b}.ledger__rv_admin('prune', '{{\"horizon\": 4}}')", DENIED),
    ("select rowver.refresh('{b}.ledger')", DENIED),
    ("select rowver.alter('{b}.ledger', 'add column note text')", DENIED),
    ("select rowver.disable('{b}.ledger')", DENIED),
    ("select rowver.truncate('{b}.ledger')", DENIED),
    ("select rowver.forget({b_oid})", DENIED),
    ("select rowver.prune_changesets()", NOTHING),
    # no lock that would stop the other team's writers
    ("begin; lock table rowver.changeset_table in access exclusive mode; commit", DENIED),
    ("begin; lock table rowver.changeset in share mode; commit", DENIED),
    ("begin; lock table rowver.versioned in exclusive mode; commit", DENIED),
    ("select * from rowver.allocation for update", DENIED),
    ("select * from rowver.changeset_table for update", NOTHING),
]


@pytest.mark.parametrize("attack,outcome", ATTACKS, ids=[a for a, _ in ATTACKS])
def test_one_teams_owner_cannot_touch_anothers_history(teams: dict, logins: Logins, attack: str,
                                                       outcome: type | None) -> None:
    a, b = teams["a"], teams["b"]
    statement = attack.format(a=a["schema"], b=b["schema"], b_id=b["id"], b_oid=b["oid"])
    head = logins.su.execute("select rowver.head()").fetchone()[0]
    before = past(logins.su, b["table"], head)
    rival = logins.login(a["owner"])
    if outcome is None:
        rival.execute(statement)
    else:
        with pytest.raises(outcome):
            rival.execute(statement)
    assert past(logins.su, b["table"], head) == before  # (a version it burnt is no version of B's)
    assert violations(logins.su) == []


def test_enabling_needs_ownership_and_no_rowver_role(teams: dict, logins: Logins) -> None:
    a, b = teams["a"], teams["b"]
    for role in (a["owner"], b["owner"]):
        assert logins.su.execute("select pg_has_role(%s, 'rowver_owner', 'MEMBER') or"
                                 " pg_has_role(%s, 'rowver_admin', 'MEMBER')", (role, role)).fetchone() == (False,)
    owned = logins.su.execute(
        "select c.relname, c.relowner::regrole::text from pg_class c where c.relnamespace = %s::regnamespace"
        " union all select p.proname, p.proowner::regrole::text from pg_proc p where p.pronamespace = %s::regnamespace",
        (b["schema"], b["schema"])).fetchall()
    assert {name for name, _ in owned} >= {"ledger", "ledger__history", "ledger__versions", "ledger__as_of",
                                           "ledger__rv_stamp", "ledger__rv_capture", "ledger__rv_admin"}
    assert {owner for _, owner in owned} == {b["owner"]}
    own_b = logins.login(b["owner"])
    own_b.execute(f"create table {b['schema']}.other (id integer primary key)")
    with pytest.raises(DENIED, match="needs the rights of its owner"):
        logins.login(a["owner"]).execute("select rowver.enable(%s)", (f"{b['schema']}.other",))
    with pytest.raises(DENIED, match="needs the rights of its owner"):
        logins.login(b["app"]).execute("select rowver.enable(%s)", (f"{b['schema']}.other",))


def test_rowver_admin_prunes_and_erases_a_table_it_does_not_own(teams: dict, logins: Logins) -> None:
    b = teams["b"]
    admin_role = logins.role("admin", "rowver_admin")
    assert logins.su.execute("select pg_has_role('rowver_admin', 'rowver_owner', 'MEMBER')").fetchone() == (False,)
    admin = logins.login(admin_role)
    with pytest.raises(DENIED):  # no write of its own into history
        admin.execute(f"delete from {b['schema']}.ledger__history")
    head = logins.su.execute("select rowver.head()").fetchone()[0]
    read = f"select * from {b['schema']}.ledger__as_of({head}) order by id"
    later = logins.su.execute(read).fetchall()
    assert admin.execute("select rowver.prune(%s, %s)", (b["table"], str(head))).fetchone()[0] > 0
    assert logins.su.execute(read).fetchall() == later
    with pytest.raises(psycopg.DatabaseError, match="was pruned before version") as refused:
        logins.su.execute(f"select * from {b['schema']}.ledger__as_of(1)")
    assert refused.value.sqlstate == "RV006"  # rowver's own code (rowver/errors.py)
    assert admin.execute("select rowver.erase(%s, '{\"id\": 1}')", (b["table"],)).fetchone()[0] >= 1
    assert logins.su.execute(f"select count(*) from {b['schema']}.ledger__versions"
                             " where id = 1 and not rv_deleted").fetchone() == (0,)
    log = logins.su.execute("select message, db_user from rowver.changeset order by version desc limit 2").fetchall()
    assert [(m.split(" ")[0], who) for m, who in log] == [("erase", admin_role), ("prune", admin_role)]
    # what the table grants readers survives: its writer still reads its history
    assert len(logins.login(b["app"]).execute(f"select * from {b['schema']}.ledger__versions").fetchall()) > 0
    assert violations(logins.su) == []


def test_an_owner_prunes_and_erases_its_own_table(teams: dict, logins: Logins) -> None:
    a = teams["a"]
    own = logins.login(a["owner"])
    assert own.execute("select rowver.prune(%s, 'head')", (a["table"],)).fetchone()[0] > 0
    assert own.execute("select rowver.erase(%s, '{\"id\": 2}')", (a["table"],)).fetchone()[0] >= 1
    assert violations(logins.su) == []


def test_status_and_check_work_for_any_owner(teams: dict, logins: Logins) -> None:
    """Each team sees the state of what it may read, and no error for what it may not."""
    a, b = teams["a"], teams["b"]
    own_a = logins.login(a["owner"])
    counts = {t: (c, h) for t, c, h in own_a.execute(
        "select table_name, current_rows, history_rows from rowver.status()").fetchall()}
    assert counts == {f"{a['owner']}.items": (2, 3), f"{b['owner']}.ledger": (None, None)}
    assert own_a.execute("select * from rowver.check()").fetchall() == []
