"""The model store on a real server: save/load/alias/rollback/compare round trips, chunk
dedupe measured by the database's own size functions, corruption caught on load, loading
under a memory cap, bad input refused with nothing half-saved, and model refs as data refs.
Every test ends with rowver.check() (the db_url fixture) and check_models() clean."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

import rowver
from rowver.cli import app
from rowver.errors import ModelIntegrityError, PromotionRefusedError

MiB = 1 << 20


@pytest.fixture
def db(db_url: str, request: pytest.FixtureRequest) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as database:
        yield database
        if not request.node.get_closest_marker("corrupts_history"):
            assert database.models.check() == [], "check_models found violations after the test"


def weights(seed: int = 0, n: int = 3, size: int = 1000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.weight": rng.standard_normal(size).astype(np.float32) for i in range(n)}


def stored(conn: psycopg.Connection) -> int:
    """Bytes the model store occupies: every rowver.model* relation, history included."""
    return conn.execute("select sum(pg_total_relation_size(c.oid))::bigint from pg_class c"
                        " join pg_namespace n on n.oid = c.relnamespace"
                        " where n.nspname = 'rowver' and c.relname like 'model%' and c.relkind = 'r'").fetchone()[0]


def count_versions(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from rowver.model_version").fetchone()[0]


# -- round trips ------------------------------------------------------------------------------


def test_save_and_load_round_trip_every_kind_of_array(db: rowver.Database, tmp_path: Path) -> None:
    (tmp_path / "tok.json").write_text('{"vocab": 3}')
    w = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "f64_fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "strided": np.arange(20, dtype=np.int16)[::3],
        "scalar": np.array(3.5),                       # 0-d
        "empty": np.zeros((0, 4), np.float16),
        "bool": np.array([True, False, True]),
        "c64": np.array([1 + 2j], np.complex64),
        "be": np.arange(3, dtype=">i4"),               # byte order is kept
        "text": np.array(["ab", "cde"]),
        "when": np.array(["2026-01-01"], dtype="M8[D]"),
        "rec": np.array([(1, 2.5)], dtype=[("id", "<i4"), ("score", "<f8")]),
        "u8": np.arange(256, dtype=np.uint8).reshape(16, 16),
    }
    saved = db.models.save("churn", params={"lr": np.float64(0.1), "layers": [64, 32]},
                           metrics={"auc": 0.91, "loss": [0.9, 0.5, 0.4]}, weights=w,
                           artifacts={"tokenizer": tmp_path / "tok.json", "notes": b"\x00raw"},
                           tags=["nightly"], description="first", code_revision="abc123")
    assert (saved.model, saved.version, saved.tags, saved.code_revision) == ("churn", 1, ["nightly"], "abc123")
    assert len(saved.content_hash) == 64 and saved.changeset >= 1
    got = db.models.load("churn")
    assert got.params == {"lr": 0.1, "layers": [64, 32]} and got.metrics["loss"] == [0.9, 0.5, 0.4]
    for name, array in w.items():
        assert got.weights[name].dtype == array.dtype, name
        assert got.weights[name].shape == array.shape, name
        assert got.weights[name].tobytes() == np.ascontiguousarray(array).tobytes(), name
    assert got.artifacts == {"tokenizer": b'{"vocab": 3}', "notes": b"\x00raw"}
    assert got.lineage is not None and got.lineage.saved_in["message"] == "save model churn/1"
    # the server's content hash is what check_models recomputes
    assert db.conn.execute("select content_hash from rowver.model_version").fetchone()[0] == saved.content_hash


def test_alias_rollback_promote_and_the_log(db: rowver.Database) -> None:
    m = db.models
    m.save("churn", weights=weights(1), metrics={"auc": 0.80}, alias="production")
    m.save("churn", weights=weights(2), metrics={"auc": 0.85})
    m.save("churn", weights=weights(3), metrics={"auc": 0.70})
    assert m.get("churn@production").version == 1
    moved = m.alias("churn", "production", 2, author="ci", message="ship 2")
    assert (moved.old_version, moved.new_version) == (1, 2)
    assert m.alias("churn", "production", 2).changeset is None  # no move, no changeset
    back = m.rollback("churn", "production")
    assert (back.old_version, back.new_version) == (2, 1) and m.get("churn@production").version == 1
    forward = m.rollback("churn", "production")                   # a rollback of a rollback
    assert forward.new_version == 2
    # the guard: 3 is worse on auc, so nothing changes
    before = db.conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    with pytest.raises(PromotionRefusedError, match="worse than churn/2"):
        m.promote("churn", "production", 3, metric="auc")
    assert m.get("churn@production").version == 2
    assert db.conn.execute("select max(version) from rowver.changeset").fetchone()[0] == before
    assert m.promote("churn", "production", 3, metric="auc", mode="min").new_version == 3
    assert m.promote("churn", "staging", 1, metric="auc").old_version is None  # a new alias
    log = db.log()
    messages = list(log.message)
    assert "ship 2" in messages and "rollback churn@production from 2 to 1" in messages
    assert log.loc[log.message == "ship 2", "author"].item() == "ci"
    assert "rowver.model_alias" in log.loc[log.message == "ship 2", "tables"].item()
    history = db.conn.execute("select version from rowver.model_alias__history"
                              " where alias = 'production' order by rv_version").fetchall()
    assert [h[0] for h in history] == [1, 2, 1, 2]


def test_promote_on_a_series_and_missing_metrics(db: rowver.Database) -> None:
    m = db.models
    m.save("s", weights=weights(1), metrics={"loss": [0.9, 0.2, 0.5]}, alias="prod")
    m.save("s", weights=weights(2), metrics={"loss": [{"step": 1, "value": 0.4}, {"step": 2, "value": 0.3}]})
    m.save("s", weights=weights(3))
    with pytest.raises(PromotionRefusedError):
        m.promote("s", "prod", 2, metric="loss", mode="min", agg="min")  # 0.3 > 0.2
    assert m.promote("s", "prod", 2, metric="loss", mode="min").new_version == 2  # last: 0.3 <= 0.5
    with pytest.raises(rowver.InvalidInputError, match="no metric"):
        m.promote("s", "prod", 3, metric="loss")
    with pytest.raises(rowver.InvalidInputError, match="max or min"):
        m.promote("s", "prod", 1, metric="loss", mode="best")


def test_compare_and_search(db: rowver.Database) -> None:
    w = weights(1)
    db.models.save("c", params={"lr": 0.1, "depth": 3}, metrics={"auc": 0.8}, weights=w, tags=["a"])
    w2 = {**w, "layer1.weight": w["layer1.weight"] + 1, "extra": np.zeros(3)}
    del w2["layer2.weight"]
    db.models.save("c", params={"lr": 0.2, "depth": 3}, metrics={"auc": 0.9, "f1": 0.5}, weights=w2,
                   tags=["a", "b"], artifacts={"cfg": b"x"})
    c = db.models.compare("c/1", "c/2")
    assert c.params == [("depth", 3, 3), ("lr", 0.1, 0.2)]
    assert c.metrics == [("auc", 0.8, 0.9), ("f1", None, 0.5)]
    states = {name: state for name, state, _ in c.tensors}
    assert states == {"layer0.weight": "same", "layer1.weight": "changed", "layer2.weight": "removed",
                      "extra": "added", "artifact:cfg": "added"}
    found = db.models.search
    assert [v.version for v in found(metrics=["auc>=0.85"])] == [2]
    assert [v.version for v in found(params={"lr": 0.1})] == [1]
    assert [v.version for v in found(tags=["b"])] == [2]
    assert [v.version for v in found(name="c", metrics=[("auc", "last", ">", 0.5), "f1<1"])] == [2]
    assert found(name="nope") == []
    with pytest.raises(rowver.InvalidInputError, match="comparison"):
        found(metrics=["auc~0.1"])


def test_model_refs_are_data_refs(db: rowver.Database) -> None:
    db.conn.execute("create table features (id int primary key, x float8)")
    db.conn.execute("insert into features values (1, 1.0), (2, 2.0)")
    db.enable("features")
    db.tag("train-1", "head")
    db.models.save("churn", weights=weights(), data_version="train-1", alias="production")
    with db.changeset(message="new data") as cs:
        cs.upsert("features", [{"id": 2, "x": 20.0}, {"id": 3, "x": 3.0}])
    v2 = db.head()
    db.models.save("churn", weights=weights(), data_version=v2)
    for ref in ("model:churn@production", "model:churn/1"):
        assert list(db.as_of("features", ref).x) == [1.0, 2.0], ref
    assert list(db.as_of("features", "model:churn").x) == [1.0, 20.0, 3.0]
    assert [v.ref for v in db.models.trained_on("train-1")] == ["churn/1"]
    assert [v.ref for v in db.models.trained_on("model:churn")] == ["churn/2"]
    lineage = db.models.lineage("churn@production")
    assert lineage.data_version == db.resolve("train-1") and lineage.data_ref == "train-1"
    assert lineage.data_changeset["message"] == "enable public.features"
    for ref in ("model:nope", "model:churn@staging", "model:churn/9", "model:churn/x", "model:"):
        with pytest.raises(rowver.InvalidInputError):
            db.as_of("features", ref)
    db.models.save("nodata", weights=weights())
    with pytest.raises(rowver.InvalidInputError, match="without a data version"):
        db.resolve("model:nodata")


# -- storage ----------------------------------------------------------------------------------


def _dedupe(db: rowver.Database, tensors: int) -> None:
    """Two versions differing in one 4 MiB tensor occupy one model plus that tensor."""
    rng = np.random.default_rng(7)
    w = {f"t{i:03d}": rng.random(MiB, dtype=np.float32) for i in range(tensors)}  # 4 MiB each
    size = tensors * 4 * MiB
    db.models.save("tiny", weights={"x": np.zeros(1, dtype=np.float32)})  # the store's tables, indexes made
    start = stored(db.conn)
    db.models.save("big", weights=w)
    first = stored(db.conn) - start
    db.models.save("big", weights={**w, "t000": w["t000"] + 1})
    second = stored(db.conn) - start - first
    assert size <= first <= size * 1.05, (first, size)
    assert 4 * MiB <= second <= 4 * MiB * 1.05 + 256 * 1024, second
    loaded = db.models.load("big/2")
    assert np.array_equal(loaded.weights["t000"], w["t000"] + 1)
    assert np.array_equal(loaded.weights[f"t{tensors - 1:03d}"], w[f"t{tensors - 1:03d}"])


def test_versions_differing_in_one_tensor_share_the_rest(db: rowver.Database) -> None:
    _dedupe(db, tensors=8)  # 32 MiB


@pytest.mark.slow
def test_200mb_versions_differing_in_one_tensor(db: rowver.Database) -> None:
    _dedupe(db, tensors=50)


def flip_byte(conn: psycopg.Connection, digest: bytes, offset: int) -> None:
    """Damage a stored chunk as a disk or a superuser could: the server verifies each chunk
    as it is stored, so the check is lifted for the damage and put back, unvalidated."""
    with conn.transaction():
        conn.execute("alter table rowver.model_chunk drop constraint model_chunk_verified")
        conn.execute("update rowver.model_chunk set data = set_byte(data, %s, get_byte(data, %s) # 1)"
                     " where sha256 = %s", (offset, offset, digest))
        conn.execute("alter table rowver.model_chunk add constraint model_chunk_verified"
                     " check (sha256 = sha256(data)) not valid")


@pytest.mark.corrupts_history
def test_a_corrupt_or_missing_chunk_is_caught(db: rowver.Database) -> None:
    w = {"w": np.arange(3 * MiB // 4, dtype=np.float32)}
    db.models.save("m", weights=w, chunk_size=MiB)  # three chunks
    second = db.models.get("m").tensors[0].chunks[1]
    flip_byte(db.conn, second, 100)
    with pytest.raises(ModelIntegrityError, match=r"chunk 2 of 3 of weight 'w' .* does not match its sha-256"):
        db.models.load("m")
    assert [v[1] for v in db.models.check()] == ["chunk hash"]
    db.conn.execute("delete from rowver.model_chunk where sha256 = %s", (second,))
    with pytest.raises(ModelIntegrityError, match="is missing"):
        db.models.load("m")
    assert [v[1] for v in db.models.check()] == ["chunk missing"]


@pytest.mark.corrupts_history
def test_a_load_streams_many_chunks_and_checks_each(db: rowver.Database) -> None:
    """Fifteen chunks in one COPY: the arrays come back whole, also inside an open
    changeset, and a corrupt first or last chunk is named."""
    w = {f"t{i}": np.arange(i, i + 5 * 64 * 1024 // 4, dtype=np.float32) for i in range(3)}
    db.models.save("many", weights=w, chunk_size=64 * 1024)  # 5 chunks each
    assert all(np.array_equal(db.models.load("many").weights[k], v) for k, v in w.items())
    with db.changeset():
        assert np.array_equal(db.models.load("many").weights["t2"], w["t2"])

    def corrupt(tensor: int, chunk: int) -> None:
        flip_byte(db.conn, db.models.get("many").tensors[tensor].chunks[chunk], 7)

    corrupt(2, -1)
    with pytest.raises(ModelIntegrityError, match=r"chunk 5 of 5 of weight 't2' .* does not match its sha-256"):
        db.models.load("many")
    corrupt(0, 0)
    with pytest.raises(ModelIntegrityError, match=r"chunk 1 of 5 of weight 't0' .* does not match its sha-256"):
        db.models.load("many")


def test_load_under_a_memory_cap(db: rowver.Database, db_url: str, tmp_path: Path) -> None:
    """Weights over half the address-space limit load whole, and are exported (and imported
    back) in chunks."""
    cap = 512 * MiB
    rng = np.random.default_rng(3)
    w = {f"t{i}": np.frombuffer(rng.bytes(52 * MiB), np.uint8) for i in range(5)}  # 260 MiB
    assert sum(a.nbytes for a in w.values()) > cap // 2
    db.models.save("huge", weights=w)
    script = textwrap.dedent(f"""
        import hashlib, resource, sys
        import rowver
        resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
        try:
            bytearray({cap})
        except MemoryError:
            pass
        else:
            sys.exit("the cap is not in force")
        db = rowver.connect({db_url!r})
        loaded = db.models.load("huge")
        whole = hashlib.sha256()
        for i in range(5):
            whole.update(loaded.weights[f"t{{i}}"])
        print(whole.hexdigest())
        del loaded
        db.models.export("huge", {str(tmp_path / "out")!r})
        print(db.models.import_({str(tmp_path / "out")!r}, name="huge2").ref)
    """)
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    whole = hashlib.sha256()
    for i in range(5):
        whole.update(w[f"t{i}"])
    assert done.stdout.split() == [whole.hexdigest(), "huge2/1"]
    for t in db.models.get("huge").tensors:
        files = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
        entry = next(f for f in files if f["name"] == t.name)
        assert np.array_equal(np.load(tmp_path / "out" / entry["file"], mmap_mode="r"), w[t.name])
    assert db.models.get("huge2").content_hash == db.models.get("huge").content_hash


# -- lifecycle --------------------------------------------------------------------------------


def test_export_import_round_trip(db: rowver.Database, tmp_path: Path) -> None:
    w = {**weights(), "rec": np.array([(1, 2.0)], dtype=[("a", "<i2"), ("b", "<f4")])}
    v = db.models.save("m", params={"p": 1}, metrics={"m": [1, 2]}, weights=w, artifacts={"a": b"abc"},
                       tags=["t"])
    db.models.export("m", tmp_path / "x")
    with pytest.raises(rowver.InvalidInputError, match="not an empty directory"):
        db.models.export("m", tmp_path / "x")
    copy = db.models.import_(tmp_path / "x", name="m2", alias="production")
    assert copy.content_hash == v.content_hash and copy.aliases == ["production"]
    got = db.models.load("m2@production")
    assert (got.params, got.metrics, got.tags, got.artifacts) == ({"p": 1}, {"m": [1, 2]}, ["t"], {"a": b"abc"})
    assert all(got.weights[k].tobytes() == a.tobytes() for k, a in w.items())


def test_delete_is_a_tombstone_and_gc_frees_only_the_unnamed(db: rowver.Database, tmp_path: Path) -> None:
    db.models.save("d", weights={"w": np.arange(10.0)})
    db.models.save("d", weights={"w": np.arange(11.0)}, alias="production")
    with pytest.raises(rowver.InvalidInputError, match="alias production; move it first"):
        db.models.delete("d/2")
    db.models.delete("d/1")
    assert [v.version for v in db.models.versions("d")] == [2]
    with pytest.raises(rowver.InvalidInputError, match="no version 1"):
        db.models.load("d/1")
    assert db.conn.execute("select count(*) from rowver.model_version__history"
                           " where model = 'd' and version = 1 and rv_deleted").fetchone()[0] == 1
    assert db.models.save("d", weights={"w": np.arange(12.0)}).version == 3  # numbers are never reused
    # chunks named only by history stay; a chunk nothing names goes, once past its grace
    db.conn.execute("insert into rowver.model_chunk (sha256, data) values (sha256('\\x01'::bytea), '\\x01')")
    before = db.conn.execute("select count(*) from rowver.model_chunk").fetchone()[0]
    assert db.models.gc(grace=dt.timedelta(days=1)) == (0, 0)
    assert db.models.gc(grace=dt.timedelta(0)) == (1, 1)
    assert db.conn.execute("select count(*) from rowver.model_chunk").fetchone()[0] == before - 1
    assert db.models.load("d/2").weights["w"].tolist() == list(np.arange(11.0))


def test_an_application_role_saves_and_loads_but_cannot_tamper(db: rowver.Database, db_url: str) -> None:
    role = f"rv_app_{uuid.uuid4().hex[:8]}"
    db.conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        app_db = rowver.Database(psycopg.conninfo.make_conninfo(db_url, user=role))
        v = app_db.models.save("app", weights=weights(), alias="production")
        app_db.models.save("app", weights=weights(1))
        app_db.models.alias("app", "production", 2)
        assert app_db.models.rollback("app", "production").new_version == 1
        assert app_db.models.load("app@production").content_hash == v.content_hash
        who = db.conn.execute("select db_role from rowver.changeset order by version desc limit 1").fetchone()[0]
        assert who == role
        for statement in ("delete from rowver.model_chunk", "update rowver.model_chunk set data = ''",
                          "delete from rowver.model_alias__history", "select rowver.model_gc()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app_db.conn.execute(statement)
        app_db.close()
    finally:
        db.conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        db.conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weights": {"w": np.array([object()])}}, "Python objects"),
    ({"weights": {"w": [1.0, 2.0]}}, "is a list, not a numpy array"),
    ({"weights": {"w": 3.5}}, "is a float, not a numpy array"),
    ({"weights": [np.zeros(3)]}, "must be a mapping"),
    ({"weights": {"bad\nname": np.zeros(3)}}, "invalid weight name"),
    ({"weights": {"": np.zeros(3)}}, "invalid weight name"),
    ({"artifacts": {"a": "not bytes"}}, "bytes or a pathlib.Path"),
    ({"params": {"x": float("nan")}}, r"params\['x'\] is not a finite number"),
    ({"metrics": {"loss": np.array([0.5, np.inf])}}, r"metrics\['loss'\]\[1\] is not a finite number"),
    ({"metrics": {"x": object()}}, "metrics must be JSON"),
    ({"alias": "1st"}, "invalid alias"),
    ({"tags": "one"}, "tags must be a list"),
    ({"data_version": "no-such-tag"}, "unknown ref"),
])
def test_bad_input_is_refused_before_anything_is_written(db: rowver.Database, kwargs: dict, match: str) -> None:
    chunks_before = db.conn.execute("select count(*) from rowver.model_chunk").fetchone()[0]
    args = {"weights": {"ok": np.zeros(3)}, **kwargs}
    with pytest.raises(rowver.InvalidInputError, match=match):
        db.models.save("m", **args)
    assert count_versions(db.conn) == 0
    assert db.conn.execute("select count(*) from rowver.model_chunk").fetchone()[0] == chunks_before


@pytest.mark.parametrize("name", ["bad name", "a/b", "x@y", "", "-dash", "é", "a" * 129, "semi;colon"])
def test_odd_model_names_are_refused(db: rowver.Database, name: str) -> None:
    with pytest.raises(rowver.InvalidInputError, match="invalid model name"):
        db.models.save(name, weights=weights())
    assert count_versions(db.conn) == 0


def test_unknown_models_versions_and_aliases(db: rowver.Database) -> None:
    db.models.save("m", weights=weights(), alias="production")
    for call, match in [
        (lambda: db.models.load("nope"), "unknown model 'nope'"),
        (lambda: db.models.load("m@staging"), "model 'm' has no alias 'staging'"),
        (lambda: db.models.load("m/7"), "model 'm' has no version 7"),
        (lambda: db.models.get("m/x"), "invalid model ref"),
        (lambda: db.models.alias("m", "production", 9), "no version 9"),
        (lambda: db.models.alias("nope", "production", 1), "unknown model"),
        (lambda: db.models.rollback("m", "staging"), "no alias 'staging'"),
        (lambda: db.models.rollback("m", "production"), "no earlier target"),
        (lambda: db.models.versions("nope"), "unknown model"),
        (lambda: db.models.compare("m", "nope/1"), "unknown model"),
    ]:
        with pytest.raises(rowver.InvalidInputError, match=match):
            call()
    assert db.models.get("m@production").version == 1


def test_a_truncated_or_altered_import_directory(db: rowver.Database, tmp_path: Path) -> None:
    db.models.save("m", weights={"a": np.arange(1000.0), "b": np.arange(10.0)}, artifacts={"c": b"xyz"})
    db.models.export("m", tmp_path / "ok")
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    file_a = tmp_path / "ok" / manifest["files"][0]["file"]
    data = file_a.read_bytes()

    def broken(name: str, change: Callable[[Path], object]) -> Path:
        d = tmp_path / name
        subprocess.run(["cp", "-r", str(tmp_path / "ok"), str(d)], check=True)
        change(d)
        return d

    cases = [
        (broken("trunc", lambda d: (d / manifest["files"][0]["file"]).write_bytes(data[:-8])), "is truncated"),
        (broken("flip", lambda d: (d / manifest["files"][0]["file"]).write_bytes(
            data[:-8] + bytes([data[-8] ^ 1]) + data[-7:])), "does not match the manifest's hash"),
        (broken("gone", lambda d: (d / manifest["files"][1]["file"]).unlink()), "is missing"),
        (broken("nomanifest", lambda d: (d / "manifest.json").unlink()), "no manifest.json"),
        (broken("escape", lambda d: (d / "manifest.json").write_text(json.dumps(
            {**manifest, "files": [{**manifest["files"][0], "file": "../ok/" + manifest["files"][0]["file"]}]}))),
         "outside"),
        (broken("badjson", lambda d: (d / "manifest.json").write_text("{")), "not valid JSON"),
    ]
    before = count_versions(db.conn)
    for directory, match in cases:
        with pytest.raises(rowver.InvalidInputError, match=match):
            db.models.import_(directory, name="copy")
    assert count_versions(db.conn) == before
    assert db.models.import_(tmp_path / "ok", name="copy").content_hash == db.models.get("m").content_hash


# -- torch and the CLI ----------------------------------------------------------------------------


def test_torch_state_dict_round_trip(db: rowver.Database) -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; pip install torch to test the adapter")
    state = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.zeros(4, dtype=torch.bfloat16),
             "steps": torch.tensor(7), "mask": torch.tensor([True, False])}
    db.models.save("t", weights=state)
    got = db.models.load("t")
    assert got.weights["fc.bias"].dtype == np.dtype("<u2")  # bfloat16 travels as its bits
    back = got.state_dict()
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})


def rv(url: str, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["model", *args, "--url", url])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code:
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
        return result.stderr
    return result.stdout


def test_cli(db: rowver.Database, db_url: str, tmp_path: Path) -> None:
    db.models.save("churn", weights=weights(1), params={"lr": 0.1}, metrics={"auc": 0.8}, alias="production")
    db.models.save("churn", weights={**weights(1), "layer0.weight": np.zeros(1000, np.float32)},
                   params={"lr": 0.2}, metrics={"auc": 0.9})
    assert "production=1" in rv(db_url, "list")
    assert json.loads(rv(db_url, "list", "--format", "json"))[0]["aliases"] == {"production": 1}
    shown = json.loads(rv(db_url, "show", "churn@production", "--format", "json"))[0]
    assert shown["content_hash"] == db.models.get("churn/1").content_hash and len(shown["tensors"]) == 3
    # for people, the changesets are one line each (version, time, who, message), not JSON
    assert re.search(r"saved_in +\d+: [\d-]+ [\d:+]+, \w+: save model churn/2 *$", rv(db_url, "show", "churn/2"), re.M)
    assert [r["version"] for r in json.loads(rv(db_url, "versions", "churn", "-f", "json"))] == [1, 2]
    assert "1 -> 2" in rv(db_url, "alias", "churn", "production", "2")
    assert "2 -> 1" in rv(db_url, "rollback", "churn", "production")
    assert "worse than" in rv(db_url, "promote", "churn", "production", "2", "--metric", "auc", "--mode", "min", code=1)
    assert "1 -> 2" in rv(db_url, "promote", "churn", "production", "2", "--metric", "auc")
    out = rv(db_url, "compare", "churn/1", "churn/2")
    assert "layer0.weight" in out and "changed" in out and "1 of 3" in out
    found = json.loads(rv(db_url, "search", "--metric", "auc>0.85", "--param", "lr=0.2", "-f", "json"))
    assert [r["version"] for r in found] == [2]
    table = rv(db_url, "search", "--param", "lr=0.2")  # a hash prefix for people, as `versions` shows
    assert found[0]["content_hash"][:12] in table and found[0]["content_hash"] not in table
    rv(db_url, "export", "churn/1", str(tmp_path / "e"))
    assert "imported as copy/1" in rv(db_url, "import", str(tmp_path / "e"), "--name", "copy")
    assert "unknown model 'nope'" in rv(db_url, "show", "nope", code=1)
    assert "same ref" in rv(db_url, "compare", "churn/1", "churn/1", code=1)
    assert "KEY=VALUE" in rv(db_url, "search", "--param", "lr", code=1)
    assert "ok" in rv(db_url, "check")


def test_progress_counts_the_bytes_of_a_save_a_load_an_export_and_an_import(db: rowver.Database, db_url: str,
                                                                              tmp_path: Path) -> None:
    weights = {"w": np.arange(300_000, dtype=np.float64), "b": np.ones(10, np.float32)}
    total = sum(a.nbytes for a in weights.values())
    for_each: dict[str, list[tuple[int, int]]] = {"save": [], "load": [], "export": [], "import": []}
    db.models.save("prog", weights=weights, chunk_size=64 << 10, progress=lambda d, t: for_each["save"].append((d, t)))
    db.models.load("prog/1", progress=lambda d, t: for_each["load"].append((d, t)))
    db.models.export("prog/1", tmp_path / "out", progress=lambda d, t: for_each["export"].append((d, t)))
    db.models.import_(tmp_path / "out", name="prog2", progress=lambda d, t: for_each["import"].append((d, t)))
    for what, calls in for_each.items():
        done = [d for d, _ in calls]
        assert len(calls) >= 30 and done == sorted(done) and calls[-1] == (total, total), (what, calls[-3:])

    # the CLI draws it on a terminal, and only there
    from terminal import stderr_on_terminal

    done, drawn = stderr_on_terminal([str(Path(sys.executable).parent / "rowver"), "model", "export", "prog/1",
                                      str(tmp_path / "again"), "--url", db_url])
    assert done.returncode == 0 and "is in" in done.stdout and b"exporting prog/1" in drawn
    piped = subprocess.run([str(Path(sys.executable).parent / "rowver"), "model", "export", "prog/1",
                            str(tmp_path / "third"), "--url", db_url], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
