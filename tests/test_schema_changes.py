"""Real schemas: migrations on a versioned table with data, partitioned tables, TRUNCATE,
row-level security, and column kinds. After every step, writes keep working and as-of
reads of every earlier version return what they returned before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import rowver


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as handle:
        yield handle


def snapshot(conn: psycopg.Connection, table: str, head: int) -> dict[int, list[tuple]]:
    fn = sql.Identifier(f"{table}__as_of")
    return {v: conn.execute(sql.SQL("select * from {}(%s) order by 1").format(fn), (v,)).fetchall()
            for v in range(1, head + 1)}


def test_a_migration_sequence_keeps_the_past(db: rowver.Database) -> None:
    c = db.conn
    c.execute("create table acct (id int primary key, owner text, balance int)")
    c.execute("insert into acct values (1, 'ann', 10), (2, 'bob', 20)")
    db.enable("acct")
    c.execute("update acct set balance = 11 where id = 1")

    def step(ddl: str, write: str) -> dict[int, list[tuple]]:
        before = snapshot(c, "acct", db.head())
        with c.transaction():
            c.execute(ddl)
            db.refresh("acct")
        c.execute(write)
        return before

    # add a column with a default: it reads NULL as of every version before it existed
    before = step("alter table acct add column tier text not null default 'basic'",
                  "update acct set tier = 'gold' where id = 2")
    after = snapshot(c, "acct", db.head())
    for v, rows in before.items():
        assert [r[:3] for r in after[v]] == [r[:3] for r in rows]
        assert all(r[4] is None for r in after[v]), "a column added later reads NULL in the past"
    assert c.execute("select tier from acct order by id").fetchall() == [("basic",), ("gold",)]

    # rename a column: history follows, the past keeps its values
    before = step("alter table acct rename column owner to holder", "update acct set holder = 'cy' where id = 1")
    after = snapshot(c, "acct", db.head())
    assert {v: after[v] for v in before} == before
    assert db.history("acct", 1)["holder"].tolist() == ["ann", "ann", "cy"]

    # change a type (the view would block it: rowver.alter), with a USING of its own
    v = db.head()
    old = snapshot(c, "acct", v)
    db.alter("acct", "alter column balance type numeric(10,2) using balance::numeric(10,2) * 1")
    c.execute("update acct set balance = 12.5 where id = 1")
    new = snapshot(c, "acct", v)
    assert {k: [(r[0], r[1], float(r[2])) for r in rows] for k, rows in new.items()} == \
           {k: [(r[0], r[1], float(r[2])) for r in rows] for k, rows in old.items()}

    # drop a column: gone from the table and its as-of reads; the states superseded while it
    # existed keep its values in history (retired), current values go with the column
    db.alter("acct", "drop column tier")
    c.execute("update acct set balance = 13 where id = 2")
    cols = [d.name for d in c.execute("select * from acct__as_of(1)").description]
    assert "tier" not in cols
    assert c.execute("select count(*) from acct__history where tier is not null").fetchone()[0] > 0

    # add a NOT NULL column (with a default for existing rows), then keep writing
    with c.transaction():
        c.execute("alter table acct add column region text not null default 'eu'")
        db.refresh("acct")
    c.execute("insert into acct (id, holder, balance, region) values (3, 'dee', 1, 'us')")
    with db.changeset() as cs:
        cs.upsert("acct", [{"id": 3, "holder": "dee", "balance": 2, "region": "us"}])
    assert db.check().empty
    assert db.status().definition.tolist() == ["installed"]
    log = db.log()
    assert any("added" in str(m) for m in log.message)


def test_capture_refuses_a_table_altered_without_refresh(db: rowver.Database) -> None:
    c = db.conn
    c.execute("create table t (id int primary key, x int)")
    c.execute("insert into t values (1, 1)")
    db.enable("t")
    c.execute("alter table t add column y int")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="changed shape"):
        c.execute("update t set y = 2")
    assert db.status().definition.tolist() == ["outdated"]
    assert "definition" in db.check().invariant.tolist()
    assert db.refresh("t") == "added y"
    c.execute("update t set y = 2")
    assert db.refresh("t") == "up to date"
    assert db.refresh("t") == "up to date"  # idempotent
    c.execute("create table plain (id int)")
    assert db.refresh("plain") == "not versioned"


@pytest.mark.parametrize(("ddl", "first"), [
    ("alter table t add column y int", {"id": 1, "a": 1, "b": 2, "y": None}),
    # a swap of two same-typed names: capture reads columns by name, so without the check
    # it would file each value under the other's name
    ("alter table t rename column a to tmp; alter table t rename column b to a; alter table t rename column tmp to b",
     {"id": 1, "a": 2, "b": 1}),
])
def test_capture_notices_a_change_made_after_its_plan_was_cached(db: rowver.Database, db_url: str, ddl: str,
                                                                  first: dict) -> None:
    """The shape check runs when PostgreSQL (re)plans capture's check query; a change to T
    from another session must invalidate the plan this session has already cached."""
    c = db.conn
    c.execute("create table t (id int primary key, a int, b int)")
    c.execute("insert into t values (1, 1, 2)")
    enabled = db.enable("t")
    c.execute("update t set a = 10")  # capture has planned (and checked) in this session
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute(ddl)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="changed shape"):
        c.execute("update t set a = 11")
    assert len(db.history("t", 1)) == 2  # the refused update left nothing behind
    db.refresh("t")
    c.execute("update t set a = 12")
    assert db.as_of("t", enabled).drop(columns="rv_version").to_dict("records") == [first]
    assert db.check().empty


def test_partitioned_table(db: rowver.Database) -> None:
    c = db.conn
    c.execute("create table ev (region text, id int, val int, primary key (region, id)) partition by list (region)")
    c.execute("create table ev_eu partition of ev for values in ('eu')")
    c.execute("create table ev_us partition of ev for values in ('us')")
    c.execute("insert into ev values ('eu', 1, 1), ('us', 2, 2)")
    db.enable("ev")
    c.execute("update ev set val = 10 where id = 1")          # through the root
    c.execute("update ev_us set val = 20 where id = 2")       # straight into a leaf
    c.execute("update ev set region = 'us' where id = 1")     # a row moves between partitions
    c.execute("create table ev_asia (like ev including all)")
    c.execute("alter table ev attach partition ev_asia for values in ('asia')")
    assert "triggers" in db.check().invariant.tolist()          # the new leaf lacks capture
    db.refresh("ev")
    c.execute("insert into ev_asia (region, id, val) values ('asia', 3, 3)")
    c.execute("delete from ev_asia where id = 3")
    hist = c.execute("select region, id, val, rv_version, rv_until, rv_deleted from ev__history"
                     " order by rv_version, region, id").fetchall()
    assert ("eu", 1, 1, 1, 2, False) in hist
    assert ("us", 2, 2, 1, 3, False) in hist
    assert any(r[:3] == ("eu", 1, 10) and not r[5] for r in hist)      # the state before the move
    assert any(r[:2] == ("eu", 1) and r[5] for r in hist)              # the key (eu, 1) ended
    assert any(r[:2] == ("asia", 3) and r[5] for r in hist)            # written via the new leaf
    v = c.execute("select max(version) from rowver.changeset").fetchone()[0]
    assert c.execute("select region, id, val from ev__as_of(%s) order by id", (v,)).fetchall() == \
        [("us", 1, 10), ("us", 2, 20)]
    assert c.execute("select region, id, val from ev__as_of(1) order by id").fetchall() == \
        [("eu", 1, 1), ("us", 2, 2)]


def test_truncate_records_every_delete(db: rowver.Database) -> None:
    c = db.conn
    c.execute("create table parent (id int primary key)")
    c.execute("create table kid (id int primary key, parent_id int references parent(id))")
    c.execute("insert into parent select generate_series(1, 5)")
    c.execute("insert into kid select g, g from generate_series(1, 5) g")
    db.enable("parent")
    db.enable("kid")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"rowver\.truncate"):
        c.execute("truncate kid")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        c.execute("truncate parent cascade")
    assert db.truncate("parent", cascade=True) == 5
    assert c.execute("select count(*) from kid").fetchone()[0] == 0
    v = db.head()
    assert c.execute("select count(*) from kid__as_of(%s)", (v - 1,)).fetchone()[0] == 5
    assert c.execute("select count(*) from parent__history where rv_deleted").fetchone()[0] == 5
    c.execute("truncate kid")  # an empty versioned table may be truncated


def test_column_kinds(db: rowver.Database, server_url: str) -> None:
    c = db.conn
    try:  # the embedded server is built without libxml
        c.execute("select '<a/>'::xml")
        x = "'<a/>'"
    except psycopg.errors.FeatureNotSupported:
        x = "null"
    c.execute("create domain pos as int check (value > 0)")
    c.execute("create type pair as (a int, b text)")
    c.execute("""create table kinds (
        id int generated always as identity primary key,
        j json, jb jsonb, x xml, arr int[], p pair, d pos, pt point,
        doubled int generated always as (d * 2) stored,
        big text)""")
    c.execute(f"""insert into kinds (j, jb, x, arr, p, d, pt, big)
                  values ('{{"a": 1}}', '{{"a": 1}}', {x}, '{{1,2}}', row(1, 'x'), 3, '(1,2)', repeat('z', 100000))""")
    db.enable("kinds")
    # every kind compares: rewriting the same values makes no version
    c.execute(f"""update kinds set j = '{{"a": 1}}', jb = '{{"a": 1}}', x = {x}, arr = '{{1,2}}', p = row(1, 'x'),
                  d = 3, pt = '(1,2)', big = repeat('z', 100000)""")
    assert c.execute("select count(*) from kinds__history").fetchone()[0] == 0
    # a change to a small column keeps the large value, and history stores the generated one
    c.execute("update kinds set d = 4")
    assert c.execute("select d, doubled, length(big) from kinds__history").fetchall() == [(3, 6, 100000)]
    assert c.execute("select doubled from kinds__as_of(1)").fetchone()[0] == 6
    # revert of an identity ALWAYS column and a domain
    result = db.revert("kinds", 1)
    assert result.updated == 1
    assert c.execute("select d, doubled from kinds").fetchone() == (3, 6)
    c.execute("delete from kinds")
    db.revert("kinds", 1)  # re-inserts with the old identity value (OVERRIDING SYSTEM VALUE)
    assert c.execute("select id, d from kinds").fetchall() == [(1, 3)]


@pytest.fixture
def tenants(db: rowver.Database, db_url: str) -> Iterator[tuple[rowver.Database, list[psycopg.Connection]]]:
    c = db.conn
    roles = [f"rv_tenant_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    c.execute("create table notes (id int primary key, tenant text not null, body text)")
    c.execute("alter table notes enable row level security")
    c.execute("create policy own on notes using (tenant = current_user)")
    for role in roles:
        c.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        c.execute(sql.SQL("grant select, insert, update, delete on notes to {}").format(sql.Identifier(role)))
    c.execute("insert into notes values (1, %s, 'a'), (2, %s, 'b')", roles)
    db.enable("notes")
    conns = [psycopg.connect(db_url, user=role, autocommit=True) for role in roles]
    try:
        yield db, conns
    finally:
        for conn in conns:
            conn.close()
        for role in roles:
            c.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            c.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_tenants_never_read_each_others_past(tenants: tuple[rowver.Database, list[psycopg.Connection]]) -> None:
    db, (a, b) = tenants
    a.execute("update notes set body = 'a2' where id = 1")
    b.execute("update notes set body = 'b2' where id = 2")
    for conn, mine in ((a, 1), (b, 2)):
        for query in ("select id from notes", "select id from notes__history", "select id from notes__versions",
                      "select id from notes__as_of(1)", "select id from rowver.as_of(null::notes, '1')"):
            ids = {r[0] for r in conn.execute(query)}
            assert ids == {mine}, (query, ids)
    assert db.check().empty
    # a policy added later reaches history on refresh, and check notices until then
    db.conn.execute("create policy no_secrets on notes as restrictive using (body <> 'secret')")
    assert "policies" in db.check().invariant.tolist()
    db.refresh("notes")
    assert db.check().empty


def test_virtual_generated_columns_read_right_in_the_past(db: rowver.Database) -> None:
    if db.conn.info.server_version < 180000:
        pytest.skip("virtual generated columns arrived in PostgreSQL 18")
    c = db.conn
    c.execute("create table v (id int primary key, a int, dbl int generated always as (a * 2) virtual)")
    c.execute("insert into v (id, a) values (1, 1)")
    db.enable("v")
    c.execute("update v set a = 5")
    assert c.execute("select a, dbl from v__as_of(1)").fetchall() == [(1, 2)]
    assert c.execute("select a, dbl from v__as_of(2)").fetchall() == [(5, 10)]
    assert c.execute("select a, dbl from v__versions order by rv_version").fetchall() == [(1, 2), (5, 10)]


def test_a_temporary_table_of_the_same_name_captures_nothing(db: rowver.Database) -> None:
    c = db.conn
    c.execute("create table shadow (id int primary key, x int)")
    c.execute("insert into shadow values (1, 1)")
    db.enable("shadow")
    c.execute("create temp table shadow__history (like shadow__history)")
    c.execute("create temp table shadow (id int primary key, x int)")  # pg_temp comes first on the path
    c.execute("update public.shadow set x = 2")
    assert c.execute("select count(*) from public.shadow__history").fetchone()[0] == 1
    assert c.execute("select count(*) from pg_temp.shadow__history").fetchone()[0] == 0
    assert c.execute("select x from public.shadow__as_of(1)").fetchone()[0] == 1
