"""Installing without the right to create roles: `rowver init` says what an administrator
must run, and changes nothing; with the roles in place it installs as an ordinary owner, and
a team that owns a table enables it without any rowver role."""

from __future__ import annotations

import psycopg
import pytest
from pgserver import server_major, throwaway
from psycopg.conninfo import make_conninfo

import rowver


def test_install_without_createrole_names_what_to_run(server_url: str) -> None:
    # a throwaway cluster: the shared test servers already have rowver's roles
    with throwaway(major=server_major(server_url)) as server:
        with psycopg.connect(server.url(), autocommit=True) as su:
            su.execute("create role deployer login")
            su.execute("create database app owner deployer")
        db = rowver.Database(make_conninfo(server.url("app"), user="deployer"))
        with pytest.raises(rowver.PermissionDeniedError) as err:
            db.init()
        assert "needs the roles rowver_owner, rowver_admin and rowver_tagger" in str(err.value)
        assert "CREATE ROLE rowver_owner NOLOGIN" in (err.value.hint or "")
        assert db.catalog_version() is None  # nothing half-installed
        with psycopg.connect(server.url("app"), autocommit=True) as su:  # an administrator does as told
            su.execute("create role rowver_owner nologin; create role rowver_admin nologin;"
                       " create role rowver_tagger nologin; grant rowver_tagger to rowver_admin;"
                       " grant rowver_owner to deployer; grant create on database app to rowver_owner")
        db.init()
        db.conn.execute("create table t (id int primary key, x int)")
        db.enable("t")
        db.conn.execute("update t set x = 1")
        assert db.check().empty
        db.close()
        with psycopg.connect(server.url("app"), autocommit=True) as su:
            su.execute("create role team login; create schema team authorization team")
        team = rowver.Database(make_conninfo(server.url("app"), user="team"))
        team.conn.execute("create table team.t (id int primary key, x int)")
        team.conn.execute("insert into team.t values (1, 0)")
        team.enable("team.t")  # a member of no rowver role
        team.conn.execute("update team.t set x = 1")
        assert team.history("team.t", 1)["x"].tolist() == [0, 1]
        assert team.check().empty
        team.close()
