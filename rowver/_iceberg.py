"""Exporting a table as of a version to an Apache Iceberg table (``--format iceberg``).

The Iceberg table lives in a warehouse directory PATH, registered in a pyiceberg SQL catalog:
by default the SQLite file PATH/catalog.db (the export is then one self-contained directory),
or any SQLAlchemy URL given as ``catalog`` (a PostgreSQL one, ``postgresql://...``, even the
versioned database itself: pyiceberg keeps two tables there, ``iceberg_tables`` and
``iceberg_namespace_properties``). The table is ``rowver.<schema>_<table>`` unless named.

Each exported version is one catalog commit and one snapshot: the table as of that version,
tagged ``v<version>``, its summary naming ``rowver.table``, ``rowver.version``, the changesets
since the version exported before (versions, authors, messages) and the rowver tags on the
version; the table's property ``rowver.version`` is the newest version exported. The first
export appends the whole table; a later one reads only the keys that changed in between (the
change feed's ``rowver.changed_keys_sql``) and their states as of the new version, and writes an
overwrite snapshot: the old rows of those keys deleted by position (one position-delete file,
merge-on-read: no data file is rewritten, readers skip the rows it names), the new states
appended; its cost follows the change, not the table. It overwrites the whole table instead
(dropping the data and delete files there) when deleting by key would not be exact or cheap: a
composite key, a key that is neither an integer nor text, a column added or dropped in between
(the Iceberg table's schema follows, in the same commit), or history pruned in between. A version exported already writes
nothing; an older one than the newest there is refused.

Types are the Parquet export's (``_export``), except that smallint becomes Iceberg's int and a
numeric over 38 digits (Iceberg's widest decimal) is an error naming the column, or a cast.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from psycopg import sql

from . import _export, _refs, _sql
from ._export import BATCH, ExportResult, _Column
from ._sql import Connected
from .errors import ConflictError, InvalidInputError, ServerError, UnsupportedError

NAMESPACE = "rowver"
CATALOG_FILE = "catalog.db"
_KEY_TYPES = ("int16", "int32", "int64", "string")  # keys a delete filter names exactly (In)


def require_pyiceberg() -> Any:
    """pyiceberg, or one clear error saying how to get it."""
    try:
        import pyiceberg.catalog.sql
    except ImportError as exc:
        raise UnsupportedError("export to Iceberg needs pyiceberg: pip install 'rowver[iceberg]'") from exc
    return pyiceberg


@dataclasses.dataclass(frozen=True)
class _Source:
    """The exported table as rowver knows it, at the version exported."""

    table: str  # as the caller named it
    name: str  # schema-qualified, from the catalog
    version: int
    keys: list[str]
    as_of: str  # the as-of function called at version, as a FROM item (quoted by the server)


def export(db: Connected, table: str, at: str | int, to: str | os.PathLike[str], *, catalog: str | None = None,
           name: str | None = None, cast: Mapping[str, str] | None = None, batch: int = BATCH,
           progress: _export.Progress | None = None) -> ExportResult:
    """Write ``table`` as of ``at`` to the Iceberg table in warehouse ``to`` (the module docstring);
    ``progress``: told the rows it writes (rowver._export.Progress)."""
    pa = _export.require_pyarrow()
    require_pyiceberg()
    version = _refs.resolve_for(db.conn, table, at)
    qualified, as_of, keys = _sql.one(
        db.conn, "select rowver.qualified((rowver.registered(%s::regclass)).relid), rowver.as_of_sql(%s::regclass, %s),"
                 " (rowver.registered(%s::regclass)).key_columns", (table, table, version, table))
    source = _Source(table, qualified, version, list(keys), as_of)
    identifier = _identifier(name, qualified)
    warehouse = Path(to).resolve()
    found = _open_catalog(warehouse, catalog)
    try:
        target = _load(found, identifier)
        last = _exported_before(target, identifier, source)
        if isinstance(last, ExportResult):
            return last
        columns = [_iceberg_column(pa, table, c) for c in _export._columns(db, table, pa, dict(cast or {}))]
        schema = pa.schema([pa.field(c.name, c.arrow) for c in columns])
        return _write(db, found, target, identifier, source, last, columns, schema, warehouse, batch, progress)
    finally:
        found.engine.dispose()  # (its pooled connections: a PostgreSQL catalog's would linger)


def _identifier(name: str | None, qualified: str) -> tuple[str, str]:
    """The Iceberg table: ``name`` (NAMESPACE.TABLE), else rowver.<schema>_<table>."""
    if name is None:
        return NAMESPACE, re.sub(r"[^A-Za-z0-9_]", "_", qualified.replace('"', "").replace(".", "_", 1))
    namespace, dot, table = name.partition(".")
    if not dot or not namespace or not table or "." in table:
        raise InvalidInputError(f"--as takes NAMESPACE.TABLE, not {name!r}")
    return namespace, table


def _open_catalog(warehouse: Path, uri: str | None) -> Any:
    """pyiceberg's SQL catalog at ``uri`` (default: the SQLite file in the warehouse). A PostgreSQL
    URL goes through psycopg 3, which rowver has already, not psycopg2."""
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    warehouse.mkdir(parents=True, exist_ok=True)
    if uri is None:
        uri = f"sqlite:///{warehouse / CATALOG_FILE}"
    elif re.match(r"^postgres(ql)?://", uri):
        uri = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", uri)
    try:
        return SqlCatalog(NAMESPACE, uri=uri, warehouse=warehouse.as_uri())
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InvalidInputError(f"--catalog takes a SQLAlchemy URL (sqlite:///PATH, postgresql://...): {exc}") from exc
    except OperationalError as exc:  # (its message names the server, never the password)
        raise ServerError(f"cannot open the Iceberg catalog: {exc.orig}") from exc


def _load(catalog: Any, identifier: tuple[str, str]) -> Any:
    """The Iceberg table, or None when there is none yet."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def _exported_before(target: Any, identifier: tuple[str, str], source: _Source) -> int | None | ExportResult:
    """The newest version exported to ``target`` (None: none), or the result of the export that
    wrote this version already; refuses another table's target and an older version."""
    if target is None:
        return None
    shown = ".".join(identifier)
    owner = target.properties.get("rowver.table")
    if owner != source.name:
        raise InvalidInputError(f"Iceberg table {shown} holds {owner or 'no rowver export'}, not {source.name}: "
                                "export to another table (--as) or warehouse")
    tag = target.refs().get(f"v{source.version}")
    if tag is not None:
        return _result(target, source, tag.snapshot_id, written=False)
    last = int(target.properties["rowver.version"])
    if source.version < last:
        raise InvalidInputError(f"Iceberg table {shown} holds {source.name} up to version {last}; version "
                                f"{source.version} is older (versions go forward): export it to another table")
    return last


def _result(target: Any, source: _Source, snapshot_id: int, *, written: bool,
            changed: int | None = None) -> ExportResult:
    """What the snapshot holding the version holds: its data files and rows."""
    snapshot = target.snapshot_by_id(snapshot_id)
    files = [Path(t.file.file_path.removeprefix("file://")) for t in target.scan(snapshot_id=snapshot_id).plan_files()]
    summary = snapshot.summary if snapshot is not None and snapshot.summary else {}
    rows = int(summary.get("total-records") or 0) - int(summary.get("total-position-deletes") or 0)
    return ExportResult(source.table, source.version, Path(target.location().removeprefix("file://")), files, rows,
                        written, changed)


def _iceberg_column(pa: Any, table: str, column: _Column) -> _Column:
    """The Parquet export's column, as Iceberg holds it: smallint as int; no decimal256."""
    def held(arrow: Any) -> Any:
        if pa.types.is_list(arrow):
            return pa.list_(held(arrow.value_type))
        if pa.types.is_int16(arrow):
            return pa.int32()
        if pa.types.is_decimal256(arrow):
            raise UnsupportedError(f"column {column.name} of {table} is {column.type_name}, wider than Iceberg's "
                                   f"decimal(38); export it cast to one, e.g. --cast {column.name}=text")
        return arrow

    return dataclasses.replace(column, arrow=held(column.arrow))


def _write(db: Connected, catalog: Any, target: Any, identifier: tuple[str, str], source: _Source,
           last: int | None, columns: list[_Column], schema: Any, warehouse: Path, batch: int,
           progress: _export.Progress | None = None) -> ExportResult:
    """One catalog commit: the version's rows (all, or the changed keys'), its tag and properties."""
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.table.update.snapshot import ManageSnapshots

    summary = _summary(db, source, last)
    properties = {"rowver.table": source.name, "rowver.version": str(source.version)}
    if target is None:
        catalog.create_namespace_if_not_exists(identifier[0])  # (listed: catalog.list_tables finds the table)
        tx = catalog.create_table_transaction(identifier, schema=schema, properties=properties,
                                              location=(warehouse / identifier[0] / identifier[1]).as_uri())
    else:
        tx = target.transaction()
        evolved = _schema_differs(target, schema)
        if evolved:
            _evolve(tx, target, schema, source, identifier, last)
    changed_keys = None if last is None or evolved else _changed_keys(db, source, last, columns)
    counted = [0]
    if last is None:  # the first export: everything
        summary["rowver.export"] = "full"
        tx.append(_reader(db, _full_query(source, columns), columns, schema, batch, counted, progress),
                  snapshot_properties=summary)
    elif changed_keys is None:
        summary["rowver.export"] = "full overwrite"
        _replace(tx, target, _reader(db, _full_query(source, columns), columns, schema, batch, counted, progress),
                 summary)
    else:
        key, values = changed_keys
        summary["rowver.export"] = "changes"
        summary["rowver.changed-keys"] = str(len(values))
        reader = _reader(db, _changed_query(db, source, last, columns), columns, schema, batch, counted, progress)
        _replace(tx, target, reader, summary, key, values)
    snapshot_id = tx.table_metadata.current_snapshot().snapshot_id
    ManageSnapshots(tx).create_tag(snapshot_id, f"v{source.version}").commit()
    if target is not None:
        tx.set_properties(properties)
    try:
        tx.commit_transaction()
    except CommitFailedException as exc:
        raise ConflictError(f"another commit to Iceberg table {'.'.join(identifier)} came first; export again") from exc
    return _result(catalog.load_table(identifier), source, snapshot_id, written=True, changed=counted[0])


def _replace(tx: Any, target: Any, reader: Any, summary: dict[str, str], key: str | None = None,
             values: list[Any] | None = None) -> None:
    """One overwrite snapshot. With a key: the rows of the changed keys deleted by position (one
    position-delete file naming each data file and row holding such a key: merge-on-read, the
    data files stay as they are and readers skip those rows), the reader's rows (their new states)
    appended. Without one: every data file and delete file dropped, the reader's rows appended.
    (Rewriting each data file holding a changed key instead, copy-on-write as pyiceberg's own
    delete, costs the rewrite of every file when the changes are spread: most of the table.)"""
    import itertools

    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    metadata = tx.table_metadata
    counter = itertools.count(0)
    with tx.update_snapshot(snapshot_properties=summary).overwrite() as snapshot:
        tasks = list(target.scan().plan_files())
        if key is None:
            for task in tasks:
                snapshot.delete_data_file(task.file)
            _drop_delete_files(snapshot, list({f.file_path: f for t in tasks for f in t.delete_files}.values()))
        else:
            deletes = _positions(target.io, metadata, tasks, key, values or [])
            if deletes.num_rows:
                _add_delete_file(snapshot, _write_deletes(target, metadata, deletes, snapshot.commit_uuid))
        for data_file in _dataframe_to_data_files(table_metadata=metadata, df=reader, io=target.io,
                                                  write_uuid=snapshot.commit_uuid, counter=counter):
            snapshot.append_data_file(data_file)


# the position-delete file's columns (Iceberg's reserved field ids)
_DELETE_PATH_ID, _DELETE_POS_ID = 2147483546, 2147483545


def _positions(io: Any, metadata: Any, tasks: list[Any], key: str, values: list[Any]) -> Any:
    """(file_path, pos) of each live row, in the data files, whose key is one of ``values``:
    positions in the file as written (its key column read alone, raw), less those a delete file
    there deletes already. Sorted by path and position, as Iceberg wants them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import _read_deletes

    field_id = metadata.schema().find_field(key).field_id
    changed = pa.array(values)
    deleted: dict[str, dict[str, Any]] = {}  # delete file -> data file -> positions (each read once)
    found = []
    for task in sorted(tasks, key=lambda t: t.file.file_path):
        with io.new_input(task.file.file_path).open() as f:
            parquet = pq.ParquetFile(f)
            keys = parquet.read(columns=[_column_named(parquet.schema_arrow, field_id)]).column(0)
        hit = pc.indices_nonzero(pc.is_in(keys, value_set=changed.cast(keys.type))).cast(pa.int64())
        for delete_file in task.delete_files:
            if delete_file.file_path not in deleted:
                deleted[delete_file.file_path] = _read_deletes(io, delete_file)
            gone = deleted[delete_file.file_path].get(task.file.file_path)
            if gone is not None and len(hit):
                hit = hit.filter(pc.invert(pc.is_in(hit, value_set=gone.combine_chunks().cast(pa.int64()))))
        if len(hit):
            found.append(pa.table({"file_path": pa.array([task.file.file_path] * len(hit), pa.string()), "pos": hit}))
    schema = pa.schema([pa.field("file_path", pa.string(), False, {b"PARQUET:field_id": str(_DELETE_PATH_ID).encode()}),
                        pa.field("pos", pa.int64(), False, {b"PARQUET:field_id": str(_DELETE_POS_ID).encode()})])
    return pa.concat_tables(found).cast(schema) if found else schema.empty_table()


def _column_named(schema: Any, field_id: int) -> str:
    """The name, in a data file, of the column holding Iceberg field ``field_id``."""
    for field in schema:
        if (field.metadata or {}).get(b"PARQUET:field_id") == str(field_id).encode():
            return str(field.name)
    raise UnsupportedError(f"an Iceberg data file has no column of field {field_id}: export to another table")


def _write_deletes(target: Any, metadata: Any, deletes: Any, commit_uuid: Any) -> Any:
    """The position-delete file holding ``deletes``, written, as the DataFile a manifest lists."""
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(NestedField(_DELETE_PATH_ID, "file_path", StringType(), required=True),
                    NestedField(_DELETE_POS_ID, "pos", LongType(), required=True))
    path = target.location_provider().new_data_location(data_file_name=f"{commit_uuid}-deletes.parquet")
    output = target.io.new_output(path)
    collected: list[Any] = []
    with output.create(overwrite=False) as f:
        pq.write_table(deletes, f, metadata_collector=collected)
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=collected[0], stats_columns=compute_statistics_plan(schema, metadata.properties),
        parquet_column_mapping=parquet_path_to_id_mapping(schema))
    return DataFile.from_args(content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
                              partition=Record(), file_size_in_bytes=len(output), sort_order_id=None,
                              spec_id=metadata.default_spec_id, equality_ids=None, key_metadata=None,
                              **statistics.to_serialized_dict())


def _drop_delete_files(snapshot: Any, delete_files: list[Any]) -> None:
    """The snapshot keeps none of the delete files (they name data files it drops too), and its
    summary counts them removed. (pyiceberg's overwrite removes data files only.)"""
    from pyiceberg.manifest import ManifestContent

    if not delete_files:
        return
    summarize = snapshot._summary

    def without_deletes(properties: dict[str, str]) -> Any:
        summary = summarize(properties)
        summary["removed-delete-files"] = str(len(delete_files))
        summary["removed-position-deletes"] = str(sum(f.record_count for f in delete_files))
        summary["total-delete-files"] = summary["total-position-deletes"] = "0"
        return summary

    snapshot._process_manifests = lambda manifests: [m for m in manifests if m.content != ManifestContent.DELETES]
    snapshot._summary = without_deletes


def _add_delete_file(snapshot: Any, delete_file: Any) -> None:
    """The snapshot lists ``delete_file`` in a manifest of its own (of content DELETES) and counts
    it in its summary. (pyiceberg 0.12 reads delete files but has no API to add one: its snapshot
    producer's last step over the manifests is where this one joins them.)"""
    from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestEntryStatus, ManifestWriterV2

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self) -> Any:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    def with_deletes(manifests: list[Any]) -> list[Any]:
        writer = DeleteManifestWriter(snapshot._transaction.table_metadata.spec(), snapshot.schema(),
                                      snapshot.new_manifest_output(), snapshot._snapshot_id, snapshot._compression)
        with writer:
            writer.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot._snapshot_id,
                                               sequence_number=None, file_sequence_number=None, data_file=delete_file))
        snapshot._added_data_files.append(delete_file)  # (its manifest written: the summary alone counts it now)
        return [*manifests, writer.to_manifest_file()]

    snapshot._process_manifests = with_deletes


def _evolve(tx: Any, target: Any, schema: Any, source: _Source, identifier: tuple[str, str], last: int | None) -> None:
    """The Iceberg table's columns made the exported ones, in the commit: those added since
    ``last`` added, those dropped deleted (old snapshots keep the schema they were written with)."""
    from pyiceberg.exceptions import ValidationError

    try:
        with tx.update_schema() as update:
            update.union_by_name(schema)
            for gone in [f.name for f in target.schema().fields if f.name not in schema.names]:
                update.delete_column(gone)
    except (ValidationError, ValueError) as exc:
        raise UnsupportedError(f"the columns of {source.name} changed since version {last} in a way Iceberg table "
                               f"{'.'.join(identifier)} cannot follow ({exc}): export to another table (--as) "
                               "or warehouse") from exc


def _schema_differs(target: Any, schema: Any) -> bool:
    """Whether the Iceberg table's columns are not these (names and types, in order)."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    held = target.schema()
    if [f.name for f in held.fields] != schema.names:
        return True
    wanted = pyarrow_to_schema(schema, name_mapping=held.name_mapping)  # (every name is held: mapped to its id)
    return [(f.name, f.field_type) for f in held.fields] != [(f.name, f.field_type) for f in wanted.fields]


def _changed_keys(db: Connected, source: _Source, last: int, columns: list[_Column]) -> tuple[str, list[Any]] | None:
    """The keys that changed after ``last`` up to the version, when deleting them by key and
    appending their new states is exact (None: export the whole table instead)."""
    if len(source.keys) != 1:
        return None
    key = source.keys[0]
    column = next(c for c in columns if c.name == key)
    if str(column.arrow) not in _KEY_TYPES or column.select != sql.Identifier(key):
        return None
    by_keys, columns_changed, keys_sql = _sql.one(
        db.conn, "select rowver.diff_by_keys(%s::regclass, %s, %s),"
                 " exists (select from rowver.column_life c"
                 "          where c.table_id = (rowver.registered(%s::regclass)).id"
                 "            and (c.added_version > %s or c.dropped_version > %s)),"
                 " rowver.changed_keys_sql(%s::regclass, %s, %s)",
        (source.table, last, source.version, source.table, last, last, source.table, last, source.version))
    if not by_keys or columns_changed:
        return None
    rows = db.conn.execute(sql.SQL(keys_sql)).fetchall()  # (quoted by the server: changed_keys_sql)
    return key, [r[0] for r in rows]


def _full_query(source: _Source, columns: list[_Column]) -> sql.Composed:
    return sql.SQL("select {} from {} order by {}").format(
        sql.SQL(", ").join(c.select for c in columns), sql.SQL(source.as_of),  # (quoted by the server)
        sql.SQL(", ").join(map(sql.Identifier, source.keys)))


def _changed_query(db: Connected, source: _Source, last: int, columns: list[_Column]) -> sql.Composed:
    """The rows as of the version of the keys that changed after ``last``: each key looked up
    through the as-of function's key index, as rowver's diff does."""
    keys_sql, join = _sql.one(
        db.conn, "select rowver.changed_keys_sql(%s::regclass, %s, %s),"
                 " rowver.key_join_sql(%s::regclass, (rowver.registered(%s::regclass)).key_columns, 'x', 'rv_k')",
        (source.table, last, source.version, source.table, source.table))
    # (all three pieces are written by the server, identifiers quoted by format('%I'))
    rows = sql.SQL("select x.* from ({}) rv_k cross join lateral (select * from {} x where {} limit 1) x").format(
        sql.SQL(keys_sql), sql.SQL(source.as_of), sql.SQL(join))
    return sql.SQL("select {} from ({}) rv_row order by {}").format(
        sql.SQL(", ").join(c.select for c in columns), rows, sql.SQL(", ").join(map(sql.Identifier, source.keys)))


def _reader(db: Connected, query: sql.Composed, columns: list[_Column], schema: Any, batch: int,
            counted: list[int], progress: _export.Progress | None = None) -> Any:
    """The query's rows as an Arrow stream pyiceberg consumes a batch at a time; counts them."""
    import pyarrow as pa

    def batches() -> Iterator[Any]:
        for record_batch in _export._record_batches(db, query, columns, schema, batch, progress):
            counted[0] += record_batch.num_rows
            yield record_batch

    return pa.RecordBatchReader.from_batches(schema, batches())


def _summary(db: Connected, source: _Source, last: int | None) -> dict[str, str]:
    """The snapshot summary's rowver properties (as a Delta export's commit info)."""
    return _export.commit_summary(db, source.table, source.name, source.version, last)
