"""Reading versioned tables: as of a ref, a row's history, diffs, the log and tags.

Refs are resolved first, in their own statement, and the read follows: a snapshot taken
after head was known sees every version at or below it, so the read is repeatable. Reads
come back rows first (``Result``, no pandas needed) or as DataFrames.
"""

from __future__ import annotations

import contextlib
import json
import select
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from . import _frames, _refs, _sql
from ._sql import Connected
from .errors import BadKeyError, InvalidInputError, RowverError, translated

if TYPE_CHECKING:
    import pandas as pd



Rows = list[tuple[Any, ...]]
Described = list[Any]


@dataclass(frozen=True)
class Result:
    """A read, rows first: column names, rows as tuples of Python values, and the version read
    (None for reads not of one version); ``.frame()`` gives the same as a DataFrame."""

    columns: list[str]
    rows: Rows
    type_oids: list[int] = field(repr=False)
    version: int | None = None
    tz: Any = field(default=None, repr=False)  # the session's zone, for timestamps in frames

    def frame(self) -> pd.DataFrame:
        return _frames.to_frame(self.rows, self.columns, self.type_oids, tz=self.tz)


def fetch(db: Connected, query: Any, params: Any = None, *, version: int | None = None,
          raw: bool = False) -> Result:
    """A query's rows, rows first; ``raw``: with $1-style parameters."""
    with translated(), (psycopg.RawCursor(db.conn) if raw else db.conn.cursor()) as cur:
        cur.execute(query, params)
        rows, described = cur.fetchall(), cur.description or []
    return Result([d.name for d in described], rows, [d.type_code for d in described], version,
                  db.conn.info.timezone)


def frame(db: Connected, query: Any, params: Any = None, *, raw: bool = False) -> pd.DataFrame:
    """A query's rows as a frame; ``raw``: SQL rowver generated, with $1-style parameters
    (a % in a quoted name is then no placeholder)."""
    def fetch(fast: bool) -> pd.DataFrame:
        with (psycopg.RawCursor(db.conn) if raw else db.conn.cursor()) as cur:
            if fast:
                _frames.fast_loaders(cur)
            cur.execute(query, params)
            rows, described = cur.fetchall(), cur.description or []
        return _frames.to_frame(rows, [d.name for d in described], [d.type_code for d in described],
                                tz=db.conn.info.timezone)

    with translated():
        try:
            return fetch(fast=True)
        except (psycopg.DataError, _frames.NotISO) as exc:  # (the client's loading failed: nothing changed)
            if isinstance(exc, psycopg.DataError) and not _frames.is_infinite_value(exc):
                raise
            return fetch(fast=False)


def _plain_frame(rows: Rows, described: Described) -> pd.DataFrame:
    return _frames.to_frame(rows, [d.name for d in described], [d.type_code for d in described])


def chunks(db: Connected, query: Any, chunksize: int,
           to_frame: Callable[[Rows, Described], pd.DataFrame] = _plain_frame) -> Iterator[pd.DataFrame]:
    """A query's result in frames of at most ``chunksize`` rows, through a server-side cursor
    (so memory stays bounded), in one transaction (so every chunk reads the same snapshot)."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise InvalidInputError(f"chunksize must be a positive whole number, not {chunksize!r}")
    with translated(), db.conn.transaction(), db.conn.cursor(name="rowver_chunks") as cur:
        db.conn.execute("set transaction read only")  # (a diff's where is the caller's SQL)
        cur.execute(query)
        while rows := cur.fetchmany(chunksize):
            yield to_frame(rows, cur.description or [])


def as_of_query(db: Connected, table: str, ref: str | int) -> sql.Composed:
    """The query that reads ``table`` as of a ref, ordered by key (from T__as_of: it may run in
    any snapshot taken after the ref was resolved)."""
    version = _refs.resolve_for(db.conn, table, ref)  # its own statement: the read sees every version up to it
    return _read_query(db, table, version, None, None, None, None, snapshot=False).sql


# The operators a filter (column, operator, value) may use; the value is always a bound
# parameter, read by the server into the column's own type.
OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TEXT_OPERATORS = {"contains": "pg_catalog.strpos(pg_catalog.lower({}::pg_catalog.text), pg_catalog.lower({}))"
                              " operator(pg_catalog.>) 0"}
NULL_OPERATORS = {"is null": "{} is null", "is not null": "{} is not null"}
FILTER_OPERATORS = [*OPERATORS, *TEXT_OPERATORS, *NULL_OPERATORS]


@dataclass(frozen=True)
class Query:
    """A read's SELECT, its bound parameters ($1-style: a % in a quoted name or in a caller's
    condition is then no placeholder) and the version it reads."""

    sql: sql.Composed
    params: list[Any]
    version: int


def _check_read(where: str | None, limit: int | None) -> None:
    if where is not None and (";" in where or not where.strip()):
        raise InvalidInputError("where takes one SQL condition, without ';'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(f"limit must be a whole number of rows, not {limit!r}")


def _read_query(db: Connected, table: str, version: int, columns: list[str] | None, where: str | None,
                order_by: list[str] | None, limit: int | None, *, snapshot: bool = True,
                filters: Sequence[tuple[str, str, Any]] = (), after: Sequence[Any] | None = None) -> Query:
    """The SELECT behind read and stream. With ``snapshot``, it runs in the repeatable-read
    transaction of _read_only, begun after ``version`` was resolved, and may then read the
    current table itself (rowver.read_source_sql); else T__as_of. (Callers check where and limit.)"""
    source_of = "rowver.read_source_sql" if snapshot else "rowver.as_of_sql"
    source, keys = _sql.one(
        db.conn, sql.SQL("select {}(%s::regclass, %s), (rowver.registered(%s::regclass)).key_columns").format(
            sql.SQL(source_of)), (table, version, table))
    # source is T__as_of(v) or a select from T, quoted by the server with format('%I')
    source_sql = sql.SQL(source)
    if columns or order_by or filters:
        described = _sql.execute(db.conn, sql.SQL("select * from {} limit 0").format(source_sql)).description
        known = [d.name for d in described or []]
        for name in [*(columns or ()), *(order_by or ()), *(f[0] for f in filters)]:
            if name not in known:
                raise InvalidInputError(f"{table} has no column {name!r}; its columns are {', '.join(known)}")
    order = order_by or keys
    conditions, params = _conditions(filters, order, after)
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)) if columns else sql.SQL("*"), source_sql)
    if where is not None:
        # the caller's own SQL, on its own lines so that a trailing -- comment ends there
        conditions.append(sql.SQL("(\n{}\n)").format(sql.SQL(where)))
    if conditions:
        query += sql.SQL(" where ") + sql.SQL(" and ").join(conditions)
    query += sql.SQL(" order by {}").format(sql.SQL(", ").join(map(sql.Identifier, order)))
    if limit is not None:
        query += sql.SQL(" limit {}").format(sql.Literal(limit))
    return Query(query, params, version)


def _conditions(filters: Sequence[tuple[str, str, Any]], order: list[str],
                after: Sequence[Any] | None) -> tuple[list[sql.Composable], list[Any]]:
    """Filters (column, operator, value) and the keyset bound (rows after ``after`` in the
    read's order) as conditions on $n parameters."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []

    def param(value: Any) -> sql.Composable:
        params.append(value)
        return sql.SQL(f"${len(params)}")

    for column, op, value in filters:
        name = sql.Identifier(column)
        if op in OPERATORS:
            conditions.append(sql.SQL("{} {} {}").format(name, sql.SQL(OPERATORS[op]), param(value)))
        elif op in TEXT_OPERATORS:
            conditions.append(sql.SQL(TEXT_OPERATORS[op]).format(name, param(str(value))))
        elif op in NULL_OPERATORS:
            conditions.append(sql.SQL(NULL_OPERATORS[op]).format(name))
        else:
            raise InvalidInputError(f"unknown filter operator {op!r}; use one of {', '.join(FILTER_OPERATORS)}")
    if after is not None:
        if len(after) != len(order):
            raise InvalidInputError(f"after takes {len(order)} value(s), one per column of the order "
                                    f"({', '.join(order)}); got {len(after)}")
        conditions.append(sql.SQL("({}) > ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, order)), sql.SQL(", ").join(param(v) for v in after)))
    return conditions, params


@contextlib.contextmanager
def _read_only(db: Connected, where: str | None, filters: Sequence[tuple[str, str, Any]] = ()) -> Iterator[None]:
    """A READ ONLY transaction; an error the caller's ``where`` or a filter's value caused says so."""
    try:
        with translated(), db.conn.transaction():
            # one snapshot for choosing what to read (rowver.read_source_sql) and reading it
            db.conn.execute("set transaction isolation level repeatable read, read only")
            # no JIT: reads are per-key lookups and plain scans whose cost the planner overrates
            # (as-of functions, a diff's lateral joins), so it compiled for ~1 s a diff of 100,000
            # rows that ran slower compiled (7.2-7.6 s against 4.7-5.7 s, PostgreSQL 15)
            db.conn.execute("set local jit = off")
            yield
    except RowverError as exc:
        state = (exc.sqlstate or "")[:2]
        if where is not None and state in ("42", "22", "25"):
            raise type(exc)(f"{exc} (in where {where!r})", sqlstate=exc.sqlstate) from exc
        if filters and state == "22":
            named = "; ".join(f"{c} {op} {v!r}" for c, op, v in filters)
            raise type(exc)(f"{exc} (in filter {named})", sqlstate=exc.sqlstate) from exc
        raise


def read(db: Connected, table: str, ref: str | int = "head", *, columns: list[str] | None = None,
         where: str | None = None, order_by: list[str] | None = None, limit: int | None = None,
         filters: Sequence[tuple[str, str, Any]] = (), after: Sequence[Any] | None = None) -> Result:
    """Rows of ``table`` as of a ref (ordered by key unless ``order_by``): one SELECT in a READ
    ONLY transaction. ``where`` is one SQL condition of the caller's, run with their privileges;
    ``filters`` are (column, operator, value) with the value bound; ``after`` the order's values
    of the last row of the previous page."""
    _check_read(where, limit)
    version = _refs.resolve_for(db.conn, table, ref)  # its own statement: the read sees every version up to it
    with _read_only(db, where, filters):
        query = _read_query(db, table, version, columns, where, order_by, limit, filters=filters, after=after)
        return fetch(db, query.sql, query.params, version=query.version, raw=True)


@dataclass(frozen=True)
class Stream:
    """A read in progress: column names, the version read (None for the change feed), and its rows
    in batches."""

    columns: list[str]
    version: int | None
    batches: Iterator[Rows]
    type_oids: list[int] = field(default_factory=list, repr=False)

    def __iter__(self) -> Iterator[Rows]:
        return self.batches


@contextlib.contextmanager
def stream(db: Connected, table: str, ref: str | int = "head", *, columns: list[str] | None = None,
           where: str | None = None, order_by: list[str] | None = None, limit: int | None = None,
           batch: int = 10_000, filters: Sequence[tuple[str, str, Any]] = (),
           after: Sequence[Any] | None = None) -> Iterator[Stream]:
    """As ``read``, through a server-side cursor: batches of at most ``batch`` rows, so memory
    stays flat however large the table. The transaction stays open while the block runs."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(f"batch must be a positive whole number, not {batch!r}")
    _check_read(where, limit)
    version = _refs.resolve_for(db.conn, table, ref)  # its own statement: the read sees every version up to it
    with _read_only(db, where, filters):
        query = _read_query(db, table, version, columns, where, order_by, limit, filters=filters, after=after)
        with _streamed(db, query.sql, query.params, version=query.version, batch=batch, raw=True) as found:
            yield found


@contextlib.contextmanager
def _streamed(db: Connected, query: Any, params: Any = None, *, version: int | None, batch: int = 10_000,
              shape: Callable[[Described, Rows], tuple[list[str], Rows]] | None = None,
              raw: bool = False) -> Iterator[Stream]:
    """A query's rows in batches from a server-side cursor (callers hold a transaction open);
    ``shape`` turns each batch (and the cursor's description) into the rows to yield; ``raw``:
    with $1-style parameters."""
    cursor = psycopg.RawServerCursor(db.conn, "rowver_stream") if raw else db.conn.cursor(name="rowver_stream")
    with translated(), cursor as cur:
        cur.execute(query, params)
        described = cur.description or []
        batches = iter(lambda: cur.fetchmany(batch), [])
        if shape is None:
            yield Stream([d.name for d in described], version, batches, [d.type_code for d in described])
        else:
            yield Stream(shape(described, [])[0], version, (shape(described, rows)[1] for rows in batches))


@dataclass(frozen=True)
class Copied:
    """A read as CSV text from the server's COPY: its lines in blocks (the header first, then a
    row a line, bytes in ``encoding``) and the version read."""

    version: int
    encoding: str
    blocks: Iterator[tuple[int, bytearray]]  # (how many lines, and their bytes)


@contextlib.contextmanager
def stream_csv(db: Connected, table: str, ref: str | int = "head", *, columns: list[str] | None = None,
               where: str | None = None, order_by: list[str] | None = None,
               limit: int | None = None) -> Iterator[Copied | Stream]:
    """As ``stream``, for CSV: the server encodes every value as rowver/_output.py's to_csv
    would (sql/reads/csv_select.sql) and COPY prints the lines, several times faster than
    encoding them in Python; a Stream instead when a column's type is one only Python encodes."""
    _check_read(where, limit)
    version = _refs.resolve_for(db.conn, table, ref)  # its own statement: the read sees every version up to it
    with _read_only(db, where):
        query = _read_query(db, table, version, columns, where, order_by, limit)
        select = _csv_select(db, query.sql)
        if select is None:
            with _streamed(db, query.sql, version=version, raw=True) as found:
                yield found
            return
        with _copied(db, select, version) as copied:
            yield copied


@contextlib.contextmanager
def _copied(db: Connected, select: sql.Composable, version: int) -> Iterator[Copied]:
    blocks = _copy_out(db, sql.SQL("copy ({}) to stdout (format csv, header)").format(select))
    try:
        yield Copied(version, db.conn.info.encoding, blocks)
        for _ in blocks:  # (what the caller left: the connection is free only after the last)
            pass
    finally:
        blocks.close()  # (when the caller failed: psycopg cancels the COPY)


def _copy_out(db: Connected, statement: sql.Composed, lines: int = 1_000) -> Generator[tuple[int, bytearray], None, None]:
    """What COPY ... TO STDOUT sends, in blocks of ``lines`` lines, read from libpq in a loop of
    our own: psycopg's Copy iterator costs about 1 us of Python a line, four times this loop
    (0.25 s of CPU for 1,000,000 rows). It waits on the socket with select, so that Ctrl-C
    still interrupts a COPY whose first line is slow to come."""
    with translated(), db.conn.cursor() as cur, cur.copy(statement):
        pgconn = db.conn.pgconn
        get, block, n = pgconn.get_copy_data, bytearray(), 0
        while True:
            size, data = get(1)
            if size > 0:
                block += data  # (half the cost of a list of lines joined)
                n += 1
                if n == lines:
                    yield n, block
                    block, n = bytearray(), 0
            elif size == 0:  # (nothing arrived yet)
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            else:  # (-1: the end; -2: an error, which the result says)
                break
        results = []
        while (result := pgconn.get_result()) is not None:  # (all of them: then the connection is free)
            results.append(result)
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(result, encoding=db.conn.info.encoding)
        yield n, block


def _described(db: Connected, read: sql.Composable) -> Described:
    with translated(), psycopg.RawCursor(db.conn) as cur:
        return list(cur.execute(sql.SQL("select * from ({}) rv_q limit 0").format(read)).description or [])


def _encoders(db: Connected, names: list[str], type_oids: list[int]) -> list[tuple[str, str]] | None:
    """For each column (read from rv_q by name, of a type), the SQL of its CSV text and of its
    JSON text (sql/reads/csv_select.sql); None when a type is one only Python encodes."""
    with translated():
        found = db.conn.execute(_sql.query("reads/csv_select.sql"), {"names": names, "types": type_oids}).fetchall()
    if not found or any(csv is None for csv, _ in found):
        return None
    return [(csv, text) for csv, text in found]


def _csv_select(db: Connected, read: sql.Composable) -> sql.Composed | None:
    """The read as a SELECT of CSV texts, one per column (None: a type only Python encodes)."""
    described = _described(db, read)
    names = [d.name for d in described]
    encoders = _encoders(db, names, [d.type_code for d in described])
    if encoders is None:
        return None
    # each expression is built by the server, its names quoted with format('%I')
    return sql.SQL("select {} from ({}) rv_q").format(sql.SQL(", ").join(
        sql.SQL("{} as {}").format(sql.SQL(csv), sql.Identifier(name)) for (csv, _), name in zip(encoders, names)), read)


def count(db: Connected, table: str, ref: str | int = "head", *, where: str | None = None,
          filters: Sequence[tuple[str, str, Any]] = ()) -> int:
    """How many rows ``read`` would return without a limit."""
    _check_read(where, None)
    version = _refs.resolve_for(db.conn, table, ref)  # its own statement: the read sees every version up to it
    with _read_only(db, where, filters):
        query = _read_query(db, table, version, None, where, None, None, filters=filters)
        return int(fetch(db, sql.SQL("select count(*) from ({}) q").format(query.sql), query.params, raw=True).rows[0][0])


def key_object(db: Connected, table: str, key: Any) -> dict[str, Any]:
    """A key as {column: value}: from a dict, a tuple (in key order), or a single value."""
    columns = _sql.value(db.conn, "select (rowver.registered(%s::regclass)).key_columns", (table,))
    if isinstance(key, Mapping):
        if sorted(key) != sorted(columns):
            raise BadKeyError(f"{table} is keyed by ({', '.join(columns)}); got ({', '.join(key)})")
        return dict(key)
    values = tuple(key) if isinstance(key, (tuple, list)) else (key,)
    if len(values) != len(columns):
        raise BadKeyError(f"{table} is keyed by ({', '.join(columns)}); got {len(values)} value(s)")
    return dict(zip(columns, values))


def history(db: Connected, table: str, key: Any) -> pd.DataFrame:
    """Every version of one row, oldest first, with its changeset's time, author and message."""
    with _read_only(db, None):
        query, params = _history_query(db, table, key)
        return frame(db, query, params, raw=True)


def history_rows(db: Connected, table: str, key: Any) -> Result:
    """As ``history``, rows first."""
    with _read_only(db, None):
        query, params = _history_query(db, table, key)
        return fetch(db, query, params, raw=True)


def _history_query(db: Connected, table: str, key: Any) -> tuple[str, list[str]]:
    where = key_object(db, table, key)
    try:  # the key travels as JSON, read into the key columns' own types by the server
        key_json = json.dumps(where, default=str, allow_nan=False)  # dates, decimals, uuids: as text
    except ValueError:
        raise InvalidInputError(f"a key of {table} cannot be NaN or infinite: {where!r}") from None
    with translated():  # (one round trip: the key checked, then the query made)
        query = _sql.value(db.conn, "select rowver.history_sql(%s::regclass)"
                           " from rowver.check_key(%s::regclass, (rowver.registered(%s::regclass)).key_columns, %s::jsonb)",
                           (table, table, table, key_json))
    # built by rowver.history_sql: names quoted, operators and functions qualified
    return query, [key_json]


def diff_query(db: Connected, table: str, ref_a: str | int | None, ref_b: str | int | None, *,
               columns: list[str] | None = None, where: str | None = None,
               staged: str | None = None) -> tuple[sql.Composed, list[str], tuple[int, int]]:
    """The query for the rows added, removed and changed between two refs, the key, and the
    two versions the refs resolved to; with ``columns``, only the key and those columns, and
    only rows where one of them differs; with ``where``, only rows whose old or new state
    meets that condition. ``staged``: instead of two refs, what publishing that stage would do,
    from the table as of the stage's base version (both versions given are that one)."""
    _check_read(where, None)
    keys = _sql.value(db.conn, "select (rowver.registered(%s::regclass)).key_columns", (table,))
    if staged is not None:
        if ref_a is not None or ref_b is not None:
            raise InvalidInputError("a diff is between two refs, or of a stage (staged=), not both")
        text, base = _sql.one(db.conn, "select rowver.staged_diff_sql(%s::regclass, %s),"
                                       " (select s.base from rowver.staged s where s.name = %s)",
                              (table, staged, staged))
        a = b = int(base)
    else:
        if ref_a is None:
            raise InvalidInputError("a diff needs the ref to compare from (or staged='name')")
        # (their own statements, as above)
        a, b = _refs.resolve_for(db.conn, table, ref_a), _refs.resolve_for(db.conn, table, "head" if ref_b is None else ref_b)
        text = _sql.value(db.conn, "select rowver.diff_sql(%s::regclass, %s, %s)", (table, a, b))
    query = sql.Composed([sql.SQL(text)])  # built by rowver.diff_sql with format('%I')
    if columns or where is not None:
        query = _narrowed(db, table, query, len(keys), columns, where)
    return query, keys, (a, b)


def _narrowed(db: Connected, table: str, diff: sql.Composed, n: int, columns: list[str] | None,
              where: str | None) -> sql.Composed:
    """A diff (op, the n key columns, changed, the old row, the new row) cut to the key and
    ``columns``, and to rows whose old or new state meets ``where``. Its columns are renamed by
    position (old and new share names), then given their names back."""
    names = [d.name for d in _sql.execute(db.conn, sql.SQL("select * from ({}) rv_q limit 0").format(diff)).description or []]
    half = (len(names) - n - 2) // 2
    row = names[n + 2:n + 2 + half]
    for column in columns or ():
        if column not in row:
            raise InvalidInputError(f"{table} has no column {column!r}; its columns are {', '.join(row)}")
    keep = [i for i, c in enumerate(row) if not columns or c in columns or c in names[1:n + 1]]
    at = [sql.Identifier(f"rv_c{i}") for i in range(len(names))]
    old, new = at[n + 2:n + 2 + half], at[n + 2 + half:]
    chosen = sql.Literal([row[i] for i in keep])
    changed = sql.SQL("array(select c from unnest({}) c where c = any({}::text[]))").format(at[n + 1], chosen) \
        if columns else at[n + 1]
    select = [sql.SQL("{} as {}").format(at[i], sql.Identifier(names[i])) for i in range(n + 1)]
    select += [sql.SQL("{} as changed").format(changed)]
    select += [sql.SQL("{} as {}").format(side[i], sql.Identifier(row[i])) for side in (old, new) for i in keep]
    query = sql.SQL("select {} from ({}) as rv_d({})").format(
        sql.SQL(", ").join(select), diff, sql.SQL(", ").join(at))
    conditions = []
    if columns:
        conditions.append(sql.SQL("({} <> 'changed' or {} && {}::text[])").format(at[0], at[n + 1], chosen))
    if where is not None:
        # the caller's condition, on each side's row under the table's own column names
        states = [sql.SQL("exists (select from (select {}) as rv_row where (\n{}\n))").format(
            sql.SQL(", ").join(sql.SQL("{} as {}").format(side[i], sql.Identifier(c)) for i, c in enumerate(row)),
            sql.SQL(where)) for side in (old, new)]
        conditions.append(sql.SQL("({})").format(sql.SQL(" or ").join(states)))
    if conditions:
        query += sql.SQL(" where ") + sql.SQL(" and ").join(conditions)
    return query


DIFF_COLUMNS = ["op", "key", "changed", "old", "new"]


def diff_records(keys: list[str]) -> Callable[[Described, Rows], tuple[list[str], Rows]]:
    """Rows of rowver.diff_sql as (op, key, changed, old, new), the shape SQL's rowver.diff has:
    key, old and new as dicts in the table's own types (old None for an added row, new None for a
    removed one)."""
    n = len(keys)

    def shape(described: Described, rows: Rows) -> tuple[list[str], Rows]:
        columns = described[n + 2:]
        half = len(columns) // 2
        names = [d.name for d in columns[:half]]
        return DIFF_COLUMNS, [(r[0], dict(zip(keys, r[1:n + 1])), r[n + 1],
                               None if r[0] == "added" else dict(zip(names, r[n + 2:n + 2 + half])),
                               None if r[0] == "removed" else dict(zip(names, r[n + 2 + half:])))
                              for r in rows]
    return shape


@contextlib.contextmanager
def diff_stream(db: Connected, table: str, ref_a: str | int | None, ref_b: str | int | None, *, batch: int = 10_000,
                columns: list[str] | None = None, where: str | None = None,
                staged: str | None = None) -> Iterator[tuple[tuple[int, int], Stream]]:
    """The diff's records (see diff_records) in batches from a server-side cursor, with the two
    versions read; memory stays flat however many rows changed."""
    query, keys, versions = diff_query(db, table, ref_a, ref_b, columns=columns, where=where, staged=staged)
    with _read_only(db, where), \
            _streamed(db, query, version=versions[1], batch=batch, shape=diff_records(keys)) as found:
        yield versions, found


@contextlib.contextmanager
def diff_stream_csv(db: Connected, table: str, ref_a: str | int | None, ref_b: str | int | None, *,
                    columns: list[str] | None = None, where: str | None = None, staged: str | None = None,
                    limit: int | None = None) -> Iterator[tuple[tuple[int, int], Copied | Stream]]:
    """As ``diff_stream``, for CSV (at most ``limit`` rows): op, key, changed, old and new, encoded
    by the server and printed by COPY as rowver/_output.py's to_csv would print diff_records' rows;
    a Stream of those records instead when a column's type is one only Python encodes."""
    query, keys, versions = diff_query(db, table, ref_a, ref_b, columns=columns, where=where, staged=staged)
    with _read_only(db, where):
        select = _diff_csv_select(db, query, keys, limit)
        if select is None:
            with _streamed(db, query, version=versions[1], shape=diff_records(keys)) as found:
                yield versions, found
            return
        with _copied(db, select, versions[1]) as copied:
            yield versions, copied


def _diff_csv_select(db: Connected, diff: sql.Composed, keys: list[str], limit: int | None) -> sql.Composed | None:
    """A diff's rows (op, the key columns, changed, the old row, the new row) as the CSV texts of
    op, key, changed, old and new (None: a type only Python encodes). Its columns are read by
    position (old and new share names)."""
    described = _described(db, diff)
    n, at = len(keys), [f"rv_c{i}" for i in range(len(described))]
    encoders = _encoders(db, at, [d.type_code for d in described])
    if encoders is None:
        return None
    half = (len(described) - n - 2) // 2
    names = [d.name for d in described[n + 2:n + 2 + half]]
    texts = [sql.SQL(text) for _, text in encoders]  # (built by the server, names quoted with format('%I'))
    op = sql.Identifier("rv_q", at[0])
    query = sql.SQL("select {op} as op, {key} as key, {changed} as changed,"
                    " case when {op} = 'added' then null else {old} end as old,"
                    " case when {op} = 'removed' then null else {new} end as new"
                    " from ({diff}) as rv_q({at})").format(
        op=op, key=_json_object(keys, texts[1:n + 1]), changed=sql.SQL(encoders[n + 1][0]),
        old=_json_object(names, texts[n + 2:n + 2 + half]), new=_json_object(names, texts[n + 2 + half:]),
        diff=diff, at=sql.SQL(", ").join(map(sql.Identifier, at)))
    if limit is not None:
        query += sql.SQL(" limit {}").format(sql.Literal(limit))
    return query


def _json_object(names: Sequence[str], values: Sequence[sql.Composable]) -> sql.Composable:
    """SQL of the text {"name": value, ...}, spaced as rowver/_output.py's json_value writes it."""
    parts: list[sql.Composable] = []
    for i, (name, value) in enumerate(zip(names, values)):
        parts += [sql.Literal(("{" if i == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": "), value]
    return sql.SQL("({})").format(sql.SQL(" || ").join([*parts, sql.Literal("}")])) if parts else sql.Literal("{}")


def diff_counts(db: Connected, table: str, a: int | None, b: int | None, *, columns: list[str] | None = None,
                where: str | None = None, staged: str | None = None) -> dict[str, int]:
    """How many rows were added, removed and changed between versions a and b, or by publishing
    the stage ``staged`` (those that ``columns`` and ``where`` keep, when given)."""
    query = diff_query(db, table, a, b, columns=columns, where=where, staged=staged)[0]
    with _read_only(db, where):
        found: dict[str, int] = dict(db.conn.execute(
            sql.SQL("select op, count(*) from ({}) d group by op").format(query)).fetchall())
    return {op: int(found.get(op, 0)) for op in ("added", "removed", "changed")}


def diff_frame(keys: list[str]) -> Callable[[Rows, Described], pd.DataFrame]:
    """Rows of rowver.diff_sql (op, the key columns, changed, the old columns, the new
    columns) as a frame, in the table's own types: ``op``; ``key`` ({column: value});
    ``changed`` (the names of the columns whose values differ); then ``old_<column>`` for
    every column but rv_version as of the first ref (missing for an added row) and
    ``new_<column>`` as of the second (missing for a removed one). Every table column is
    prefixed, so no two names can collide."""
    n = len(keys)

    def to_frame(rows: Rows, described: Described) -> pd.DataFrame:
        columns = described[n + 2:]
        half = len(columns) // 2
        names = ["op", "key", "changed", *(f"old_{d.name}" for d in columns[:half]),
                 *(f"new_{d.name}" for d in columns[half:])]
        records = [(r[0], dict(zip(keys, r[1:n + 1])), *r[n + 1:]) for r in rows]
        return _frames.to_frame(records, names, [0, 0, 0, *(d.type_code for d in columns)])
    return to_frame


def diff(db: Connected, table: str, ref_a: str | int | None, ref_b: str | int | None, *,
         columns: list[str] | None = None, where: str | None = None, staged: str | None = None,
         progress: Progress | None = None) -> pd.DataFrame:
    """Rows added, removed and changed between two refs, or by publishing a stage, ordered by
    key (see diff_frame); ``frame.attrs["versions"]`` holds the two versions that were read.
    ``progress``: told the rows read as they come (see Progress)."""
    query, keys, versions = diff_query(db, table, ref_a, ref_b, columns=columns, where=where, staged=staged)
    with _read_only(db, where):
        if progress is None:
            cur = db.conn.execute(query)
            rows, described = cur.fetchall(), cur.description or []
        else:
            rows, described = _read_counted(db, query, progress)
    frame = diff_frame(keys)(rows, described)
    frame.attrs["versions"] = versions
    return frame


# told (rows read so far, None) every PROGRESS_BATCH rows as a long read comes from the server,
# then (rows, rows) when it ends; the same callback the write layer
# and export take, which the CLI draws as a bar (rowver._output.counting).
Progress = Callable[[int, int | None], Any]
PROGRESS_BATCH = 10_000


def _read_counted(db: Connected, query: Any, progress: Progress) -> tuple[Rows, Described]:
    """Every row of ``query``, streamed as the server sends them (the query runs as a plain one,
    parallel workers and all: a server-side cursor may not use them, 2.2 -> 3.0 s for a
    100,000-row diff), each PROGRESS_BATCH told to ``progress``."""
    rows: Rows = []
    chunk = PROGRESS_BATCH if psycopg.pq.version() >= 170000 else 1  # (chunks of rows: libpq 17 on)
    with db.conn.cursor() as cur:
        for row in cur.stream(query, size=chunk):
            rows.append(row)
            if len(rows) % PROGRESS_BATCH == 0:
                progress(len(rows), None)
        described = cur.description or []
    progress(len(rows), len(rows))
    return rows, described


def _changes_query(db: Connected, table: str, since: str | int, until: str | int, columns: list[str] | None = None,
                   where: str | None = None) -> tuple[sql.Composed, tuple[Any, ...]]:
    _check_read(where, None)
    name, every, keys = _sql.one(
        db.conn, "select rowver.qualified((rowver.registered(%s::regclass)).relid),"
                 " array(select a.attname from pg_catalog.pg_attribute a"
                 " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped"
                 " and a.attname <> 'rv_version' order by a.attnum),"
                 " (rowver.registered(%s::regclass)).key_columns", (table, table, table))
    for column in columns or ():
        if column not in every:
            raise InvalidInputError(f"{table} has no column {column!r}; its columns are {', '.join(every)}")
    # the key always (a delete is its key alone), then the columns asked for, in the table's order
    shown = every if not columns else [c for c in every if c in keys or c in columns]
    # name is schema-qualified from the catalog and quoted by the server (format('%I.%I')), never
    # regclass text, which a temporary table of the same name could capture; the row is read into
    # T's own types
    query = sql.SQL("select c.rv_version, c.op, {} from rowver.changes(%s::regclass, %s, %s) c,"
                    " jsonb_populate_record(null::{}, coalesce(c.row, c.key)) r").format(
        sql.SQL(", ").join(sql.Identifier("r", column) for column in every), sql.SQL(name))
    if where is not None or shown != every:
        # the caller's condition sees the version, op and every column of the row after the change
        # (its own lines, so that a trailing -- comment ends there; its % signs are no placeholders)
        query = sql.SQL("select rv_version, op, {} from ({}) change").format(
            sql.SQL(", ").join(map(sql.Identifier, shown)), query)
        if where is not None:
            query += sql.SQL(" where (\n{}\n)").format(sql.SQL(where.replace("%", "%%")))
    return query, (table, str(since), str(until))


def changes(db: Connected, table: str, since: str | int, until: str | int, *, columns: list[str] | None = None,
            where: str | None = None) -> Result:
    """Every row change after ``since`` up to ``until`` (at most head), in version order: the
    version, op, and the row in the table's own columns and types (a delete: its key alone);
    only the key and ``columns``, and only changes whose row meets ``where`` (one SQL condition,
    run read-only with the caller's privileges), when given."""
    query, params = _changes_query(db, table, since, until, columns, where)
    if where is None:
        return fetch(db, query, params)  # (one statement: in any transaction the caller holds)
    with _read_only(db, where):
        return fetch(db, query, params)


@contextlib.contextmanager
def changes_stream(db: Connected, table: str, since: str | int, until: str | int, *,
                   columns: list[str] | None = None, where: str | None = None,
                   batch: int = 10_000) -> Iterator[Stream]:
    """The change feed in batches from a server-side cursor."""
    query, params = _changes_query(db, table, since, until, columns, where)
    with _read_only(db, where), _streamed(db, query, params, version=None, batch=batch) as found:
        yield found


def log(db: Connected, *, limit: int | str | None, table: str | None, author: str | None = None,
        grep: str | None = None, since: str | int | None = None, until: str | int | None = None) -> Result:
    """Changesets, newest first (see rowver.log for the filters); refs resolve first."""
    if limit is None:
        limit = 50
    if isinstance(limit, str) and limit.strip().lstrip("-").isdigit():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError(f"limit must be a whole number, not {limit!r}")
    lo = None if since is None else _refs.resolve(db.conn, since)
    hi = None if until is None else _refs.resolve(db.conn, until)
    return fetch(db, "select * from rowver.log(%s::integer, %s::regclass, %s, %s, %s, %s)",
                 (limit, table, author, grep, lo, hi))


def stages(db: Connected, table: str | None = None) -> Result:
    """Stages kept for a look, oldest first (only those of ``table``, when given)."""
    return fetch(db, "select s.name, v.relid::text as table, s.mode, s.base, s.inserted, s.updated, s.deleted,"
                     " s.unchanged, s.message, s.author, s.db_user, s.db_role, s.created_at"
                     " from rowver.staged s join rowver.versioned v on v.id = s.table_id"
                     " where %(t)s::regclass is null or v.relid = %(t)s::regclass order by s.created_at, s.name",
                 {"t": table})


def tags(db: Connected) -> Result:
    return fetch(db, "select name, version, protected, created_at, db_user from rowver.tag order by version, name")


def tag_log(db: Connected) -> Result:
    return fetch(db, "select at, name, action, old_version, new_version, protected, db_user, db_role"
                     " from rowver.tag_log order by at, name")


def status(db: Connected) -> Result:
    """Versioned tables: key, triggers, current and history rows, versions, definition."""
    return fetch(db, "select * from rowver.status()")


def in_flight(db: Connected) -> Result:
    """Open transactions holding versions (so holding head back), oldest first."""
    return fetch(db, "select * from rowver.in_flight()")


def check(db: Connected, table: str | None) -> Result:
    """Violations of rowver's invariants (DESIGN §7); no rows when all hold."""
    return fetch(db, "select * from rowver.check(%s::regclass)", (table,))
