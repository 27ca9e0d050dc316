"""A model version as a directory: ``rowver model export`` and ``import``.

    DIR/manifest.json        metadata, content hash and, per file, dtype, shape and chunk hashes
    DIR/weights/000001.npy   one .npy file per weight (numpy's own format, raw bytes)
    DIR/artifacts/000001     one file per artifact

File names are positions, never tensor names, so no name can reach outside DIR. Export
streams chunk by chunk and writes manifest.json last: a directory without one is an
export that did not finish. Import checks every file's size against the manifest before
anything is written, and every chunk's hash while it streams, so a truncated or altered
directory is refused and nothing half-saved becomes visible.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import psycopg

from ..errors import InvalidInputError
from . import _chunks as chunks
from ._blobs import dtype_from_text, file_blob
from ._chunks import Blob, Entry

if TYPE_CHECKING:
    from ._types import ModelVersion

FORMAT = "rowver-model-export/1"


def export(conn: psycopg.Connection, info: ModelVersion, entries: list[Entry], directory: Path,
           progress: chunks.Progress | None = None) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidInputError(f"{directory} exists and is not an empty directory")
    files = []
    for n, e in enumerate(entries, 1):
        rel = f"weights/{n:06d}.npy" if e.kind == "weight" else f"artifacts/{n:06d}"
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            if e.kind == "weight":
                _write_npy_header(f, dtype_from_text(e.dtype), e.shape)
        files.append({**e.as_json(), "file": rel})

    current: list[Any] = [None, None]  # (entry index, open file)

    def sink(i: int, offset: int, data: memoryview) -> None:
        if current[0] != i:
            if current[1] is not None:
                current[1].close()
            current[0], current[1] = i, (directory / files[i]["file"]).open("ab")
        current[1].write(data)

    try:
        chunks.read(conn, entries, sink, what=info.ref, progress=progress)
    finally:
        if current[1] is not None:
            current[1].close()
    # params and metrics exactly as stored (the content hash covers params): jsonb's own text
    exact = conn.execute("select params::text, metrics::text from rowver.model_version"
                         " where model = %s and version = %s", (info.model, info.version)).fetchone()
    assert exact is not None
    meta = {"format": FORMAT, "model": info.model, "version": info.version, "params": info.params,
            "metrics": info.metrics, "tags": info.tags, "description": info.description,
            "code_revision": info.code_revision, "data_version": info.data_version, "data_ref": info.data_ref,
            "author": info.author, "created_at": info.created_at.isoformat(), "content_hash": info.content_hash,
            "chunk_size": entries[0].chunk_size if entries else chunks.CHUNK_SIZE,
            "params_json": exact[0], "metrics_json": exact[1], "files": files}
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, directory / "manifest.json")


def _write_npy_header(f: IO[bytes], dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(f, header)
    except ValueError:  # a header over 64 KiB (huge structured dtypes)
        np.lib.format.write_array_header_2_0(f, header)


def read(directory: Path) -> tuple[dict[str, Any], list[Blob]]:
    """The export's metadata and one streaming blob per file, each checked against the
    manifest for size, dtype and shape (chunk hashes are checked as they stream)."""
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        raise InvalidInputError(f"{directory} has no manifest.json: not a rowver model export, "
                                "or an export that did not finish")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{manifest} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidInputError(f"{manifest} is not a {FORMAT} manifest")
    for key in ("model", "version", "params_json", "metrics_json", "files"):
        if key not in meta:
            raise InvalidInputError(f"{manifest} is malformed: it has no {key!r}")
    chunk_size = int(meta.get("chunk_size") or chunks.CHUNK_SIZE)
    root = directory.resolve()
    blobs = []
    try:
        for spec in meta["files"]:
            kind, name, dtype, nbytes = spec["kind"], spec["name"], spec["dtype"], int(spec["nbytes"])
            shape = tuple(int(n) for n in spec["shape"])
            expect = [bytes.fromhex(h) for h in spec["chunks"]]
            path = (directory / spec["file"]).resolve()
            if root not in path.parents:
                raise InvalidInputError(f"{manifest} names a file outside {directory}: {spec['file']!r}")
            if int(spec.get("chunk_size", chunk_size)) != chunk_size or len(expect) != -(-nbytes // chunk_size):
                raise InvalidInputError(f"{manifest}: the chunks of {kind} {name!r} do not fit its size")
            if not path.is_file():
                raise InvalidInputError(f"{directory} is incomplete: {spec['file']} ({kind} {name!r}) is missing")
            offset = 0
            if kind == "weight":
                offset = _check_npy(path, dtype_from_text(dtype), shape)
            size = path.stat().st_size - offset
            if size < nbytes:
                raise InvalidInputError(f"{spec['file']} ({kind} {name!r}) is truncated: {size} of {nbytes} bytes")
            if size > nbytes:
                raise InvalidInputError(f"{spec['file']} ({kind} {name!r}) has {size - nbytes} bytes more "
                                        "than its manifest says")
            blobs.append(file_blob(kind, name, dtype, shape, path, offset, nbytes, expect))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"{manifest} is malformed: {type(exc).__name__} {exc}") from None
    return meta, blobs


def _check_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Where the data of a .npy file starts, after checking its header against the manifest.
    numpy's header reader evaluates literals only; nothing is unpickled."""
    with path.open("rb") as f:
        try:
            major, _minor = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            got_shape, fortran, got_dtype = read_header(f)
        except ValueError as exc:
            raise InvalidInputError(f"{path.name} is not a valid .npy file: {exc}") from None
        if fortran or got_dtype != dtype or tuple(got_shape) != shape:
            raise InvalidInputError(f"{path.name} holds {got_dtype} {list(got_shape)}"
                                    f"{' in Fortran order' if fortran else ''}; the manifest says {dtype} {list(shape)}")
        return f.tell()
