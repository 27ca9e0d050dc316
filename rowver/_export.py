"""Exporting a table as of a version to Parquet or Delta Lake (``rowver export``, ``db.export``).
(Delta Lake: see its section below; the reading and the types are the same.)

One file set per version: ``PATH/version=V/part-NNNNN.parquet``, each file's schema metadata
naming the table and the version (``rowver.table``, ``rowver.version``). The rows come from
a server-side cursor over the table's as-of function, in key order, a batch at a time, each
batch turned into an Arrow record batch and written: memory holds one batch whatever the
table's size. The set is written under a temporary name and renamed into place when whole,
so a failed export leaves nothing; a version already exported is left as it is.

Types map only where the Parquet value is the PostgreSQL value: integers, floats and booleans
as themselves, numeric(p, s) as decimal(p, s), timestamptz as a UTC timestamp, timestamp as a
timestamp without zone, date, time, text types as strings, json and jsonb as their text, uuid
and enums as text, bytea as binary, one-dimensional arrays of these as lists. Any other type
(numeric without a precision, interval, timetz, geometric, network, ranges, composites, ...)
is an error naming the column and type, unless a ``cast`` names a PostgreSQL type for that
column (the server casts, e.g. ``{"location": "text"}``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from . import _refs, _sql
from ._sql import Connected
from .errors import ConflictError, InvalidInputError, UnsupportedError, translated

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("parquet", "delta")
ROWS_PER_FILE = 1_000_000  # a new part file after this many rows
BATCH = 50_000  # rows fetched and converted at a time

# told (rows written so far, None) a batch at a time as an export reads its rows (all of them, or
# the changed ones), then (rows, rows) when they end; possibly from the thread of the writer
# pulling them (deltalake, pyiceberg). Nothing for a version exported already.
Progress = Callable[[int, int | None], Any]

# types read as text by the server (the Parquet value is their text)
_AS_TEXT = {"json", "jsonb", "uuid"}


@dataclass(frozen=True)
class ExportResult:
    """Where a version of a table went: the file set's directory, its files, how many rows, and
    whether this call wrote it (False: it was exported already, and left as it was); ``changed``:
    the rows this call wrote, when that is not all of them (Delta and Iceberg after the first
    export, which write the change: a changed key's state, or its deletion)."""

    table: str
    version: int
    path: Path
    files: list[Path]
    rows: int
    written: bool
    changed: int | None = None


@dataclass(frozen=True)
class _Column:
    name: str
    type_name: str  # as PostgreSQL prints it, for messages
    select: sql.Composable  # how the read selects it (a cast where one is needed)
    arrow: Any  # its pyarrow type


def require_pyarrow() -> Any:
    """pyarrow, or one clear error saying how to get it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise UnsupportedError("export to Parquet needs pyarrow: pip install 'rowver[export]'") from exc
    return pyarrow


def export(db: Connected, table: str, at: str | int, to: str | os.PathLike[str], *, fmt: str = "parquet",
           cast: Mapping[str, str] | None = None, batch: int = BATCH,
           rows_per_file: int = ROWS_PER_FILE, progress: Progress | None = None) -> ExportResult:
    """Write ``table`` as of ``at`` under ``to`` (see the module docstring); ``progress``: see Progress."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"export format {fmt!r} is not supported; it writes {', '.join(FORMATS)}")
    pa = require_pyarrow()
    version = _refs.resolve_for(db.conn, table, at)  # (its own statement: the read sees every version to it)
    name, source, keys = _sql.one(
        db.conn, "select rowver.qualified((rowver.registered(%s::regclass)).relid), rowver.as_of_sql(%s::regclass, %s),"
                 " (rowver.registered(%s::regclass)).key_columns", (table, table, version, table))
    if fmt == "delta":
        deltalake = require_deltalake()
        delta = _delta_exported(deltalake, Path(to), table, name, version)
        if isinstance(delta, ExportResult):
            return delta
    else:
        target = Path(to) / f"version={version}"
        if target.exists():
            return _already(target, name, version)
    columns = _columns(db, table, pa, dict(cast or {}))
    if fmt == "delta":
        _delta_types(table, columns)
    metadata = {b"rowver.table": name.encode(), b"rowver.version": str(version).encode()}
    schema = pa.schema([pa.field(c.name, c.arrow) for c in columns], metadata=metadata)
    query = sql.SQL("select {} from {} order by {}").format(
        sql.SQL(", ").join(c.select for c in columns), sql.SQL(source),  # (quoted by the server: as_of_sql)
        sql.SQL(", ").join(sql.Identifier(k) for k in keys))
    if fmt == "delta":
        assert isinstance(delta, _Delta)
        return _write_delta(db, deltalake, delta, query, columns, schema, table, list(keys), batch, progress)
    staging = target.parent / f".version={version}.{os.getpid()}.partial"
    try:
        files, rows = _write(db, query, columns, schema, staging, batch, rows_per_file, progress)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(table, version, target, [target / f.name for f in files], rows, True)


def _already(target: Path, name: str, version: int) -> ExportResult:
    """The file set a former export left, when it is this table's at this version."""
    import pyarrow.parquet as pq

    files = sorted(target.glob("part-*.parquet"))
    found = pq.read_schema(files[0]).metadata if files else None
    if not found or found.get(b"rowver.table") != name.encode() or found.get(b"rowver.version") != str(version).encode():
        raise InvalidInputError(f"{target} exists and is not {name} as of version {version}: export to another path")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return ExportResult(name, version, target, files, rows, False)


def _columns(db: Connected, table: str, pa: Any, cast: dict[str, str]) -> list[_Column]:
    """The table's columns as the export reads them, each with its Arrow type."""
    rows = _sql.rows(
        db.conn,
        "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
        "       coalesce(nullif(b.typname, ''), t.typname), t.typtype = 'e',"
        "       e.typname, coalesce(e.typtype = 'e', false),"
        "       case when t.typtype = 'd' then t.typtypmod else a.atttypmod end"
        "  from pg_catalog.pg_attribute a"
        "  join pg_catalog.pg_type t on t.oid = a.atttypid"
        "  left join pg_catalog.pg_type b on t.typtype = 'd' and b.oid = t.typbasetype"
        "  left join pg_catalog.pg_type e on e.oid = coalesce(b.typelem, t.typelem) and e.typarray <> 0"
        "       and coalesce(b.typcategory, t.typcategory) = 'A'"
        " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped"
        " order by a.attnum", (table,))
    unknown = sorted(set(cast) - {r[0] for r in rows})
    if unknown:
        raise InvalidInputError(f"{table} has no column {unknown[0]!r} to cast")
    return [_cast_column(db, pa, table, row[0], cast[row[0]]) if row[0] in cast else _column(pa, table, *row)
            for row in rows]


def _column(pa: Any, table: str, name: str, type_name: str, base: str, is_enum: bool, element: str | None,
            element_enum: bool, typmod: int) -> _Column:
    ident = sql.Identifier(name)
    if element is not None:  # an array: a list of its element
        inner = _arrow(pa, element, typmod)
        as_text = element in _AS_TEXT or element_enum
        if inner is None and not as_text:
            raise _unsupported(table, name, type_name)
        if as_text:
            return _Column(name, type_name, sql.SQL("{}::text[]").format(ident), pa.list_(pa.string()))
        return _Column(name, type_name, ident, pa.list_(inner))
    if base in _AS_TEXT or is_enum:
        return _Column(name, type_name, sql.SQL("{}::text").format(ident), pa.string())
    arrow = _arrow(pa, base, typmod)
    if arrow is None:
        raise _unsupported(table, name, type_name)
    return _Column(name, type_name, ident, arrow)


# a cast's type: a name PostgreSQL resolves, and a precision and scale (numeric(12, 2))
_CAST = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ .\"]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")


def _cast_column(db: Connected, pa: Any, table: str, name: str, cast: str) -> _Column:
    """A column the server casts to ``cast`` (a type PostgreSQL names) before it is exported.
    The type's name is resolved by the server (regtype) and written back by it (format_type);
    only digits come from the caller."""
    found = _CAST.match(cast)
    if found is None:
        raise InvalidInputError(f"--cast {name}={cast}: not a type name (text, numeric(12,2), ...)")
    typname, canonical, is_enum = _sql.one(
        db.conn, "select t.typname, pg_catalog.format_type(t.oid, null), t.typtype = 'e'"
                 " from pg_catalog.pg_type t where t.oid = %s::regtype", (found.group(1),))
    precision, scale = found.group(2), found.group(3)
    typmod = -1 if precision is None else ((int(precision) << 16) | int(scale or 0)) + 4
    shown = (canonical if precision is None else f"{canonical}({int(precision)})" if scale is None  # (varchar(20))
             else f"{canonical}({int(precision)},{int(scale)})")
    if typname in _AS_TEXT or is_enum:
        return _Column(name, shown, sql.SQL("{}::text").format(sql.Identifier(name)), pa.string())
    arrow = _arrow(pa, typname, typmod)
    if arrow is None:
        raise _unsupported(table, name, shown)
    # shown: the server's own spelling of the type, and digits
    return _Column(name, shown, sql.SQL("{}::{}").format(sql.Identifier(name), sql.SQL(shown)), arrow)


def _unsupported(table: str, name: str, type_name: str) -> UnsupportedError:
    return UnsupportedError(f"column {name} of {table} is {type_name}, which has no faithful Parquet type; "
                            f"export it cast to one, e.g. --cast {name}=text")


def _arrow(pa: Any, base: str, typmod: int) -> Any:
    """The Arrow type holding PostgreSQL type ``base`` exactly, or None."""
    if base == "numeric":
        if typmod < 4:
            return None  # no precision: any scale, which no one decimal type holds
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0x7FF
        if scale > precision or precision > 76:
            return None  # (a negative scale, PostgreSQL 15 on, or wider than Arrow's widest)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    simple = {
        "bool": pa.bool_(), "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
        "float4": pa.float32(), "float8": pa.float64(),
        "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(),
        "date": pa.date32(), "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
        "time": pa.time64("us"), "bytea": pa.binary(),
    }
    return simple.get(base)


def _write(db: Connected, query: sql.Composed, columns: list[_Column], schema: pa.Schema, staging: Path,
           batch: int, rows_per_file: int, progress: Progress | None = None) -> tuple[list[Path], int]:
    """The query's rows into part files under ``staging``, a batch at a time."""
    import pyarrow.parquet as pq

    staging.mkdir(parents=True)
    files: list[Path] = []
    writer: pq.ParquetWriter | None = None
    rows = in_file = 0
    try:
        for record_batch in _record_batches(db, query, columns, schema, batch, progress):
            if writer is None or in_file >= rows_per_file:
                if writer is not None:
                    writer.close()
                files.append(staging / f"part-{len(files):05d}.parquet")
                writer, in_file = pq.ParquetWriter(files[-1], schema), 0
            writer.write_batch(record_batch)
            rows += record_batch.num_rows
            in_file += record_batch.num_rows
        if writer is None:  # an empty table: one file with the schema
            files.append(staging / "part-00000.parquet")
            writer = pq.ParquetWriter(files[-1], schema)
    finally:
        if writer is not None:
            writer.close()
    return files, rows


def _record_batches(db: Connected, query: sql.Composed, columns: list[_Column], schema: pa.Schema,
                    batch: int, progress: Progress | None = None) -> Iterator[pa.RecordBatch]:
    """The query's rows as Arrow record batches of at most ``batch`` rows, each told to ``progress``."""
    import pyarrow as pa

    done = 0
    for values in _batches(db, query, batch):
        arrays = [_array(pa, c, [row[i] for row in values]) for i, c in enumerate(columns)]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        done += len(values)
        if progress is not None:
            progress(done, None)
    if progress is not None:
        progress(done, done)


def _array(pa: Any, column: _Column, values: list[Any]) -> Any:
    try:
        return pa.array(values, type=column.arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise UnsupportedError(f"column {column.name} ({column.type_name}) holds a value Parquet's "
                               f"{column.arrow} cannot: {exc}") from exc


def _batches(db: Connected, query: sql.Composed, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows from a server-side cursor, ``batch`` at a time, in one transaction. Dates and
    timestamps through psycopg's own loaders: infinity is an error here, not a stand-in value."""
    from psycopg.pq import Format

    with translated(), db.conn.transaction(), db.conn.cursor(name="rowver_export") as cur:
        for type_name in ("timestamp", "timestamptz", "date"):
            oid = psycopg.adapters.types[type_name].oid
            loader = psycopg.adapters.get_loader(oid, Format.TEXT)
            assert loader is not None
            cur.adapters.register_loader(oid, loader)
        try:
            cur.execute(query)
            while rows := cur.fetchmany(batch):
                yield rows
        except psycopg.DataError as exc:
            if "infinity" in str(exc) or "too large" in str(exc) or "too small" in str(exc):
                raise UnsupportedError(f"a date or timestamp holds infinity, which Parquet cannot: {exc} "
                                       "(export that column cast to text)") from exc
            raise



# -- Delta Lake ------------------------------------------------------------------------------
# A Delta table at PATH holds one commit per exported version, its commit info naming the table,
# the version and what led to it (commit_summary), so Delta's own time travel reads each
# exported version. The first export writes the table whole; a later one only the change since
# the version exported before, from the change feed: one MERGE of the changed keys' states as of
# the new version (a key gone there comes as a row without rv_version: deleted), a version that
# left the table unchanged an empty commit. delta-rs rewrites each data file holding a changed key
# (copy-on-write: it writes no deletion vectors). The table is written whole again (an overwrite)
# when the change is not exact by keys: history pruned in between, or columns added, dropped or
# retyped. Versions go forward: a version older than the newest one there is refused.

DELTA_FILE_BYTES = 64 * 1024 * 1024  # a whole table written: data files of about this size (in memory), so a
# later change rewrites the files holding its keys, not the table (rows go in key order)
SHOWN_CHANGESETS = 100  # the newest changesets a commit's metadata lists
TEXT_LIMIT = 2000  # characters of authors and of messages it keeps


def require_deltalake() -> Any:
    """deltalake, or one clear error saying how to get it."""
    try:
        import deltalake
    except ImportError as exc:
        raise UnsupportedError("export to Delta Lake needs deltalake: pip install 'rowver[delta]'") from exc
    return deltalake


def commit_summary(db: Connected, table: str, name: str, version: int, since: int | None) -> dict[str, str]:
    """What a commit to an export target names (Delta commitInfo, Iceberg snapshot summary): the
    table, the version, the changesets after ``since`` up to it (the newest SHOWN_CHANGESETS;
    authors and messages cut at TEXT_LIMIT) and the rowver tags naming the version."""
    changesets = _sql.rows(db.conn, _sql.query("export/changesets.sql"), {
        "limit": SHOWN_CHANGESETS, "table": table, "since": since, "version": version})
    tags = [r[0] for r in _sql.rows(db.conn, _sql.query("export/tags.sql"), {"version": version})]
    authors = sorted({a for _, a, _ in changesets if a})
    messages = [f"{v}: {m}" for v, _, m in changesets if m]
    summary = {"rowver.table": name, "rowver.version": str(version),
               "rowver.changesets": ",".join(str(v) for v, _, _ in reversed(changesets)),
               "rowver.authors": ", ".join(authors)[:TEXT_LIMIT], "rowver.messages": "\n".join(messages)[:TEXT_LIMIT],
               "rowver.tags": ",".join(tags)}
    if since is not None:
        summary["rowver.since"] = str(since)
    return summary


@dataclass(frozen=True)
class _Delta:
    """An export's Delta target: the table there (None: none yet), the newest version exported."""

    path: Path
    found: Any
    last: int | None


def _delta_exported(deltalake: Any, to: Path, table: str, name: str, version: int) -> ExportResult | _Delta:
    """The result of the export that wrote this version already, or the target to write it to;
    refuses a path that is another table's, or whose newest export is a later version."""
    try:
        found = deltalake.DeltaTable(str(to))
    except deltalake.exceptions.TableNotFoundError:
        return _Delta(to, None, None)
    commits = found.history()
    others = {c.get("rowver.table") for c in commits} - {name}
    if others:
        raise InvalidInputError(f"{to} is a Delta table of {sorted(map(str, others))[0]}, not of {name}")
    exported = {int(c["rowver.version"]): c for c in commits if "rowver.version" in c}
    if version in exported:
        return _delta_result(deltalake, to, table, version, exported[version]["version"], written=False)
    if exported and version < max(exported):
        raise InvalidInputError(f"{to} holds {name} up to version {max(exported)}; version {version} is older "
                                "(a Delta table's versions go forward): export it to another path")
    return _Delta(to, found, max(exported) if exported else None)


def _delta_result(deltalake: Any, to: Path, table: str, version: int, delta_version: int, *, written: bool,
                  changed: int | None = None) -> ExportResult:
    """What the Delta table holds at ``delta_version``: its data files and rows (from its log)."""
    at = deltalake.DeltaTable(str(to), version=delta_version)
    actions = at.get_add_actions(flatten=True)
    rows = sum(n or 0 for n in actions.column("num_records").to_pylist()) if actions.num_rows else 0
    return ExportResult(table, version, to, [Path(u) for u in at.file_uris()], rows, written, changed)


def _delta_types(table: str, columns: list[_Column]) -> None:
    """Delta Lake has no time type and no decimal wider than 38 digits."""
    for c in columns:
        inner = getattr(c.arrow, "value_type", c.arrow)
        if str(inner).startswith(("time64", "decimal256")):
            raise UnsupportedError(f"column {c.name} of {table} is {c.type_name}, which has no Delta Lake type; "
                                   f"export it cast to one, e.g. --cast {c.name}=text")


def _write_delta(db: Connected, deltalake: Any, target: _Delta, query: sql.Composed, columns: list[_Column],
                 schema: pa.Schema, table: str, keys: list[str], batch: int,
                 progress: Progress | None = None) -> ExportResult:
    """One Delta commit of the version: the whole table (the first, or an overwrite), or the
    change since the version exported before. A write that fails commits nothing."""
    name, version = schema.metadata[b"rowver.table"].decode(), int(schema.metadata[b"rowver.version"])
    summary = commit_summary(db, table, name, version, target.last)
    changes = None if target.last is None else _delta_changes(db, target, table, version, keys, columns, schema)
    rows = [0]
    if changes is None:
        summary["rowver.export"] = "full" if target.last is None else "full overwrite"
        reader = _reader(db, query, columns, schema, batch, rows, progress)
        target.path.mkdir(parents=True, exist_ok=True)
        _delta_call(deltalake, reader, lambda: deltalake.write_deltalake(
            str(target.path), reader, mode="overwrite", schema_mode="overwrite", target_file_size=DELTA_FILE_BYTES,
            commit_properties=deltalake.CommitProperties(custom_metadata=summary)))
        changed = None
    else:
        summary["rowver.export"] = "changes"
        reader = _reader(db, changes, columns, schema, batch, rows, progress)
        _delta_merge(deltalake, target, reader, keys, summary)
        changed = rows[0]
    written = deltalake.DeltaTable(str(target.path))
    return _delta_result(deltalake, target.path, table, version, written.version(), written=True, changed=changed)


def _reader(db: Connected, query: sql.Composed, columns: list[_Column], schema: pa.Schema, batch: int,
            counted: list[int], progress: Progress | None = None) -> Any:
    """The query's rows as an Arrow stream, a batch at a time, counted; an error of ours met
    while a writer pulls the stream is kept on the reader (``failed``) to be raised as it is."""
    import pyarrow as pa

    failed: list[Exception] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for record_batch in _record_batches(db, query, columns, schema, batch, progress):
                counted[0] += record_batch.num_rows
                yield record_batch
        except Exception as exc:
            failed.append(exc)  # (deltalake reports it as its own error: ours is the one to raise)
            raise

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    return _Stream(reader, failed)


@dataclass
class _Stream:
    """An Arrow stream (the C stream interface deltalake takes) and the error of ours it met."""

    reader: Any
    failed: list[Exception]

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.reader.__arrow_c_stream__(requested_schema)


def _delta_call(deltalake: Any, stream: _Stream, write: Any) -> Any:
    """``write()``, raising our own error where reading the stream failed, and a commit another
    writer beat as rowver.ConflictError."""
    try:
        return write()
    except Exception as exc:
        if stream.failed:
            raise stream.failed[0] from exc
        if isinstance(exc, deltalake.exceptions.CommitFailedError):
            raise ConflictError(f"another commit to the Delta table came first; export again ({exc})") from exc
        raise


def _delta_changes(db: Connected, target: _Delta, table: str, version: int, keys: list[str],
                   columns: list[_Column], schema: pa.Schema) -> sql.Composed | None:
    """The query of the keys that changed after the version exported there, each with its state
    as of ``version`` (a key gone: only the key, rv_version NULL), when that is exactly the
    change (None: the table is written whole)."""
    if "rv_version" not in schema.names or not _delta_schema_same(target.found, schema):
        return None
    by_keys, keys_sql, as_of, key_join = _sql.one(db.conn, _sql.query("export/changes.sql"), {
        "table": table, "since": target.last, "version": version})
    if not by_keys:
        return None
    # each key from the change feed (rv_k), its row as of the version (x) where it has one;
    # the pieces are written by the server, identifiers quoted by format('%I')
    items = sql.SQL(", ").join(sql.Identifier("rv_k" if c.name in keys else "x", c.name) for c in columns)
    rows = sql.SQL("select {} from ({}) rv_k left join lateral (select * from {} x where {} limit 1) x on true").format(
        items, sql.SQL(keys_sql), sql.SQL(as_of), sql.SQL(key_join))
    return sql.SQL("select {} from ({}) rv_row order by {}").format(
        sql.SQL(", ").join(c.select for c in columns), rows, sql.SQL(", ").join(map(sql.Identifier, keys)))


def _delta_schema_same(found: Any, schema: pa.Schema) -> bool:
    """Whether the Delta table's columns are these, with these types (as Delta holds them)."""
    import pyarrow as pa

    held = pa.schema(found.schema().to_arrow())
    if held.names != schema.names:
        return False
    return all(_delta_type(pa, a.type) == _delta_type(pa, b.type) for a, b in zip(held, schema))


def _delta_type(pa: Any, arrow: Any) -> str:
    """An Arrow type as Delta stores it (strings and binaries of any width alike, lists by element)."""
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"list<{_delta_type(pa, arrow.value_type)}>"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return "string"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow) or pa.types.is_binary_view(arrow):
        return "binary"
    return str(arrow)


def _delta_merge(deltalake: Any, target: _Delta, source: _Stream, keys: list[str], summary: dict[str, str]) -> None:
    """One MERGE commit: a changed key's row deleted where the source has no state for it
    (rv_version NULL), updated where it has, inserted where the target has none. A MERGE that
    changes nothing commits nothing in delta-rs: an empty append commits the version then."""
    on = " and ".join(f"t.{_delta_name(k)} = s.{_delta_name(k)}" for k in keys)
    gone, there = "s.rv_version is null", "s.rv_version is not null"
    before = target.found.version()
    properties = deltalake.CommitProperties(custom_metadata=summary)
    _delta_call(deltalake, source, lambda: target.found.merge(
        source, on, source_alias="s", target_alias="t", commit_properties=properties)
        .when_matched_delete(gone).when_matched_update_all(there).when_not_matched_insert_all(there).execute())
    if deltalake.DeltaTable(str(target.path)).version() == before:
        empty = source.reader.schema.empty_table()
        _delta_call(deltalake, source, lambda: deltalake.write_deltalake(
            str(target.path), empty, mode="append", commit_properties=properties))


def _delta_name(column: str) -> str:
    """A column named in a delta-rs predicate (SQL, double-quoted)."""
    return '"' + column.replace('"', '""') + '"'
