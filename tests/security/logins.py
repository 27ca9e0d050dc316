"""Real logins for the attacks of DESIGN §6: table owners of two teams, application roles,
tenants, rowver_admin and rowver_tagger members, and a role with a schema of its own to plant
operators in. Each role is made for one test and dropped after it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class Logins:
    su: psycopg.Connection  # the test database, as a superuser
    url: str
    roles: list[str] = field(default_factory=list)
    conns: list[psycopg.Connection] = field(default_factory=list)

    def role(self, kind: str, *member_of: str) -> str:
        """A new login role (``kind`` plus a random suffix), a member of ``member_of``."""
        name = f"rv_{kind}_{uuid.uuid4().hex[:6]}"
        self.su.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        self.roles.append(name)
        for group in member_of:
            self.su.execute(sql.SQL("grant {} to {}").format(sql.Identifier(group), sql.Identifier(name)))
        return name

    def owner(self, kind: str) -> str:
        """A role that owns a schema named like itself, and nothing of rowver's."""
        name = self.role(kind)
        self.su.execute(sql.SQL("create schema {} authorization {}").format(sql.Identifier(name), sql.Identifier(name)))
        return name

    def login(self, role: str, search_path: str | None = None) -> psycopg.Connection:
        """An autocommit session as ``role`` (closed after the test)."""
        options = {"options": f"-c search_path={search_path}"} if search_path else {}
        conn = psycopg.connect(self.url, user=role, autocommit=True, **options)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        # versioned tables the roles own go the way rowver takes them out, so that the
        # after-test `rowver check` finds the registry in order
        for (relid,) in self.su.execute(
                "select v.relid::text from rowver.versioned v join pg_class c on c.oid = v.relid"
                " where c.relowner::regrole::text = any(%s)", (self.roles,)).fetchall():
            self.su.execute("select rowver.disable(%s)", (relid,))
        for name in self.roles:
            self.su.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(name)))
            self.su.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def past(conn: psycopg.Connection, table: str, head: int) -> dict[str, Any]:
    """Everything rowver has recorded about ``table`` up to version ``head``, read as a
    superuser: every version's as-of rows, the history table, the changesets and what they
    say they touched, and its registry entry."""
    as_of = conn.execute("select rowver.as_of_sql(%s::regclass, 0)", (table,)).fetchone()[0].rsplit("(", 1)[0]
    history = conn.execute("select rowver.versions_sql(%s::regclass)", (table,)).fetchone()[0]
    return {
        "as_of": [conn.execute(sql.SQL("select * from {}(%s) order by 1").format(sql.SQL(as_of)), (v,)).fetchall()
                  for v in range(head + 1)],
        "versions": conn.execute(sql.SQL("select * from {} where rv_version <= %s order by 1, rv_version")
                                 .format(sql.SQL(history)), (head,)).fetchall(),
        "changesets": conn.execute(
            "select c.version, c.db_user, c.db_role, c.author, c.message, c.created_at, ct.rows, ct.net"
            " from rowver.changeset c join rowver.changeset_table ct on ct.version = c.version"
            " join rowver.versioned v on v.id = ct.table_id where v.relid = %s::regclass and c.version <= %s"
            " order by 1", (table, head)).fetchall(),
        "registry": conn.execute("select * from rowver.versioned where relid = %s::regclass", (table,)).fetchall(),
    }


def violations(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select * from rowver.check()").fetchall()


Attack = Callable[[psycopg.Connection], Any]
