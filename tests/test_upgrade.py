"""Upgrading a database that rowver 0.1 versioned: the catalog files of this package, run
over the previous release's, hand each table's history to the table's owner, keep every
version readable, and leave `rowver check` clean."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rowver import _install

PREVIOUS = "1043d5b"  # the last commit of rowver 0.1's catalog (schema_version 1)
REPO = Path(__file__).resolve().parent.parent


def previous_files() -> list[str]:
    """The previous release's sql/ files, in install order, from this repository's history."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", PREVIOUS, "sql/"],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"commit {PREVIOUS} is not in this clone's history (a shallow clone?)")
    names = sorted(n for n in listed.stdout.split() if n.endswith(".sql"))
    return [subprocess.run(["git", "-C", str(REPO), "show", f"{PREVIOUS}:{n}"], capture_output=True,
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
