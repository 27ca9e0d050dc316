"""Class 5: tags (DESIGN §6). Changing a tag needs rowver_tagger, every change is recorded
(who, when, old and new version), a protected tag moves or goes only once rowver_admin lifts
the protection, and no tag may take a name a ref reads otherwise."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, violations

DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture
def versions(logins: Logins) -> Logins:
    """A versioned table with three versions, and a compliance tag on the first."""
    su = logins.su
    su.execute("create table facts (id integer primary key, x integer)")
    su.execute("insert into facts values (1, 1)")
    su.execute("select rowver.enable('facts')")
    su.execute("update facts set x = 2")
    su.execute("update facts set x = 3")
    su.execute("grant select, update on facts to public")
    su.execute("select rowver.refresh('facts')")
    su.execute("select rowver.tag('audit-2026', '1')")
    su.execute("select rowver.protect_tag('audit-2026')")
    return logins


def tags(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select name, version, protected from rowver.tag order by name").fetchall()


@pytest.mark.parametrize("statement", [
    "select rowver.tag('mine', '2')",
    "select rowver.tag('audit-2026', '2', move => true)",
    "select rowver.untag('audit-2026')",
    "select rowver.protect_tag('audit-2026', false)",
    "insert into rowver.tag (name, version) values ('mine', 2)",
    "update rowver.tag set version = 3",
    "delete from rowver.tag",
    "insert into rowver.tag_log (name, new_version, protected, db_role, action) values ('x', 1, false, 'x', 'create')",
    "delete from rowver.tag_log",
])
def test_an_application_role_cannot_change_tags(versions: Logins, statement: str) -> None:
    before = (tags(versions.su), versions.su.execute("select * from rowver.tag_log").fetchall())
    app = versions.login(versions.role("app"))
    with pytest.raises(DENIED):
        app.execute(statement)
    assert (tags(versions.su), versions.su.execute("select * from rowver.tag_log").fetchall()) == before


def test_a_tagger_tags_but_only_an_admin_unprotects(versions: Logins) -> None:
    tagger_role = versions.role("tagger", "rowver_tagger")
    admin_role = versions.role("admin", "rowver_admin")
    tagger, admin = versions.login(tagger_role), versions.login(admin_role)
    tagger.execute("select rowver.tag('train', '2')")
    tagger.execute("select rowver.tag('train', '3', move => true)")
    for attempt in ("select rowver.untag('audit-2026')", "select rowver.tag('audit-2026', '3', move => true)",
                    "select rowver.protect_tag('audit-2026', false)"):
        with pytest.raises(DENIED):
            tagger.execute(attempt)
    # what the app role once did to this tag (then prune destroyed what it kept) cannot happen
    versions.su.execute("select rowver.prune('facts', 'head')")
    assert versions.su.execute("select x from facts__as_of(rowver.resolve('audit-2026'))").fetchall() == [(1,)]
    admin.execute("select rowver.protect_tag('audit-2026', false)")
    tagger.execute("select rowver.untag('audit-2026')")
    assert tags(versions.su) == [("train", 3, False)]
    log = versions.su.execute("select name, action, old_version, new_version, db_user, db_role"
                              " from rowver.tag_log order by at").fetchall()
    assert log == [("audit-2026", "create", None, 1, "postgres", "postgres"),
                   ("audit-2026", "protect", 1, 1, "postgres", "postgres"),
                   ("train", "create", None, 2, tagger_role, tagger_role),
                   ("train", "move", 2, 3, tagger_role, tagger_role),
                   ("audit-2026", "unprotect", 1, 1, admin_role, admin_role),
                   ("audit-2026", "remove", 1, None, tagger_role, tagger_role)]
    assert violations(versions.su) == []


@pytest.mark.parametrize("name", ["head", "HEAD", "42", "now", "today", "tomorrow", "yesterday", "infinity",
                                  "epoch", "J2451545", "2026-01-01", "2026-01-01T10:00Z", "model:churn",
                                  "two words", "bell\x07", "ansi\x1b[31m", ""])
def test_a_name_a_ref_reads_otherwise_is_refused(versions: Logins, name: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid tag name"):
        versions.su.execute("select rowver.tag(%s, '1')", (name,))
    assert tags(versions.su) == [("audit-2026", 1, True)]


@pytest.mark.corrupts_history
def test_check_names_a_tag_changed_outside_rowver(versions: Logins) -> None:
    versions.su.execute("update rowver.tag set version = 2 where name = 'audit-2026'")  # as a superuser
    found = [(i, d) for _, i, d in violations(versions.su)]
    assert found == [("tags", "tag 'audit-2026' names version 2, but its last recorded change made it "
                              "name version 1, protected")]
