"""Class 4: history never reads more permissively than its table does now (DESIGN §6).
Tenants see only their own past; after the table's grants or policies change, history is
closed to everyone but its owner until rowver.refresh mirrors them (fail closed), and
rowver check names the drift."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, violations


@pytest.fixture
def docs(logins: Logins) -> dict:
    """docs (id, tenant, body) under row-level security: each tenant reads its own rows.
    Each row was changed once, so history holds every tenant's past."""
    owner = logins.owner("own")
    t1, t2 = logins.role("tenant1"), logins.role("tenant2")
    s = owner  # (role names here need no quotes)
    own = logins.login(owner)
    own.execute(f"grant usage on schema {s} to public")
    own.execute(f"create table {s}.docs (id integer primary key, tenant name not null, body text)")
    own.execute(f"insert into {s}.docs values (1, %s, 'plan'), (2, %s, 'secret plan'), (3, %s, 'memo')", (t1, t1, t2))
    own.execute(f"alter table {s}.docs enable row level security")
    own.execute(f"create policy tenant_rows on {s}.docs for select using (tenant = current_user)")
    own.execute(f"grant select on {s}.docs to {t1}, {t2}")
    own.execute("select rowver.enable(%s)", (f"{s}.docs",))
    own.execute(f"update {s}.docs set body = body || ' v2'")
    logins.su.execute("select rowver.publish_head()")
    return {"owner": owner, "own": own, "t1": t1, "t2": t2, "s": s, "table": f"{s}.docs"}


def reads(logins: Logins, role: str, docs: dict) -> dict[str, list]:
    """What `role` reads of docs' past, every way there is."""
    tenant = logins.login(role)
    s = docs["s"]
    return {
        "history": tenant.execute(f"select id, body from {s}.docs__history order by 1").fetchall(),
        "versions": tenant.execute(f"select id, body from {s}.docs__versions order by 1, rv_version").fetchall(),
        "as_of": tenant.execute(f"select id, body from {s}.docs__as_of(1) order by 1").fetchall(),
        "row": tenant.execute("select count(*) from rowver.history(%s, '{\"id\": 3}')", (docs["table"],)).fetchall(),
    }


def test_a_tenant_reads_only_its_own_past(docs: dict, logins: Logins) -> None:
    assert reads(logins, docs["t1"], docs) == {
        "history": [(1, "plan"), (2, "secret plan")],
        "versions": [(1, "plan"), (1, "plan v2"), (2, "secret plan"), (2, "secret plan v2")],
        "as_of": [(1, "plan"), (2, "secret plan")],
        "row": [(0,)],  # tenant 2's row: none of tenant 1's business
    }


def drift(logins: Logins, docs: dict) -> set[str]:
    return {i for t, i, _ in violations(logins.su) if t == docs["table"]}


ALL = [(1, "plan"), (2, "secret plan"), (3, "memo")]


@pytest.mark.parametrize("change,after", [
    ("create policy no_secrets on {s}.docs as restrictive for select using (body not like 'secret%')",
     [(1, "plan")]),
    ("alter policy tenant_rows on {s}.docs using (tenant = current_user and id > 1)", [(2, "secret plan")]),
    ("drop policy tenant_rows on {s}.docs", []),
    ("create policy everything on {s}.docs for select using (true)", ALL),  # wider: closed all the same
    ("alter table {s}.docs disable row level security", ALL),
])
def test_history_is_closed_while_the_tables_policies_are_not_mirrored(docs: dict, logins: Logins,
                                                                      change: str, after: list) -> None:
    docs["own"].execute(change.format(s=docs["s"]))
    assert drift(logins, docs) == {"policies"}
    for way in ("history", "versions", "as_of"):
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="closed until it is refreshed"):
            reads_one(logins, docs, way)
    docs["own"].execute("select rowver.refresh(%s)", (docs["table"],))
    assert drift(logins, docs) == set()
    # the past now reads as the table does now, under the same policies
    assert reads(logins, docs["t1"], docs)["history"] == after
    assert violations(logins.su) == []


def reads_one(logins: Logins, docs: dict, way: str) -> None:
    tenant = logins.login(docs["t1"])
    relation = {"history": "docs__history", "versions": "docs__versions", "as_of": "docs__as_of(1)"}[way]
    tenant.execute(f"select * from {docs['s']}.{relation}").fetchall()


def test_a_revoked_reader_reads_no_past(docs: dict, logins: Logins) -> None:
    docs["own"].execute(f"revoke select on {docs['s']}.docs from {docs['t2']}")
    tenant = logins.login(docs["t2"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for the history"):
        tenant.execute(f"select * from {docs['s']}.docs__history").fetchall()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        tenant.execute(f"select * from {docs['s']}.docs__as_of(1)").fetchall()
    assert drift(logins, docs) == {"grants"}
    docs["own"].execute("select rowver.refresh(%s)", (docs["table"],))  # the mirror revokes, too
    assert logins.su.execute("select has_table_privilege(%s, %s, 'SELECT')",
                             (docs["t2"], f"{docs['s']}.docs__history")).fetchone() == (False,)
    assert drift(logins, docs) == set()
    # and tenant 1, still a reader, reads as before
    assert reads(logins, docs["t1"], docs)["as_of"] == [(1, "plan"), (2, "secret plan")]
