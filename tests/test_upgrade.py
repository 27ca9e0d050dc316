"""Upgrading a database that rowver 0.1 versioned: the catalog files of this package, run
over the previous release's, hand each table's history to the table's owner, keep every
version readable, and leave `rowver check` clean. Tables versioned by an earlier build of
this release get this build's generated objects, and their writers keep working."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rowver import _install

PREVIOUS = "1043d5b"  # the last commit of rowver 0.1's catalog (schema_version 1)
EARLIER_BUILD = "6841a64"  # 0.2 whose captures called rowver.renumber(regclass), since gone
REPO = Path(__file__).resolve().parent.parent


def previous_files(commit: str = PREVIOUS) -> list[str]:
    """A release's sql/ files, in install order, from this repository's history."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", commit, "sql/"],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone's history (a shallow clone?)")
    names = sorted(n for n in listed.stdout.split() if n.endswith(".sql"))
    return [subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{n}"], capture_output=True,
                           text=True, check=True).stdout for n in names]


@pytest.fixture
def old_db(bare_url: str) -> Iterator[str]:
    yield bare_url
    with psycopg.connect(bare_url, autocommit=True) as admin:
        if admin.execute("select 1 from pg_roles where rolname = 'rv_upgrade_team'").fetchone():
            admin.execute("drop owned by rv_upgrade_team cascade; drop role rv_upgrade_team")


def test_tables_versioned_by_the_previous_release_go_to_their_owners(old_db: str) -> None:
    files = previous_files()
    with psycopg.connect(old_db, autocommit=True) as su:
        for text in files:
            su.execute(text)
        su.execute("drop role if exists rv_upgrade_team")
        su.execute("create role rv_upgrade_team login; create schema team authorization rv_upgrade_team")
        su.execute("create table team.items (id integer primary key, name text)")
        su.execute("alter table team.items owner to rv_upgrade_team")
        su.execute("insert into team.items values (1, 'one'), (2, 'two')")
        su.execute("select rowver.enable('team.items')")  # 0.1: history owned by rowver_owner
        su.execute("update team.items set name = 'uno' where id = 1")
        su.execute("select rowver.tag('before-upgrade')")
        assert su.execute("select relowner::regrole::text from pg_class where oid = 'team.items__history'::regclass"
                          ).fetchone() == ("rowver_owner",)
        past = [su.execute("select * from team.items__as_of(%s) order by id", (v,)).fetchall() for v in (1, 2)]

        _install.install(su)

        owners = su.execute(
            "select distinct relowner::regrole::text from pg_class where relnamespace = 'team'::regnamespace"
            " union select distinct proowner::regrole::text from pg_proc where pronamespace = 'team'::regnamespace"
        ).fetchall()
        assert owners == [("rv_upgrade_team",)]
        assert su.execute("select * from rowver.check()").fetchall() == []
        assert [su.execute("select * from team.items__as_of(%s) order by id", (v,)).fetchall() for v in (1, 2)] == past
        assert su.execute("select pg_has_role('rowver_admin', 'rowver_owner', 'MEMBER')").fetchone() == (False,)
        assert su.execute("select name, action from rowver.tag_log").fetchall() == [("before-upgrade", "create")]
    with psycopg.connect(old_db, user="rv_upgrade_team", autocommit=True) as team:
        team.execute("update team.items set name = 'dos' where id = 2")
        assert team.execute("select count(*) from team.items__history").fetchone() == (2,)
        assert team.execute("select * from rowver.check()").fetchall() == []


def test_tables_versioned_by_an_earlier_build_are_made_again(bare_url: str) -> None:
    with psycopg.connect(bare_url, autocommit=True) as su:
        for text in previous_files(EARLIER_BUILD):
            su.execute(text)
        su.execute("create table items (id integer primary key, name text)")
        su.execute("insert into items values (1, 'one'), (2, 'two')")
        su.execute("select rowver.enable('items')")
        su.execute("update items set name = 'uno' where id = 1")
        head = su.execute("select rowver.publish_head()").fetchone()[0]
        past = [su.execute("select * from items__as_of(%s) order by id", (v,)).fetchall() for v in range(1, head + 1)]

        _install.install(su)

        su.execute("update items set name = 'dos' where id = 2")  # the old capture called a function now gone
        assert su.execute("select count(*) from pg_indexes where tablename = 'items__history'"
                          " and (indexdef like '%USING brin (rv_until)%' or indexdef like '%USING brin (rv_version)%')"
                          ).fetchone() == (2,)
        assert su.execute("select * from rowver.check()").fetchall() == []
        assert [su.execute("select * from items__as_of(%s) order by id", (v,)).fetchall()
                for v in range(1, head + 1)] == past
        assert su.execute("select name from items__as_of(rowver.publish_head()) order by id").fetchall() == [
            ("uno",), ("dos",)]


def test_install_passes_over_a_versioned_table_dropped_with_cascade(conn: psycopg.Connection) -> None:
    conn.execute("create table gone (id integer primary key)")
    conn.execute("select rowver.enable('gone')")
    conn.execute("drop table gone cascade")  # its registry entry stays until rowver.forget
    _install.install(conn)
    assert conn.execute("select invariant from rowver.check()").fetchall() == [("dropped",)]
    conn.execute("select rowver.forget(%s)", (conn.execute("select relid::oid from rowver.versioned").fetchone()[0],))


# The catalog's shape, as a fresh install and an upgrade must both leave it: every relation of
# schema rowver with its columns (as a set: an upgrade adds columns at the end), indexes,
# constraints, triggers, policies and grants; every function with its arguments, body, settings,
# security and grants; the sequence's grants.
SHAPE = {
    "columns": """select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         pg_get_expr(d.adbin, d.adrelid)
                    from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
                   where c.relnamespace = 'rowver'::regnamespace""",
    "relations": """select relname, relkind, relowner::regrole::text, coalesce(relacl::text, ''), relrowsecurity
                      from pg_class where relnamespace = 'rowver'::regnamespace and relkind <> 'i'""",
    "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'rowver'",
    "constraints": """select conrelid::regclass::text, conname, pg_get_constraintdef(oid) from pg_constraint
                       where connamespace = 'rowver'::regnamespace""",
    "triggers": """select tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) from pg_trigger
                    where not tgisinternal
                      and tgrelid in (select oid from pg_class where relnamespace = 'rowver'::regnamespace)""",
    "policies": "select tablename, policyname, cmd, roles::text, qual, with_check from pg_policies where schemaname = 'rowver'",
    "functions": """select p.oid::regprocedure::text, pg_get_function_result(p.oid), md5(p.prosrc), p.prosecdef,
                           coalesce(p.proconfig::text, ''), p.provolatile, proowner::regrole::text,
                           coalesce(p.proacl::text, '')
                      from pg_proc p where p.pronamespace = 'rowver'::regnamespace""",
}


def catalog_shape(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {what: sorted(conn.execute(query).fetchall(), key=repr) for what, query in SHAPE.items()}


def test_an_upgraded_catalog_is_a_fresh_one(bare_url: str, conn: psycopg.Connection) -> None:
    """Installing this package over rowver 0.1's catalog leaves exactly what a fresh install
    makes (column order aside), so nothing an upgrade skips or leaves behind goes unseen."""
    fresh = catalog_shape(conn)  # (conn: a database cloned from a fresh install)
    with psycopg.connect(bare_url, autocommit=True) as old:
        for text in previous_files():
            old.execute(text)
        _install.install(old)
        upgraded = catalog_shape(old)
    for what in SHAPE:
        assert upgraded[what] == fresh[what], (what, [("upgraded", r) for r in upgraded[what] if r not in fresh[what]],
                                               [("fresh", r) for r in fresh[what] if r not in upgraded[what]])
