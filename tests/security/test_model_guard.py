"""Class 6: the model store (DESIGN §6). An application role saves and loads models through
rowver's functions, and nothing else: it cannot swap the weights behind a version, plant
bytes under a hash a later honest save will name, claim data above head, or forge who saved
a version and when. A load checks the manifest it reads against the version's content hash."""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pytest
from logins import Logins, violations
from psycopg.conninfo import make_conninfo

import rowver
from rowver.errors import ModelIntegrityError


@pytest.fixture
def store(logins: Logins) -> dict:
    """churn/1 saved by an application role, aliased production; the role's own Database."""
    logins.su.execute("create table features (id integer primary key, x integer)")
    logins.su.execute("insert into features values (1, 1)")
    logins.su.execute("select rowver.enable('features')")
    role = logins.role("app")
    db = rowver.Database(make_conninfo(logins.url, user=role))
    weights = {"w": np.arange(1000, dtype=np.float32), "b": np.ones(10, dtype=np.float32)}
    saved = db.models.save("churn", params={"depth": 6}, metrics={"auc": 0.9}, weights=weights,
                           data_version=1, alias="production")
    yield {"role": role, "db": db, "weights": weights, "saved": saved}
    db.close()


def model_rows(conn: psycopg.Connection) -> tuple:
    return tuple(conn.execute(f"select * from rowver.{t} order by 1, 2").fetchall()
                 for t in ("model", "model_version", "model_tensor", "model_alias"))


@pytest.mark.parametrize("statement", [
    "update rowver.model_tensor set chunks = (select t.chunks from rowver.model_tensor t where t.name = 'b')"
    " where name = 'w'",  # other weights behind the aliased version
    "update rowver.model_tensor set shape = '{{1000}}' where name = 'b'",
    "update rowver.model_version set content_hash = 'x', db_user = 'someone', created_at = now() - interval '1 year'",
    "update rowver.model_version set data_version = 1000000",
    "insert into rowver.model_version (model, version, content_hash, db_user, created_at)"
    " values ('churn', 9, 'x', 'someone', '2020-01-01')",
    "delete from rowver.model_version",
    "update rowver.model_alias set version = 9",
    "insert into rowver.model (name, db_user) values ('mine', 'someone')",
    "update rowver.model_chunk set data = 'garbage'",
    "delete from rowver.model_chunk",
    "select rowver.model_gc('0 seconds')",
    "update rowver.model_version__history set params = '{{}}'",
])
def test_catalog_rows_change_only_through_rowvers_functions(store: dict, logins: Logins, statement: str) -> None:
    before = model_rows(logins.su)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        store["db"].conn.execute(statement.format())
    assert model_rows(logins.su) == before
    assert np.array_equal(store["db"].models.load("churn@production").weights["w"], store["weights"]["w"])


def test_no_bytes_under_a_hash_they_do_not_have(store: dict, logins: Logins) -> None:
    honest = np.full(2000, 7, dtype=np.float32)
    digest = hashlib.sha256(honest.tobytes()).digest()
    with pytest.raises(psycopg.errors.CheckViolation, match="model_chunk_verified"):
        store["db"].conn.execute("insert into rowver.model_chunk (sha256, data) values (%s, %s)",
                                 (digest, b"garbage"))
    # so the honest save that names that hash later loads what it saved
    store["db"].models.save("churn", weights={"w": honest})
    assert np.array_equal(store["db"].models.load("churn/2").weights["w"], honest)


def test_what_the_server_sets_is_the_servers(store: dict, logins: Logins) -> None:
    saved = store["saved"]
    assert (saved.db_user, saved.author) == (store["role"], None)
    assert logins.su.execute("select now() - created_at < interval '1 minute' from rowver.model_version").fetchone()[0]
    with pytest.raises(rowver.RowverError, match="above head"):
        store["db"].models.save("churn", weights=store["weights"], data_version=10**6)
    assert [v.version for v in store["db"].models.versions("churn")] == [1]


@pytest.mark.corrupts_history
def test_a_load_refuses_a_manifest_its_content_hash_does_not_cover(store: dict, logins: Logins) -> None:
    # as a superuser (or a disk) could: the two tensors' chunks swapped behind version 1
    logins.su.execute("update rowver.model_tensor t set chunks = o.chunks, nbytes = o.nbytes, shape = o.shape"
                      "  from rowver.model_tensor o where o.name <> t.name")
    with pytest.raises(ModelIntegrityError, match="do not match its content hash"):
        store["db"].models.load("churn@production")
    assert {i for _, i, _ in violations(logins.su)} == {"content hash"}
