"""Dump and restore (DESIGN §8), with the pg_dump, pg_restore and psql of the server's major
version.

A dump taken while writers run, restored with pg_restore (custom format) or psql (plain),
reads the same as of every version up to the head_mark the dump holds, creates no
version, and keeps capturing afterwards. A data-only restore into an existing schema
without --disable-triggers rewrites versions, and `rowver.check()` must catch it; with the
documented flag it is exact. A restore into another cluster must not trust allocation
rows that came with the dump.

What a data-only restore without --disable-triggers does to each table (schemas load in
name order, each table's COPY in its own transaction, the version sequence is set last):
- a table that loads before rowver's catalog (schemas public and Sales "Q") fails its
  COPY: capture finds no registry row for it (changeset_table.table_id is null). It stays
  empty; its history loads. `rows` names it (its changesets added rows it does not hold);
  `gap` when some key has superseded history; `registry` when the dump was a full one
  (rowver.column_life loads before the rowver.versioned its foreign key points at, so its
  own COPY fails).
- a table that loads after it (zz_archive) is restamped: every row gets the version the
  sequence hands out before the restore sets it (5 here), whose changeset the dump already
  holds; record_change joins it. `restamped` names it: the allocation row says one
  transaction wrote version 5, the changeset says another did; and `rows`: its rows were
  counted twice, by the dump's changesets and by the restore's capture.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pgserver import client_bindir, report, server_major, throwaway
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import rowver
import rowver._install
from rowver._server import server_url_for

_mp = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")

ORDER_ITEMS = '"Sales ""Q"""."Order Items"'


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)


def run_ok(cmd: list[str]) -> None:
    done = run(cmd)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}"


def populate(conn: psycopg.Connection, url: str) -> None:
    """Versioned tables of several kinds (quoted names, a composite key, a partitioned table,
    a column added later, a schema sorting after rowver's), with some history and a tag."""
    conn.execute("create table items (id int primary key, name text, doc jsonb)")
    conn.execute("insert into items select g, 'item ' || g, jsonb_build_object('g', g) from generate_series(1, 60) g")
    conn.execute('create schema "Sales ""Q"""')
    conn.execute(f'create table {ORDER_ITEMS} (order_id int, line int, qty int not null, "préis" numeric(10, 2),'
                 " primary key (order_id, line))")
    conn.execute(f"insert into {ORDER_ITEMS} select g / 4, g % 4, g, g * 1.5 from generate_series(1, 40) g")
    conn.execute("create table events (id int, region text, payload text, primary key (id, region))"
                 " partition by list (region)")
    conn.execute("create table events_eu partition of events for values in ('eu')")
    conn.execute("create table events_us partition of events for values in ('us')")
    conn.execute("insert into events select g, case when g % 2 = 0 then 'eu' else 'us' end, 'p' || g"
                 " from generate_series(1, 40) g")
    conn.execute("create schema zz_archive")
    conn.execute("create table zz_archive.notes (k text primary key, body text)")
    conn.execute("insert into zz_archive.notes select 'k' || g, repeat('x', g) from generate_series(1, 20) g")
    for t in ("items", ORDER_ITEMS, "events", "zz_archive.notes"):
        conn.execute("select rowver.enable(%s)", (t,))
    conn.execute("update items set name = name || '!' where id <= 10")
    conn.execute("delete from items where id between 11 and 15")
    conn.execute("update events set region = 'eu' where id = 1")  # moves between partitions
    conn.execute(f'update {ORDER_ITEMS} set "préis" = "préis" + 1 where order_id = 2')
    conn.execute("update zz_archive.notes set k = 'moved' where k = 'k1'")  # a key change
    conn.execute("select rowver.alter('items', 'add column extra int')")
    conn.execute("update items set extra = id where id <= 5")
    conn.execute("select rowver.tag('before-dump')")
    with rowver.connect(url) as db, db.changeset(message="write layer", author="loader") as cs:
        cs.upsert("items", [{"id": 100, "name": "new", "doc": {"a": [1, 2]}}])
        cs.delete("zz_archive.notes", [{"k": "k2"}])


def _writer(url: str, w: int, deadline: float) -> None:
    rnd = random.Random(w)
    with psycopg.connect(url) as conn:
        i = 0
        while time.time() < deadline:
            i += 1
            k = rnd.randint(1, 120)
            op = rnd.random()
            try:
                if op < 0.3:
                    conn.execute("insert into items (id, name) values (%s, %s) on conflict (id) do update"
                                 " set name = excluded.name", (k, f"w{w}-{i}"))
                elif op < 0.45:
                    conn.execute("delete from items where id = %s", (k,))
                elif op < 0.7:
                    conn.execute(f"update {ORDER_ITEMS} set qty = qty + 1 where order_id = %s", (k % 10,))
                elif op < 0.9:
                    conn.execute("insert into events values (%s, %s, %s) on conflict (id, region) do update"
                                 " set payload = excluded.payload", (k, rnd.choice(("eu", "us")), f"w{w}-{i}"))
                else:
                    conn.execute("update zz_archive.notes set body = %s where k = %s", (f"w{w}-{i}", f"k{k % 20}"))
                time.sleep(rnd.uniform(0, 0.01))
                conn.commit()
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                conn.rollback()
            if i % 3 == 0:
                conn.execute("select rowver.publish_head()")
                conn.commit()


def versioned_as_of(conn: psycopg.Connection) -> dict[str, str]:
    """table -> its as-of function, schema-qualified."""
    return dict(conn.execute(
        "select r.relid::text, format('%I.%I', n.nspname, r.as_of_name) from rowver.versioned r"
        " join pg_class c on c.oid = r.relid join pg_namespace n on n.oid = c.relnamespace").fetchall())


def as_of_digests(conn: psycopg.Connection, upto: int) -> dict[str, list[str]]:
    """For each versioned table, a digest of its as-of result at every version 0..upto."""
    out = {}
    for table, fn in versioned_as_of(conn).items():
        q = sql.SQL("select (select md5(coalesce(string_agg(x::text, ';' order by x::text), ''))"
                    " from {}(v.v) x) from generate_series(0::bigint, %s::bigint) v(v) order by v.v"
                    ).format(sql.SQL(fn))  # fn is quoted by format('%I.%I') above
        out[table] = [d for (d,) in conn.execute(q, (upto,)).fetchall()]
    return out


def changesets(conn: psycopg.Connection) -> dict[int, tuple]:
    return {r[0]: r for r in conn.execute(
        "select version, xid::text, created_at, db_user, db_role, author, message, meta::text"
        " from rowver.changeset").fetchall()}


@pytest.fixture
def new_database(server_url: str, db_url: str) -> Iterator[Callable[[str], str]]:
    """Make empty databases on the test server (dropped afterwards); returns their URLs."""
    made: list[str] = []
    base = conninfo_to_dict(db_url)["dbname"]

    def make(suffix: str) -> str:
        name = f"{base}_{suffix}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
        made.append(name)
        return server_url_for(server_url, name)

    yield make
    with psycopg.connect(server_url, autocommit=True) as admin:
        for name in made:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def test_dump_taken_while_writing_restores_exactly(conn: psycopg.Connection, db_url: str, server_url: str,
                                                  new_database: Callable[[str], str], tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    bindir = client_bindir(server_major(server_url))
    populate(conn, db_url)
    head_before = conn.execute("select rowver.publish_head()").fetchone()[0]
    deadline = time.time() + 3.5
    procs = [_mp.Process(target=_writer, args=(db_url, w, deadline), daemon=True) for w in range(3)]
    for p in procs:
        p.start()
    slow = psycopg.connect(db_url)
    try:
        time.sleep(1.0)
        # a writer that holds a version across the dumps: head_mark stays below it meanwhile,
        # while newer versions commit (and are dumped) above it
        slow.execute("update zz_archive.notes set body = 'slow' where k = 'k3'")
        time.sleep(0.3)
        dumps = {"custom": tmp_path / "db.dump", "plain": tmp_path / "db.sql"}
        run_ok([str(bindir / "pg_dump"), "-Fc", "-f", str(dumps["custom"]), "-d", db_url])
        run_ok([str(bindir / "pg_dump"), "-Fp", "-f", str(dumps["plain"]), "-d", db_url])
        slow.commit()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
    finally:
        slow.close()
        for p in procs:
            if p.is_alive():
                p.kill()
    conn.execute("select rowver.publish_head()")
    source_changesets = changesets(conn)

    figures = []
    for fmt, path in dumps.items():
        url = new_database(fmt)
        if fmt == "custom":
            run_ok([str(bindir / "pg_restore"), "--exit-on-error", "-d", url, str(path)])
        else:
            run_ok([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)])
        with psycopg.connect(url, autocommit=True) as restored:
            mark = restored.execute("select head from rowver.head_mark").fetchone()[0]
            assert mark > head_before + 10, "head_mark hardly moved while the writers ran"
            assert max(changesets(restored)) > mark, "nothing above head_mark was dumped"
            # identical as-of reads at every version up to head_mark at dump time
            assert as_of_digests(restored, mark) == as_of_digests(conn, mark), f"{fmt}: as-of reads differ"
            # no spurious versions: every changeset came with the dump, unchanged, and none below
            # head_mark is missing
            got = changesets(restored)
            assert {v: source_changesets.get(v) for v in got} == got, f"{fmt}: changesets the source never had"
            assert {v for v in source_changesets if v <= mark} <= set(got)
            assert restored.execute("select * from rowver.check()").fetchall() == []
            definitions = restored.execute("select definition from rowver.status()").fetchall()
            assert {d for (d,) in definitions} == {"installed"}
            last = max(got)
            # capture keeps working: plain SQL and the write layer, each a new version above
            # everything the dump held, readable as of itself; the past does not move
            restored.execute("update items set name = 'after restore' where id = 2")
            v1 = restored.execute("select max(version) from rowver.changeset").fetchone()[0]
            with rowver.connect(url) as db:
                with db.changeset(message="after restore") as cs:
                    cs.upsert(ORDER_ITEMS, [{"order_id": 99, "line": 1, "qty": 7, "préis": 1}])
                v2 = cs.version
                assert last < v1 < v2 <= db.head()
                assert db.as_of("items", v1).set_index("id").loc[2, "name"] == "after restore"
                frame = db.as_of(ORDER_ITEMS, v2)
                assert frame[(frame.order_id == 99) & (frame.line == 1)].qty.tolist() == [7]
            assert as_of_digests(restored, mark) == as_of_digests(conn, mark)
            assert restored.execute("select * from rowver.check()").fetchall() == []
            figures.append(f"{fmt}: head_mark {mark}, {len(got)} changesets dumped")
    report(request.config, f"dump/restore (pg_dump {server_major(server_url)}, taken while 3 writers ran): "
                           + "; ".join(figures) + ": as-of identical at every version up to head_mark, "
                           "no spurious versions, capture works after")


@pytest.fixture(scope="module")
def data_only_restores(server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A populated database (cloned from the template, like db_url, but once for the tests
    below), dumped, then restored data-only into a schema-only restore three times: with
    --disable-triggers (as documented), without, and without from a data-only dump (which
    pg_dump orders by foreign keys)."""
    bindir = client_bindir(server_major(server_url))
    names = {k: f"rowver_dataonly_{os.getpid()}_{k}"
             for k in ("source", "documented", "careless", "careless_data")}
    urls = {k: server_url_for(server_url, n) for k, n in names.items()}
    with psycopg.connect(server_url, autocommit=True) as admin:
        for k, n in names.items():
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(n)))
            admin.execute(sql.SQL("create database {} template {}").format(
                sql.Identifier(n), sql.Identifier(template_db if k == "source" else "template0")))
    try:
        with psycopg.connect(urls["source"], autocommit=True) as conn:
            populate(conn, urls["source"])
            mark = conn.execute("select rowver.publish_head()").fetchone()[0]
            expected, source_changesets = as_of_digests(conn, mark), changesets(conn)
        dump = tmp_path_factory.mktemp("dataonly") / "db.dump"
        data_dump = dump.with_name("data.dump")
        run_ok([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", urls["source"]])
        run_ok([str(bindir / "pg_dump"), "-Fc", "--data-only", "-f", str(data_dump), "-d", urls["source"]])
        for name, flags, data in (("documented", ["--disable-triggers", "--exit-on-error"], dump),
                                  ("careless", [], dump), ("careless_data", [], data_dump)):
            run_ok([str(bindir / "pg_restore"), "--schema-only", "--exit-on-error", "-d", urls[name], str(dump)])
            # without the flag, pg_restore reports errors (or not): rowver check is what decides
            run([str(bindir / "pg_restore"), "--data-only", *flags, "-d", urls[name], str(data)])
        yield {"mark": mark, "expected": expected, "changesets": source_changesets, **urls}
        with psycopg.connect(urls["source"], autocommit=True) as conn:
            assert conn.execute("select * from rowver.check()").fetchall() == []
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            for n in names.values():
                admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(n)))


def damage(url: str, mark: int, expected: dict[str, list[str]]) -> tuple[set[str], set[str]]:
    """(tables whose as-of reads changed, tables rowver.check() names)."""
    damaged, found = damage_by_invariant(url, mark, expected)
    return damaged, set(found)


def damage_by_invariant(url: str, mark: int,
                        expected: dict[str, list[str]]) -> tuple[set[str], dict[str, set[str]]]:
    """(tables whose as-of reads changed, each table rowver.check() names -> its invariants)."""
    with psycopg.connect(url, autocommit=True) as restored:
        found: dict[str, set[str]] = {}
        for t, invariant in restored.execute("select table_name, invariant from rowver.check()").fetchall():
            found.setdefault(t.removeprefix("public."), set()).add(invariant)  # check qualifies every name
        got = as_of_digests(restored, mark)
    return {t for t in expected if got.get(t) != expected[t]}, found


def test_data_only_restore_with_disable_triggers_is_exact(data_only_restores: dict) -> None:
    r = data_only_restores
    assert damage(r["documented"], r["mark"], r["expected"]) == (set(), set())
    with psycopg.connect(r["documented"], autocommit=True) as restored:
        assert changesets(restored) == r["changesets"]


def test_data_only_restore_without_disable_triggers_is_caught_by_check(data_only_restores: dict) -> None:
    r = data_only_restores
    damaged, found = damage(r["careless"], r["mark"], r["expected"])
    assert damaged, "the data-only restore without --disable-triggers changed nothing?"
    assert found, f"rowver check found nothing, but as-of reads changed for {damaged}"


def test_check_names_every_table_a_data_only_restore_damaged(data_only_restores: dict) -> None:
    r = data_only_restores
    damaged, found = damage_by_invariant(r["careless"], r["mark"], r["expected"])
    assert damaged == {"items", ORDER_ITEMS, "events", "zz_archive.notes"}
    assert damaged <= set(found), f"check missed {sorted(damaged - set(found))} (it named {sorted(found)})"
    # every table by the column registry (its COPY failed on the foreign key); the one whose
    # rows were restamped also by name
    assert all("registry" in found[t] for t in damaged)
    assert {t for t, invariants in found.items() if "restamped" in invariants} == {"zz_archive.notes"}


def test_check_after_a_data_only_restore_of_a_data_only_dump(data_only_restores: dict) -> None:
    """pg_dump --data-only orders tables by foreign keys, so the column registry loads; check
    names every damaged table by its row count (the ones whose COPY failed are empty, the
    restamped one counted twice), the restamped one by name, and the tables whose keys have
    superseded history by their gap."""
    r = data_only_restores
    damaged, found = damage_by_invariant(r["careless_data"], r["mark"], r["expected"])
    assert damaged == {"items", ORDER_ITEMS, "events", "zz_archive.notes"}
    assert damaged == set(found)
    assert all("rows" in found[t] for t in damaged)
    assert found["zz_archive.notes"] == {"restamped", "rows"}
    # events' one key with history ends in a tombstone, which needs no current row: only its
    # row count gives it away
    assert found["events"] == {"rows"}
    assert "gap" in found["items"] and "gap" in found[ORDER_ITEMS]
    assert "registry" not in set().union(*found.values())


def restore_target(conn: psycopg.Connection, sequence_at: int) -> None:
    """Emulate the target of a data-only restore: t empty, the sequence not yet set."""
    with conn.transaction():
        conn.execute("alter table t disable trigger user")
        conn.execute("delete from t")
        conn.execute("alter table t enable trigger user")
        conn.execute("select setval('rowver.version_seq', %s)", (sequence_at,))


@pytest.mark.corrupts_history
def test_check_names_rows_restamped_under_a_version_another_transaction_wrote(conn: psycopg.Connection) -> None:
    """A data-only restore's COPY, emulated: the triggers fire while the sequence is behind
    the changesets the restore loaded, so the version they hand out is one the dump holds."""
    conn.execute("create table t (id int primary key, n int)")
    conn.execute("insert into t select g, g from generate_series(1, 3) g")
    enabled = conn.execute("select rowver.enable('t')").fetchone()[0]
    conn.execute("update t set n = 0 where id = 1")
    conn.execute("select rowver.publish_head()")
    assert conn.execute("select * from rowver.check()").fetchall() == []
    restore_target(conn, enabled)
    conn.execute("insert into t select g, g from generate_series(1, 3) g")  # the COPY
    conn.execute("select setval('rowver.version_seq', %s)", (enabled + 1,))  # SEQUENCE SET
    assert {v for (v,) in conn.execute("select rv_version from t")} == {enabled + 1}
    # no key's history contradicts its current row here: the allocation tells, and the row
    # count (the emulated restore's delete went uncaptured, its COPY was captured)
    found = {("public.t", "restamped"), ("public.t", "rows")}
    assert set(conn.execute("select table_name, invariant from rowver.check()").fetchall()) == found
    assert set(conn.execute("select table_name, invariant from rowver.check('t')").fetchall()) == found


@pytest.mark.corrupts_history
def test_check_names_rows_restamped_under_a_version_head_had_passed(conn: psycopg.Connection) -> None:
    """The same, where the version handed out is one no changeset of the dump holds (a burnt
    one): its changeset is made after head had been published past it."""
    conn.execute("create table t (id int primary key, n int)")
    conn.execute("insert into t select g, g from generate_series(1, 3) g")
    conn.execute("select rowver.enable('t')")
    conn.execute("update t set n = 0 where id = 1")
    conn.execute("insert into t values (1, 1) on conflict do nothing")  # burns a version
    burnt = conn.execute("select last_value from rowver.version_seq").fetchone()[0]
    conn.execute("update t set n = 5 where id = 2")
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert head == burnt + 1
    assert conn.execute("select count(*) from rowver.changeset where version = %s", (burnt,)).fetchone()[0] == 0
    assert conn.execute("select * from rowver.check()").fetchall() == []
    restore_target(conn, burnt - 1)
    conn.execute("insert into t select g, g from generate_series(1, 3) g")
    conn.execute("select setval('rowver.version_seq', %s)", (head,))
    assert {v for (v,) in conn.execute("select rv_version from t")} == {burnt}
    found = conn.execute("select table_name, invariant, detail from rowver.check() where invariant = 'restamped'")
    assert [(t, d.split(" was made")[0]) for t, _, d in found] == [("public.t", f"changeset {burnt}")]


def test_restore_into_another_cluster_keeps_writing(server_url: str, tmp_path: Path) -> None:
    """Allocation rows of transactions committed after the last publish come with the dump;
    in another cluster a new transaction can get one of their transaction ids."""
    major = server_major(server_url)
    dump = tmp_path / "other.dump"
    with throwaway(major=major) as source:
        with source.connect() as c:
            rowver._install.install(c)
            c.execute("create table items (id int primary key, n int not null)")
            c.execute("insert into items select g, 0 from generate_series(1, 3) g")
            c.execute("select rowver.enable('items')")
            c.execute("select rowver.publish_head()")
            burn_until(c, int(c.execute("select pg_current_xact_id()::text").fetchone()[0]) + 3000)  # an older cluster
            c.execute("update items set n = 1 where id = 1")  # committed, never published
            stale = c.execute("select version, xid::text::bigint from rowver.allocation").fetchall()
            assert stale
        run_ok([str(source.bins.exe("pg_dump")), "-Fc", "-f", str(dump), "-d", source.url()])
    with throwaway(major=major) as target:
        with target.connect() as c:
            c.execute("create role rowver_owner nologin; create role rowver_admin nologin;"
                      " create role rowver_tagger nologin; grant rowver_tagger to rowver_admin")
        run_ok([str(target.bins.exe("pg_restore")), "--exit-on-error", "-d", target.url(), str(dump)])
        with target.connect() as c:
            xid = max(x for _, x in stale)
            burn_until(c, xid)
        with target.connect() as fresh:  # a new session: nothing allocated in it yet
            with fresh.transaction():
                assert int(fresh.execute("select pg_current_xact_id()::text").fetchone()[0]) == xid
                fresh.execute("update items set n = 2 where id = 2")
            v = fresh.execute("select rv_version from items where id = 2").fetchone()[0]
            assert v not in {version for version, _ in stale}
            assert fresh.execute("select * from rowver.check()").fetchall() == []


def burn_until(conn: psycopg.Connection, next_xid: int) -> None:
    """Use up transaction ids until the next transaction gets next_xid (subtransactions that
    write take one each; the last few go one at a time)."""
    conn.execute("create table if not exists rv_burn (i int)")
    current = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
    if next_xid - current > 30:
        conn.execute(f"do $$ begin for i in 1..{next_xid - current - 20} loop begin insert into rv_burn values (i);"
                     " exception when others then null; end; end loop; end $$")
    while current < next_xid - 1:
        current = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
    assert current == next_xid - 1, f"overshot: {current} >= {next_xid}"
