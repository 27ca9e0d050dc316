"""The model-as-rows store (DESIGN §5): ``db.models``.

Metadata (models, versions, manifests, aliases) lives in tables that rowver versions like
any other, so every save, alias move and rollback is a changeset in ``rowver log``.
Weights and artifacts are content-addressed chunks (rowver.models._chunks), written in
their own transactions before one short metadata transaction (sql/62_model_commit.sql,
``rowver.model_commit``), so no visible model version ever names a missing chunk and a
large upload does not hold head back.

A model ref is ``NAME`` (the newest version), ``NAME/N`` or ``NAME@ALIAS``; the same ref
after ``model:`` is a data ref meaning the data version the model was trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from .. import _refs, _retry, _sql, _training
from .._sql import Connected
from .._write import Changeset
from ..errors import (
    InvalidInputError,
    ModelIntegrityError,
    PromotionRefusedError,
    RowverError,
    translated,
)
from . import _blobs, _dir
from . import _chunks as chunks
from ._chunks import CHUNK_SIZE, Blob, Entry, WriteStats
from ._types import AliasMove, Comparison, Lineage, Model, ModelSummary, ModelVersion, Tensor

__all__ = ["AliasMove", "Comparison", "Lineage", "Model", "ModelIntegrityError", "ModelSummary",
           "ModelVersion", "Models", "PromotionRefusedError", "Tensor"]


def _json(what: str, value: Any) -> str:
    """Params or metrics as JSON; numpy scalars and arrays become plain values."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, not a {type(value).__name__}")

    def plain(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        raise TypeError(f"{type(v).__name__} is not JSON")

    try:
        return json.dumps(value, default=plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        where = _non_finite(value, what) if "Out of range float" in str(exc) else None
        if where:
            raise InvalidInputError(f"{where} is not a finite number: JSON has no NaN or infinity "
                                    "(leave it out, or store None)") from exc
        raise InvalidInputError(f"{what} must be JSON: {exc}") from exc


def _non_finite(value: Any, path: str) -> str | None:
    """Where in ``value`` the first NaN or infinity is, as json.dumps meets it: ``metrics['loss'][3]``."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = (value.items() if isinstance(value, Mapping) else
             enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        found = _non_finite(item, f"{path}[{key!r}]")
        if found:
            return found
    return None


# -- the store ------------------------------------------------------------------------------


# How long a save waits for the gc lock before it goes without it.
GC_LOCK_WAIT = "2s"
# A save's commit is replayed on a serialization failure or deadlock, or when a chunk it found
# stored was reclaimed before it committed (rowver._retry): up to 4 times, waiting up to 50 ms,
# then 100, 200, 400 (jittered).
COMMIT_RETRY = _retry.Policy(retries=4, base=0.05)


class Models:
    """``db.models``: save, load, alias, rollback, promote, list, compare, search, gc."""

    def __init__(self, db: Connected):
        self._db = db
        self.last_write: WriteStats | None = None  # what the last save sent (for bench)

    @property
    def _conn(self) -> Any:
        return self._db.conn

    # -- saving -------------------------------------------------------------------------

    def save(self, name: str, *, params: Mapping[str, Any] | None = None,
             metrics: Mapping[str, Any] | None = None, weights: Mapping[str, Any] | None = None,
             artifacts: Mapping[str, Any] | None = None, data_version: str | int | Any = None,
             tags: Iterable[str] = (), description: str | None = None, code_revision: str | None = None,
             alias: str | None = None, author: str | None = None, message: str | None = None,
             chunk_size: int = CHUNK_SIZE, progress: chunks.Progress | None = None) -> ModelVersion:
        """Save a new version of ``name``; returns it. Weights map names to numpy arrays (any
        native dtype and shape) or torch tensors; artifacts map names to bytes or file paths.
        ``progress(done, total)`` is told the bytes hashed and sent so far, chunk by chunk.
        ``data_version`` is a ref, or a training set (``db.training_set``'s frame or its attrs): it
        records the newest version the set read from, and the set's lineage as the data ref."""
        if isinstance(tags, str):
            raise InvalidInputError("tags must be a list of strings, not one string")
        if weights is not None and not isinstance(weights, Mapping):
            raise InvalidInputError(f"weights must be a mapping of names to arrays, not a {type(weights).__name__}")
        if artifacts is not None and not isinstance(artifacts, Mapping):
            raise InvalidInputError(f"artifacts must be a mapping of names to bytes or paths, "
                                    f"not a {type(artifacts).__name__}")
        blobs = [_blobs.array_blob(str(k), v) for k, v in (weights or {}).items()]
        blobs += [_blobs.artifact_blob(str(k), v) for k, v in (artifacts or {}).items()]
        data_ref = None
        if isinstance(data_version, Mapping) or _training.is_frame(data_version):
            data_version, data_ref = _training.data_version_of(data_version)
        return self._save(name, blobs, params=_json("params", params), metrics=_json("metrics", metrics),
                          data_version=data_version, tags=list(tags), description=description,
                          code_revision=code_revision, alias=alias, author=author, message=message,
                          chunk_size=chunk_size, data_ref=data_ref, progress=progress)

    def _save(self, name: str, blobs: list[Blob], *, params: str, metrics: str,
              data_version: str | int | None, tags: list[str], description: str | None,
              code_revision: str | None, alias: str | None, author: str | None, message: str | None,
              chunk_size: int, expect_hash: str | None = None, data_ref: str | None = None,
              progress: chunks.Progress | None = None) -> ModelVersion:
        if not 1024 <= chunk_size <= 256 << 20:
            raise InvalidInputError("chunk_size must be between 1 KiB and 256 MiB")
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise InvalidInputError("tags must be a list of strings")
        conn = self._conn
        # everything that can be refused is refused before a single chunk is written
        _sql.execute(conn, "select rowver.model_check_name('model', %s)", (name,))
        if alias is not None:
            _sql.execute(conn, "select rowver.model_check_name('alias', %s)", (alias,))
        _sql.execute(conn, "select rowver.model_check_name(k, n) from unnest(%s::text[], %s::text[]) u(k, n)",
                     ([b.kind for b in blobs], [b.name for b in blobs]))
        for t in tags:
            _sql.execute(conn, "select rowver.model_check_name('tag', %s)", (t,))
        version = None if data_version is None else _refs.resolve(self._conn, data_version)
        seen: set[tuple[str, str]] = set()
        for b in blobs:
            if (b.kind, b.name) in seen:
                raise InvalidInputError(f"{b.kind} {b.name!r} is given twice")
            seen.add((b.kind, b.name))

        with self._gc_waits():
            entries, stats = self._write(blobs, chunk_size, progress)
            gone: list[bool] = []  # a chunk the last try found stored was reclaimed before its commit

            def commit(replay: int) -> int:
                nonlocal entries, stats
                if gone:  # (gc from inside a transaction, or a manual delete): write what is missing again
                    entries, stats = self._write(blobs, chunk_size, progress)
                    gone.clear()
                args = (name, params, metrics, tags, description, version,
                        data_ref or (None if data_version is None else str(data_version)), code_revision, author,
                        json.dumps([e.as_json() for e in entries]), alias, expect_hash)
                with Changeset(self._db, message=message, author=author):
                    saved, _hash = _sql.one(
                        conn, "select * from rowver.model_commit(%s, %s::jsonb, %s::jsonb, %s::text[], %s, "
                        "%s, %s, %s, %s, %s::jsonb, %s, %s)", args)
                return int(saved)

            def retryable(exc: Exception) -> bool:
                if _retry.sqlstate(exc) == "23503":  # foreign_key_violation: a chunk it names is gone
                    gone.append(True)
                    return True
                return _retry.transient(exc)

            saved = COMMIT_RETRY.run(commit, retryable)
        self.last_write = stats
        return self.get(f"{name}/{saved}")

    @contextlib.contextmanager
    def _gc_waits(self) -> Iterator[None]:
        """From the first chunk to the commit, gc (which takes this lock exclusively) waits:
        it cannot reclaim a chunk this save found stored, or wrote, before the version that
        names it commits. A session lock, so only on an idle connection: inside a caller's
        transaction the commit's own check (and its retries) are the guard. Waited for in the
        lock's queue, so a gc that runs back to back cannot starve it, and for GC_LOCK_WAIT at
        most: anyone may take an advisory lock, and a save must not wait on it."""
        conn = self._conn
        held = False
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            try:  # (a session lock: it outlasts the transaction that sets the timeout)
                with _sql.transaction(conn):
                    _sql.execute(conn, "select set_config('lock_timeout', %s, true)", (GC_LOCK_WAIT,))
                    _sql.execute(conn, "select pg_advisory_lock_shared(key1, key2) from rowver.model_gc_lock()")
                held = True
            except RowverError as exc:
                if exc.sqlstate != "55P03":  # lock_not_available: a gc, or a role sitting on the lock
                    raise
        try:
            yield
        finally:
            if held and not conn.closed:
                with contextlib.suppress(psycopg.OperationalError):  # a lost session lost its locks
                    conn.execute("select pg_advisory_unlock_shared(key1, key2) from rowver.model_gc_lock()")

    def _write(self, blobs: list[Blob], chunk_size: int,
               progress: chunks.Progress | None) -> tuple[list[Entry], WriteStats]:
        with translated():
            return chunks.write(self._conn, blobs, chunk_size=chunk_size, progress=progress)

    # -- reading ------------------------------------------------------------------------

    def get(self, ref: str) -> ModelVersion:
        """A model version's metadata and manifest, without its weights."""
        model, version = self._ref(ref)
        return self._infos([(model, version)])[0]

    def versions(self, name: str) -> list[ModelVersion]:
        """Every live version of a model, oldest first."""
        self._ref(name)
        keys = _sql.rows(self._conn, "select model, version from rowver.model_version where model = %s"
                                     " order by version", (name,))
        return self._infos([tuple(k) for k in keys])

    def load(self, ref: str, *, verify: bool = True, progress: chunks.Progress | None = None) -> Model:
        """A model version with its weights and artifacts, every chunk hash verified.
        Memory: the model once, plus a few chunks in flight. ``progress(done, total)``: bytes."""
        info = self.get(ref)
        entries = self._manifest(info)
        buffers = [np.empty(e.nbytes, np.uint8) for e in entries]

        def sink(i: int, offset: int, data: memoryview) -> np.ndarray:
            dest = buffers[i][offset:offset + len(data)]
            dest[:] = np.frombuffer(data, np.uint8)
            return dest  # hashed here: what the caller gets is what is verified

        with translated():
            chunks.read(self._conn, entries, sink, what=info.ref, verify=verify, progress=progress)
        weights: dict[str, np.ndarray] = {}
        artifacts: dict[str, bytes] = {}
        for t, buf in zip(info.tensors, buffers):
            if t.kind == "weight":
                weights[t.name] = buf.view(_blobs.dtype_from_text(t.dtype)).reshape(t.shape)
            else:
                artifacts[t.name] = buf.tobytes()
        meta = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
        return Model(**meta, weights=weights, artifacts=artifacts, lineage=self.lineage(info.ref))

    def export(self, ref: str, directory: str | os.PathLike[str], *,
               progress: chunks.Progress | None = None) -> ModelVersion:
        """Write a model version to ``directory`` (.npy files, artifacts, manifest.json),
        streaming: memory stays a few chunks whatever the model's size. ``progress``: as load's."""
        info = self.get(ref)
        entries = self._manifest(info)
        with translated():
            _dir.export(self._conn, info, entries, Path(directory), progress)
        return info

    def _manifest(self, info: ModelVersion) -> list[Entry]:
        """The chunks to read for ``info``, once the server has checked that this manifest and
        the stored params are what the version's content hash covers (nobody swapped them)."""
        entries = [_entry(t) for t in info.tensors]
        intact = _sql.value(self._conn, "select rowver.model_manifest_matches(%s, %s, %s::jsonb)",
                            (info.model, info.version, json.dumps([e.as_json() for e in entries])))
        if not intact:
            raise ModelIntegrityError(f"{info.ref}: its params and manifest do not match its content hash "
                                      f"{info.content_hash[:12]}; the stored model was changed after it was saved")
        return entries

    def import_(self, directory: str | os.PathLike[str], *, name: str | None = None,
                data_version: str | int | None = None, alias: str | None = None,
                author: str | None = None, message: str | None = None,
                progress: chunks.Progress | None = None) -> ModelVersion:
        """Save the export in ``directory`` as a new version (of ``name``, default the
        exported model's name). Every file is checked against the manifest first. ``progress``:
        as save's."""
        meta, blobs = _dir.read(Path(directory))
        return self._save(name or meta["model"], blobs, params=meta["params_json"],
                          metrics=meta["metrics_json"], data_version=data_version,
                          tags=list(meta.get("tags") or []), description=meta.get("description"),
                          code_revision=meta.get("code_revision"), alias=alias, author=author,
                          message=message or f"import model {meta['model']}/{meta['version']}",
                          chunk_size=int(meta.get("chunk_size") or CHUNK_SIZE),
                          expect_hash=meta.get("content_hash"), progress=progress)

    # -- aliases ------------------------------------------------------------------------

    def alias(self, name: str, alias: str, version: int, *, author: str | None = None,
              message: str | None = None) -> AliasMove:
        """Point ``name@alias`` at ``version`` (a changeset; the log shows who moved it)."""
        return self._move("select * from rowver.model_alias_set(%s, %s, %s)", (name, alias, int(version)),
                          name, alias, author=author, message=message)

    def rollback(self, name: str, alias: str, *, author: str | None = None,
                 message: str | None = None) -> AliasMove:
        """Move ``name@alias`` back to its previous target, as a new changeset."""
        return self._move("select * from rowver.model_rollback(%s, %s)", (name, alias), name, alias,
                          author=author, message=message)

    def promote(self, name: str, alias: str, version: int, *, metric: str, mode: str = "max",
                agg: str = "last", author: str | None = None, message: str | None = None) -> AliasMove:
        """Move ``name@alias`` to ``version`` only if it is at least as good as the current
        holder on ``metric`` (mode max: higher is better; min: lower); else raise
        PromotionRefusedError and change nothing."""
        conn = self._conn
        with Changeset(self._db, message=message, author=author):
            promoted, previous, _cand, _held, reason = _sql.one(
                conn, "select * from rowver.model_promote(%s, %s, %s, %s, %s, %s)",
                (name, alias, int(version), metric, mode, agg))
            if not promoted and previous == int(version):
                return AliasMove(name, alias, previous, previous, None)  # already there
            if not promoted:
                raise PromotionRefusedError(f"not promoting {name}/{version} to {name}@{alias}: {reason}")
            changeset = _sql.value(conn, "select rowver.current_version()")
        return AliasMove(name, alias, previous, int(version), changeset)

    def _move(self, query: str, args: tuple[Any, ...], name: str, alias: str, *, author: str | None,
              message: str | None) -> AliasMove:
        conn = self._conn
        with Changeset(self._db, message=message, author=author):
            old, new = _sql.one(conn, query, args)
            changeset = _sql.value(conn, "select rowver.current_version()")
        return AliasMove(name, alias, old, new, changeset)

    # -- comparing, searching, lineage ----------------------------------------------------

    def compare(self, a: str, b: str) -> Comparison:
        """Params and metrics side by side, and which tensors changed."""
        x, y = self.get(a), self.get(b)

        def side(p: dict[str, Any], q: dict[str, Any]) -> list[tuple[str, Any, Any]]:
            return [(k, p.get(k), q.get(k)) for k in sorted(set(p) | set(q))]

        tx = {f"{t.kind}:{t.name}": t for t in x.tensors}
        ty = {f"{t.kind}:{t.name}": t for t in y.tensors}
        tensors = []
        for key in sorted(set(tx) | set(ty)):
            s, t = tx.get(key), ty.get(key)
            label = key.removeprefix("weight:")
            if s is None:
                tensors.append((label, "added", f"{t.dtype} {list(t.shape)}"))  # type: ignore[union-attr]
            elif t is None:
                tensors.append((label, "removed", f"{s.dtype} {list(s.shape)}"))
            elif s.same_bytes_as == t.same_bytes_as:
                tensors.append((label, "same", f"{s.dtype} {list(s.shape)}"))
            else:
                shape = (f"{s.dtype} {list(s.shape)} -> {t.dtype} {list(t.shape)}"
                         if (s.dtype, s.shape) != (t.dtype, t.shape) else f"{s.dtype} {list(s.shape)}")
                differ = sum(1 for p, q in zip(s.chunks, t.chunks) if p != q) + abs(len(s.chunks) - len(t.chunks))
                tensors.append((label, "changed", f"{shape}, {differ} of {max(len(s.chunks), len(t.chunks))} chunk(s)"))
        return Comparison(x, y, side(x.params, y.params), side(x.metrics, y.metrics), tensors)

    def search(self, *, name: str | None = None, params: Mapping[str, Any] | None = None,
               metrics: Sequence[str | tuple[Any, ...]] = (), tags: Iterable[str] = (),
               since: str | dt.datetime | None = None, until: str | dt.datetime | None = None) -> list[ModelVersion]:
        """Model versions matching every filter: params contain ``params``; each metric
        condition holds ("auc>=0.9", "loss:min<0.3", or ("auc", ">=", 0.9)); every tag."""
        filters = [_metric_filter(m) for m in metrics]
        keys = _sql.rows(
            self._conn, "select * from rowver.model_search(%s, %s::jsonb, %s::jsonb, %s::text[], %s::timestamptz,"
                        " %s::timestamptz)",
            (name, None if params is None else _json("params", params), json.dumps(filters),
             list(tags) or None, since, until))
        return self._infos([tuple(k) for k in keys])

    def lineage(self, ref: str) -> Lineage:
        """The data version a model version was trained on and the changesets around it."""
        model, version = self._ref(ref)
        row = _sql.one(self._conn, _sql.query("models/lineage.sql"), {"model": model, "version": version})
        return Lineage(model, version, row[0], row[1], row[3], row[4], row[2])

    def trained_on(self, ref: str | int) -> list[ModelVersion]:
        """Model versions trained on the data version ``ref`` names."""
        keys = _sql.rows(self._conn, "select * from rowver.models_trained_on(%s)", (str(ref),))
        return self._infos([tuple(k) for k in keys])

    # -- deleting, reclaiming, checking ---------------------------------------------------

    def delete(self, ref: str, *, author: str | None = None, message: str | None = None) -> int:
        """Delete a model version (a tombstone: it stays in history, and so do its chunks);
        returns the changeset."""
        conn = self._conn
        with Changeset(self._db, message=message, author=author):
            _sql.execute(conn, "select rowver.model_delete(%s)", (ref,))
            changeset: int = _sql.value(conn, "select rowver.current_version()")
        return changeset

    def gc(self, *, grace: dt.timedelta = dt.timedelta(days=1)) -> tuple[int, int]:
        """Reclaim chunks that no model version names, in its current state or in history,
        older than ``grace``; returns (chunks, bytes). Waits for saves in flight to commit.
        Needs rowver_admin."""
        n, size = _sql.one(self._conn, "select * from rowver.model_gc(%s)", (grace,))
        return int(n), int(size)

    def check(self, *, verify_data: bool = True) -> list[tuple[str, str, str]]:
        """Violations of the model store's invariants; empty when all hold."""
        return _sql.rows(self._conn, "select * from rowver.check_models(%s)", (verify_data,))

    # -- plumbing -----------------------------------------------------------------------

    def _ref(self, ref: str) -> tuple[str, int]:
        model, version = _sql.one(self._conn, "select * from rowver.model_ref(%s)", (ref,))
        return model, version

    def _infos(self, keys: list[tuple[Any, ...]]) -> list[ModelVersion]:
        if not keys:
            return []
        names, numbers = [k[0] for k in keys], [k[1] for k in keys]
        asked = {"models": names, "versions": numbers}
        rows = _sql.rows(self._conn, _sql.query("models/versions.sql"), asked)
        parts = _sql.rows(self._conn, _sql.query("models/tensors.sql"), asked)
        tensors: dict[tuple[str, int], list[Tensor]] = {}
        for p in parts:
            tensors.setdefault((p[0], p[1]), []).append(
                Tensor(p[2], p[3], p[4], tuple(p[5]), p[6], p[7], tuple(bytes(c) for c in p[8])))
        names = [f.name for f in dataclasses.fields(ModelVersion)]  # the select's order
        return [ModelVersion(**dict(zip(names, [*r[:15], list(r[15]), tensors.get((r[0], r[1]), [])])))
                for r in rows]


    # last in the class: from here on, `list` in annotations would mean this method
    def list(self) -> list[ModelSummary]:
        """Registered models with their version count, newest version and aliases."""
        rows = _sql.rows(self._conn, _sql.query("models/list.sql"))
        return [ModelSummary(r[0], r[1], r[2], dict(sorted(r[5].items())), r[3], r[4]) for r in rows]

def _entry(t: Tensor) -> Entry:
    return Entry(t.kind, t.name, t.dtype, t.shape, t.nbytes, t.chunk_size, list(t.chunks))


_OPS = ("<=", ">=", "!=", "<", ">", "=")


def _metric_filter(spec: str | tuple[Any, ...]) -> dict[str, Any]:
    """"auc>=0.9", "loss:min<0.3" or ("auc", ">=", 0.9) / ("loss", "min", "<", 0.3) as the
    {"name", "agg", "op", "value"} rowver.model_search takes."""
    if isinstance(spec, tuple):
        if len(spec) == 3:
            name, op, value = spec
            agg = "last"
        elif len(spec) == 4:
            name, agg, op, value = spec
        else:
            raise InvalidInputError(f"a metric condition is (name, op, value) or (name, agg, op, value): {spec!r}")
    else:
        for op in _OPS:
            if op in spec:
                left, _, value = spec.partition(op)
                break
        else:
            raise InvalidInputError(f"metric condition {spec!r} has no comparison",
                                    hint="write NAME[:AGG]OP VALUE, e.g. auc>=0.9 or loss:min<0.3")
        name, _, agg = left.strip().partition(":")
        agg = agg or "last"
    if op not in _OPS:
        raise InvalidInputError(f"unknown comparison {op!r}; use <, <=, =, >=, > or !=")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"metric condition {spec!r}: {value!r} is not a number") from None
    return {"name": str(name).strip(), "agg": str(agg).strip(), "op": op, "value": number}
