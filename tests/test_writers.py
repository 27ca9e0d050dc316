"""Existing writers keep working (DESIGN §3): a workload that sees no serialization failure on
plain tables in READ COMMITTED sees none on versioned tables, and every guarantee holds: one
version per committing transaction, each row's versions in commit order, as-of reads that
never change. Real clients only: pgbench's TPC-B, and processes writing hot rows."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from pathlib import Path

import psycopg
import pytest
from pgserver import report

from rowver.bench import _pgbench

SAMPLES = 50  # versions at which TPC-B's invariant is checked


def _invariant(conn: psycopg.Connection, version: int) -> tuple[int, int, int, int]:
    """TPC-B's balances as of a version: accounts, tellers, branches, and the history's deltas."""
    return conn.execute(
        "select (select coalesce(sum(abalance), 0) from pgbench_accounts__as_of(%(v)s)),"
        "       (select coalesce(sum(tbalance), 0) from pgbench_tellers__as_of(%(v)s)),"
        "       (select coalesce(sum(bbalance), 0) from pgbench_branches__as_of(%(v)s)),"
        "       (select coalesce(sum(delta), 0) from pgbench_history__as_of(%(v)s))", {"v": version}).fetchone()


@pytest.mark.slow
def test_tpcb_on_versioned_tables_fails_no_transaction(conn: psycopg.Connection, db_url: str,
                                                       request: pytest.FixtureRequest) -> None:
    if _pgbench.binary() is None:
        pytest.skip("no pgbench here")
    _pgbench.init(db_url, scale=1)
    for t in _pgbench.TABLES:
        conn.execute("select rowver.enable(%s)", (t,))
    first = conn.execute("select rowver.publish_head()").fetchone()[0]
    result = _pgbench.run(db_url, clients=4, jobs=2, seconds=8)  # no --max-tries: a failure is final
    assert "aborted" not in result.output, result.output
    assert result.failed == 0, result.output
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    versions = [v for (v,) in conn.execute("select version from rowver.changeset where version > %s"
                                           " order by version", (first,)).fetchall()]
    assert len(versions) == result.transactions  # one version per committed transaction
    sampled = versions[:: max(1, len(versions) // SAMPLES)] + [head]
    assert len(sampled) > SAMPLES
    for v in sampled:
        a, t, b, h = _invariant(conn, v)
        assert a == t == b == h, f"TPC-B's balances disagree as of version {v}: {(a, t, b, h)}"
    for t in _pgbench.TABLES:  # the current tables are the newest version
        assert conn.execute(f"select md5(string_agg(x::text, ',' order by x::text)) from (select * from {t}) x"
                            ).fetchone() == conn.execute(
            f"select md5(string_agg(x::text, ',' order by x::text)) from {t}__as_of(%s) x", (head,)).fetchone()
    assert conn.execute("select * from rowver.check()").fetchall() == []
    report(request.config, f"TPC-B on versioned tables (scale 1, 4 clients, 8 s, no retries): {result.transactions}"
                           f" transactions, {result.failed} failed, {result.tps:.0f} tps; the balances agree as of"
                           f" {len(sampled)} versions")


# -- eight clients, own row first, then hot rows ------------------------------------------------

HOT = (1, 2, 3, 4, 5)


def _client(url: str, c: int, count: int, out: str) -> None:
    """READ COMMITTED, never retrying: its own row first, then two or three hot rows in
    ascending key order; now and then a hot row is deleted and inserted again, carrying its
    value over. Each adds one to n on every row it writes, and logs its version and rows."""
    rnd = random.Random(c)
    log: list = []
    failures: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        for _ in range(count):
            rows = [100 + c]
            try:
                conn.execute("update acct set n = n + 1 where id = %s", (100 + c,))
                time.sleep(rnd.uniform(0, 0.002))
                for k in sorted(rnd.sample(HOT, rnd.randint(2, 3))):
                    # a row deleted and inserted again under a waiting statement is not found by it
                    # (READ COMMITTED): the next statement sees the new row
                    if rnd.random() < 0.3:
                        gone = None
                        while gone is None:
                            gone = conn.execute("delete from acct where id = %s returning n", (k,)).fetchone()
                        conn.execute("insert into acct values (%s, %s)", (k, gone[0] + 1))
                    else:
                        while conn.execute("update acct set n = n + 1 where id = %s", (k,)).rowcount == 0:
                            pass
                    rows.append(k)
                v = conn.execute("select rowver.current_version()").fetchone()[0]
                conn.commit()
                log.append([v, rows])
            except psycopg.Error as exc:
                conn.rollback()
                failures[exc.sqlstate or "?"] = failures.get(exc.sqlstate or "?", 0) + 1
    Path(out).write_text(json.dumps({"log": log, "failures": failures}))


def _run_clients(url: str, tmp_path: Path, count: int) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_client, args=(url, c, count, str(tmp_path / f"c{c}.json"))) for c in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return [json.loads((tmp_path / f"c{c}.json").read_text()) for c in range(8)]


@pytest.mark.slow
def test_hot_rows_after_own_rows_fail_nothing(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    count = 200
    conn.execute("create table acct (id int primary key, n bigint not null)")
    conn.execute("insert into acct select g, 0 from generate_series(1, 5) g"
                 " union all select 100 + g, 0 from generate_series(0, 7) g")
    # the same workload on a plain table first: what PostgreSQL itself fails
    (tmp_path / "plain").mkdir()
    plain = _run_clients(db_url, tmp_path / "plain", count)
    plain_failures = {s: sum(r["failures"].get(s, 0) for r in plain) for s in ("40001", "40P01")}
    conn.execute("update acct set n = 0")
    first = conn.execute("select rowver.enable('acct')").fetchone()[0]
    results = _run_clients(db_url, tmp_path, count)
    failures = {s: sum(r["failures"].get(s, 0) for r in results) for s in ("40001", "40P01")}
    assert failures["40001"] == plain_failures["40001"] == 0
    assert sum(len(r["log"]) for r in results) + failures["40P01"] == 8 * count
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    # every committed transaction is one version, and as of each version every row holds exactly
    # what the transactions at or below it added: each transaction whole, in commit order
    log = sorted((v, rows) for r in results for v, rows in r["log"])
    assert len({v for v, _ in log}) == len(log)
    expected = dict.fromkeys([*HOT, *range(100, 108)], 0)
    for v, rows in log:
        for k in rows:
            expected[k] += 1
        assert dict(conn.execute("select id, n from acct__as_of(%s)", (v,)).fetchall()) == expected, v
    assert dict(conn.execute("select id, n from acct").fetchall()) == expected
    assert first < log[0][0] and log[-1][0] <= head
    burned = head - first - len(log)  # versions given up: writers that were renumbered
    assert burned > 0, "the workload never made a writer supersede a newer version"
    assert conn.execute("select * from rowver.check()").fetchall() == []
    report(request.config, f"8 clients, own row then hot rows, deletes and re-inserts: {len(log)} transactions,"
                           f" 40001: {failures['40001']} (plain: {plain_failures['40001']}), 40P01: {failures['40P01']}"
                           f" (plain: {plain_failures['40P01']}); {burned} renumbered; every row as of each version checked")


# -- SERIALIZABLE --------------------------------------------------------------------------------

def _serializable_client(url: str, c: int, count: int, hot: bool, out: str) -> None:
    """SERIALIZABLE, never retrying: its own row (on an index page of its own), and with `hot`
    one of five hot rows as well."""
    rnd = random.Random(c)
    failures: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        for _ in range(count):
            try:
                conn.execute("update acct set n = n + 1 where id = %s", (1000 * (c + 1) + 500,))
                if hot:
                    conn.execute("update acct set n = n + 1 where id = %s", (rnd.randint(1, 5),))
                conn.commit()
            except psycopg.Error as exc:
                conn.rollback()
                failures[exc.sqlstate or "?"] = failures.get(exc.sqlstate or "?", 0) + 1
    Path(out).write_text(json.dumps(failures))


def _serializable_failures(url: str, tmp_path: Path, hot: bool) -> dict[str, int]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_serializable_client, args=(url, c, 150, hot, str(tmp_path / f"s{c}.json")))
             for c in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    total: dict[str, int] = {}
    for c in range(4):
        for state, n in json.loads((tmp_path / f"s{c}.json").read_text()).items():
            total[state] = total.get(state, 0) + n
    return total


@pytest.mark.slow
def test_serializable_writers_fail_as_on_plain_tables(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    conn.execute("create table acct (id int primary key, n bigint not null)")
    conn.execute("insert into acct select g, 0 from generate_series(1, 20000) g")
    conn.execute("analyze acct")  # (index scans: predicate locks on a few index pages, not the table)
    plain = _serializable_failures(db_url, tmp_path, hot=False)
    plain_hot = _serializable_failures(db_url, tmp_path, hot=True)
    conn.execute("update acct set n = 0")
    conn.execute("select rowver.enable('acct')")
    conn.execute("analyze acct")
    versioned = _serializable_failures(db_url, tmp_path, hot=False)
    # writers of rows no one else writes: rowver's own reads (the allocation, by row address)
    # add no read/write dependency between them
    assert versioned == plain == {}
    versioned_hot = _serializable_failures(db_url, tmp_path, hot=True)
    # hot rows: PostgreSQL's own serialization failures, nothing else
    assert set(versioned_hot) <= {"40001"}, versioned_hot
    committed = 4 * 150 + 2 * (4 * 150 - versioned_hot.get("40001", 0))  # (a hot one adds two)
    assert conn.execute("select sum(n) from acct").fetchone()[0] == committed
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select sum(n) from acct__as_of(%s)", (head,)).fetchone()[0] == committed
    assert conn.execute("select * from rowver.check()").fetchall() == []
    report(request.config, f"SERIALIZABLE, 4 clients x 150: own rows 40001 {versioned.get('40001', 0)}"
                           f" (plain: {plain.get('40001', 0)}); own row then a hot row 40001"
                           f" {versioned_hot.get('40001', 0)} (plain: {plain_hot.get('40001', 0)})")


@pytest.mark.parametrize("first_write", ["other table", "same table"])
def test_a_statement_that_meets_a_newer_row_midway_puts_all_its_rows_after_it(
        conn: psycopg.Connection, db_url: str, first_write: str) -> None:
    """One UPDATE of two rows whose second a later-numbered transaction committed: the stamp
    renumbers at that row, and the first row, stamped before, ends at the final version too,
    as does a row the transaction wrote before (restamped at commit)."""
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("create table other (id int primary key)")
    conn.execute("insert into items select g, 0 from generate_series(1, 3) g")
    conn.execute("select rowver.enable('items'), rowver.enable('other')")
    with psycopg.connect(db_url) as late:
        if first_write == "same table":
            late.execute("update items set qty = 30 where id = 3")  # its version, before the other's
        else:
            late.execute("insert into other values (1)")
        conn.execute("update items set qty = 20 where id = 2")  # a newer version commits row 2
        newer = conn.execute("select rv_version from items where id = 2").fetchone()[0]
        # a sequential scan meets row 1 (in place) before row 2 (moved to the end of the heap)
        late.execute("set local enable_indexscan = off; set local enable_bitmapscan = off")
        met = late.execute("update items set qty = qty + 1 where id in (1, 2) returning id").fetchall()
        assert met == [(1,), (2,)]  # (row 1 was stamped before the stamp renumbered at row 2)
        late.commit()
    final = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    assert final > newer
    assert conn.execute("select id, qty, rv_version from items order by id").fetchall() == [
        (1, 1, final), (2, 21, final), (3, 30 if first_write == "same table" else 0,
                                        final if first_write == "same table" else 1)]
    assert conn.execute("select id, qty, rv_version, rv_until from items__history order by id, rv_version"
                        ).fetchall() == [(1, 0, 1, final), (2, 0, 1, newer), (2, 20, newer, final)] + (
        [(3, 0, 1, final)] if first_write == "same table" else [])
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select id, qty from items__as_of(%s) order by id", (newer,)).fetchall() == [
        (1, 0), (2, 20), (3, 0)]
    assert head >= final
    assert conn.execute("select * from rowver.check()").fetchall() == []


@pytest.mark.parametrize("after", ["update", "insert", "delete", "nothing"])
def test_a_renumber_that_a_savepoint_rolled_back_leaves_the_transaction_writing(
        conn: psycopg.Connection, db_url: str, after: str) -> None:
    """ORMs retry inside savepoints. A transaction that renumbered (it met a newer row) in a
    savepoint it then rolled back is back at the version it gave up, but its session's currval
    is not: its next write renumbers again instead of failing as forged, and every row it
    commits carries its one final version, above the newer row's."""
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("insert into items select g, 0 from generate_series(1, 3) g")
    conn.execute("select rowver.enable('items')")
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        late.execute("update items set qty = 1 where id = 1")  # its version, first
        newer.execute("update items set qty = 20 where id = 2")  # a later version commits row 2
        newer_version = newer.execute("select rv_version from items where id = 2").fetchone()[0]
        late.execute("savepoint retry")
        late.execute("update items set qty = qty + 1 where id = 2")  # meets it: renumbers
        late.execute("rollback to savepoint retry")
        late.execute({"update": "update items set qty = 3 where id = 3",
                      "insert": "insert into items values (4, 4)",
                      "delete": "delete from items where id = 3",
                      "nothing": "select"}[after])
        late.commit()
    final = conn.execute("select rv_version from items where id = 1").fetchone()[0]  # the late one's
    rows = {"update": [(1, 1, final), (2, 20, newer_version), (3, 3, final)],
            "insert": [(1, 1, final), (2, 20, newer_version), (3, 0, 1), (4, 4, final)],
            "delete": [(1, 1, final), (2, 20, newer_version)],
            "nothing": [(1, 1, final), (2, 20, newer_version), (3, 0, 1)]}[after]
    assert conn.execute("select id, qty, rv_version from items order by id").fetchall() == rows
    # after another write it comes after the newer row; without one, it kept its first version
    assert (final > newer_version) == (after != "nothing")
    assert conn.execute("select array_agg(version order by version) from rowver.changeset where version > 1"
                        ).fetchone()[0] == sorted([final, newer_version])
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select id, qty from items__as_of(%s) order by id", (newer_version,)).fetchall() == (
        [(1, 0), (2, 20), (3, 0)] if after != "nothing" else [(1, 1), (2, 20), (3, 0)])
    assert head >= max(final, newer_version)
    assert conn.execute("select * from rowver.check()").fetchall() == []


@pytest.mark.parametrize("mode", ["immediate then deferred", "immediate to the end"])
@pytest.mark.parametrize("renumbered_before", [False, True])
def test_a_renumber_after_set_constraints_immediate_still_gives_every_row_the_final_version(
        conn: psycopg.Connection, db_url: str, mode: str, renumbered_before: bool) -> None:
    """SET CONSTRAINTS ALL IMMEDIATE (Django's check_constraints) fires rowver's commit triggers
    early, once. A renumber after it must still leave every row the transaction wrote, in
    every table, at its one final version, and that version's changeset."""
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("create table other (id int primary key)")
    conn.execute("insert into items select g, 0 from generate_series(1, 3) g")
    conn.execute("select rowver.enable('items'), rowver.enable('other')")
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        late.execute("update items set qty = 1 where id = 1")
        late.execute("insert into other values (1)")
        if renumbered_before:
            newer.execute("update items set qty = 20 where id = 2")
            late.execute("update items set qty = qty + 1 where id = 2")  # renumbers
        late.execute("set constraints all immediate")
        if mode == "immediate then deferred":
            late.execute("set constraints all deferred")
        newer.execute("update items set qty = 30 where id = 3")  # a newer version again
        last_newer = newer.execute("select rv_version from items where id = 3").fetchone()[0]
        late.execute("update items set qty = qty + 1 where id = 3")  # renumbers (again)
        late.commit()
    final = conn.execute("select rv_version from items where id = 3").fetchone()[0]
    assert final > last_newer
    versions = conn.execute("select rv_version from items where id = 1 union select rv_version from other"
                            + (" union select rv_version from items where id = 2" if renumbered_before else "")
                            ).fetchall()
    assert versions == [(final,)]
    assert conn.execute("select count(*) from rowver.changeset where version = %s", (final,)).fetchone()[0] == 1
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select id, qty from items__as_of(%s) order by id", (last_newer,)).fetchall() == [
        (1, 0), (2, 20 if renumbered_before else 0), (3, 30)]
    assert conn.execute("select count(*) from other__as_of(%s)", (last_newer,)).fetchone()[0] == 0
    assert head >= final
    assert conn.execute("select * from rowver.check()").fetchall() == []


@pytest.mark.parametrize("then", ["nothing", "a nested write"])
def test_a_renumber_rolled_back_inside_a_statement_leaves_its_rows_at_the_final_version(
        conn: psycopg.Connection, db_url: str, then: str) -> None:
    """A trigger of the application's writes another versioned table in an exception block:
    that write renumbers (it meets a newer row) and fails, and the block swallows the error,
    mid-statement. The statement's rows, stamped with the version the rollback gave back, and
    the ones written after the next nested write took a new one, all end at the final version."""
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("create table other (id int primary key, n int not null)")
    conn.execute("create table audit (id int primary key)")
    conn.execute("insert into items select g, 0 from generate_series(1, 4) g")
    conn.execute("insert into other values (1, 0)")
    conn.execute("select rowver.enable('items'), rowver.enable('other'), rowver.enable('audit')")
    conn.execute(f"""create function items_side() returns trigger language plpgsql as $$
        begin
          if NEW.id = 2 then
            begin
              update public.other set n = n + 1 where id = 1;  -- meets a newer row: renumbers
              raise exception 'not now';
            exception when raise_exception then null;
            end;
          elsif NEW.id = 3 and {'true' if then == 'a nested write' else 'false'} then
            insert into public.audit values (NEW.id);
          end if;
          return NEW;
        end $$""")
    conn.execute("create trigger side before update on items for each row execute function items_side()")
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        late.execute("update items set qty = 1 where id = 1")
        newer.execute("update other set n = 5 where id = 1")
        newer_version = newer.execute("select rv_version from other").fetchone()[0]
        late.execute("set local enable_indexscan = off; set local enable_bitmapscan = off")
        late.execute("update items set qty = qty + 1 where id between 2 and 4")  # in id order (heap order)
        late.commit()
    final = conn.execute("select rv_version from items where id = 1").fetchone()[0]
    assert final > newer_version
    assert conn.execute("select id, qty, rv_version from items order by id").fetchall() == [
        (1, 1, final), (2, 1, final), (3, 1, final), (4, 1, final)]
    assert conn.execute("select n, rv_version from other").fetchall() == [(5, newer_version)]
    assert conn.execute("select rv_version from audit").fetchall() == ([(final,)] if then == "a nested write" else [])
    assert conn.execute("select id, rv_version, rv_until from items__history order by id").fetchall() == [
        (i, 1, final) for i in range(1, 5)]
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select sum(qty) from items__as_of(%s)", (newer_version,)).fetchone()[0] == 0
    assert head >= final
    assert conn.execute("select * from rowver.check()").fetchall() == []


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
@pytest.mark.parametrize("lose", ["reset all", "select set_config('rowver.allocation', '', true)"])
def test_a_transaction_that_loses_its_settings_keeps_one_version(
        conn: psycopg.Connection, db_url: str, isolation: str, lose: str) -> None:
    """RESET ALL between two writes clears the transaction-local settings that point at the
    transaction's allocation: its next write finds the allocation again instead of taking a
    second version (which would show half the transaction as of the first)."""
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("create table other (id int primary key)")
    conn.execute("insert into items select g, 0 from generate_series(1, 3) g")
    conn.execute("select rowver.enable('items'), rowver.enable('other')")
    with psycopg.connect(db_url) as writer:
        writer.execute(f"set transaction isolation level {isolation}")
        writer.execute("update items set qty = 1 where id = 1")
        writer.execute(lose)
        writer.execute("insert into other values (1)")
        writer.execute("update items set qty = 2 where id = 2")
        writer.commit()
    assert conn.execute("select count(distinct rv_version) from (select rv_version from items where qty > 0"
                        " union all select rv_version from other) v").fetchone()[0] == 1
    assert conn.execute("select count(*) from rowver.changeset where version > 1").fetchone()[0] == 1
    assert conn.execute("select * from rowver.check()").fetchall() == []


def test_a_restamp_finds_a_hot_keys_history_by_key_however_long(conn: psycopg.Connection, db_url: str) -> None:
    """A renumbered transaction's restamp reads the history of the keys it wrote, by key: not
    through history's BRIN index on rv_until, which PostgreSQL 18 chose for hot keys' long
    histories and which reads every range not yet summarized (at every restamp, under the hot
    rows' locks). So it reads a few pages, however long the history."""
    conn.execute("create table hot (id int primary key, n int not null)")
    conn.execute("insert into hot select g, 0 from generate_series(1, 20) g")
    conn.execute("select rowver.enable('hot')")
    for _ in range(800):  # 16,000 superseded states, 800 for each of 20 keys, in ranges never summarized
        conn.execute("update hot set n = n + 1")
    conn.execute("analyze hot, hot__history")
    pages = conn.execute("select pg_relation_size('hot__history') / current_setting('block_size')::int").fetchone()[0]
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        for round_ in range(7):  # (past the five custom plans PL/pgSQL makes before it keeps a generic one)
            late.execute("update hot set n = n + 1 where id = 1")
            newer.execute("update hot set n = n + 1 where id = 2")
            late.execute("update hot set n = n + 1 where id = 2")  # meets a newer version: renumbers
            before = late.execute("select pg_stat_get_xact_blocks_fetched('hot__history'::regclass)").fetchone()[0]
            late.execute("set constraints all immediate")  # the restamp at commit, now
            read = late.execute("select pg_stat_get_xact_blocks_fetched('hot__history'::regclass)").fetchone()[0]
            late.execute("set constraints all deferred")
            final = late.execute("select rowver.current_version()").fetchone()[0]
            late.commit()
            assert read - before < 20, f"restamp {round_ + 1} read {read - before} of history's {pages} pages"
            assert conn.execute("select array_agg(rv_version) from hot where id in (1, 2)").fetchone()[0] == [final] * 2
    assert pages > 100
    assert conn.execute("select * from rowver.check()").fetchall() == []


def test_a_restamp_past_the_tracked_keys_moves_every_row(conn: psycopg.Connection, db_url: str) -> None:
    """A statement of more than 256 rows is tracked as '*', not key by key: the restamp after a
    renumber then finds the transaction's rows by their version, in the table and in history."""
    conn.execute("create table wide (id int primary key, n int not null)")
    conn.execute("insert into wide select g, 0 from generate_series(1, 1000) g")
    conn.execute("select rowver.enable('wide')")
    conn.execute("update wide set n = 1")  # a state for each key in history
    before = conn.execute("select rowver.publish_head()").fetchone()[0]
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        late.execute("update wide set n = 2 where id <= 300")
        newer.execute("update wide set n = 3 where id = 1000")
        late.execute("update wide set n = 2 where id = 1000")  # meets a newer version: renumbers
        final = late.execute("select rowver.current_version()").fetchone()[0]
        late.commit()
    assert conn.execute("select rv_version, count(*) from wide where n = 2 group by 1").fetchall() == [(final, 301)]
    assert conn.execute("select count(*) from wide__history where rv_until = %s", (final,)).fetchone()[0] == 301
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    counts = "select n, count(*) from wide__as_of(%s) group by n order by n"
    assert conn.execute(counts, (final - 1,)).fetchall() == [(1, 999), (3, 1)]
    assert conn.execute(counts, (head,)).fetchall() == [(1, 699), (2, 301)]
    assert head > before
    assert conn.execute("select * from rowver.check()").fetchall() == []


def test_a_restamp_leaves_the_row_a_before_trigger_of_the_table_would_have_changed(
        conn: psycopg.Connection, db_url: str) -> None:
    """A renumbered transaction's restamp updates its rows once more at commit, which fires the
    table's own BEFORE triggers: one that counts edits or stamps a clock, in a compared column or
    an ignored one, would change the row a second time, on a plain table never. The restamp
    moves the version only."""
    virtual = ", tripled int generated always as (bal * 3) virtual" if conn.info.server_version >= 180000 else ""
    for name in ("acct", "twin"):  # twin: the same table, not versioned
        conn.execute(f"create table {name} (id int primary key, bal int not null, edits int not null default 0,"
                     f" touched timestamptz, doubled int generated always as (bal * 2) stored{virtual})")
        conn.execute(f"insert into {name} (id, bal) values (1, 0), (2, 0)")
    conn.execute("create function bump() returns trigger language plpgsql as $$"
                 " begin NEW.edits := OLD.edits + 1; NEW.touched := clock_timestamp(); return NEW; end $$")
    for name in ("acct", "twin"):
        conn.execute(f"create trigger bump before update on {name} for each row execute function bump()")
    # and one whose trigger stamps an ignored column only (which changes in place, making no version)
    conn.execute("create table note (id int primary key, n int not null, seen timestamptz)")
    conn.execute("insert into note values (1, 0)")
    conn.execute("create function seen() returns trigger language plpgsql as $$"
                 " begin NEW.seen := clock_timestamp(); return NEW; end $$")
    conn.execute("create trigger seen before update on note for each row execute function seen()")
    conn.execute("select rowver.enable('acct'), rowver.enable('note', ignore => array['seen'])")
    with psycopg.connect(db_url) as late, psycopg.connect(db_url, autocommit=True) as newer:
        for name in ("acct", "twin"):
            late.execute(f"update {name} set bal = bal + 1 where id = 1")
        late.execute("update note set n = 1")
        written = late.execute("select touched from acct where id = 1").fetchone()[0]
        seen = late.execute("select seen from note").fetchone()[0]
        for name in ("acct", "twin"):
            newer.execute(f"update {name} set bal = bal + 10 where id = 2")
            late.execute(f"update {name} set bal = bal + 1 where id = 2")  # acct: meets a newer version, renumbers
        final = late.execute("select rowver.current_version()").fetchone()[0]
        late.commit()
    rows = "select id, bal, edits, doubled from {} order by id"
    assert conn.execute(rows.format("acct")).fetchall() == conn.execute(rows.format("twin")).fetchall() == [
        (1, 1, 1, 2), (2, 11, 2, 22)]
    assert conn.execute("select touched, rv_version from acct where id = 1").fetchone() == (written, final)
    assert conn.execute("select n, seen, rv_version from note").fetchone() == (1, seen, final)
    if virtual:
        assert conn.execute("select array_agg(tripled order by id) from acct").fetchone()[0] == [3, 33]
    assert conn.execute("select * from rowver.check()").fetchall() == []
