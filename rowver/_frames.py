"""Where a DataFrame (or an iterable of dicts) becomes rows for COPY, and back.

Frame-level mistakes (no rows' columns, a missing key column, duplicate keys) are caught
here, before anything is sent; value-level ones (a value the column's type cannot take)
are caught by COPY into the staging table, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from .errors import BadKeyError, InvalidInputError, shorten

if TYPE_CHECKING:
    import pandas as pd

def _is_frame(rows: object) -> bool:
    return type(rows).__name__ == "DataFrame" and hasattr(rows, "columns")


def to_records(rows: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(columns, row tuples) from a DataFrame or an iterable of dicts; missing values -> None."""
    if _is_frame(rows):
        columns = [str(c) for c in rows.columns]
        if len(set(columns)) != len(columns):
            raise InvalidInputError("the frame has duplicate column names")
        return columns, list(zip(*(_column_values(rows.iloc[:, i]) for i in range(len(columns)))))
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise InvalidInputError("rows must be a pandas DataFrame or an iterable of dicts")
    dicts = list(rows)
    names: dict[str, None] = {}  # the union of the dicts' keys, in first-seen order
    for i, row in enumerate(dicts):
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"row {i} is a {type(row).__name__}, not a dict")
        names.update((str(name), None) for name in row)
    return list(names), [tuple(plain(row.get(c)) for c in names) for row in dicts]


# values psycopg sends as they are; anything else goes through plain()
_PLAIN_TYPES = (str, int, float, bool, bytes, dict, list, Decimal, dt.date, dt.datetime, dt.time, dt.timedelta)


def _column_values(column: pd.Series) -> list[Any]:
    """A column as plain Python values, converted column-wise where the dtype allows it
    (numpy's tolist() runs in C); missing values (NaN, NaT, NA, None) become None."""
    kind = column.dtype.kind
    missing = column.isna().to_numpy()
    if kind in "iub" and not missing.any():
        return column.tolist()
    if kind == "M":
        values = list(column.dt.to_pydatetime())
    elif kind == "m":
        values = list(column.dt.to_pytimedelta())
    else:
        values = column.tolist()
    if missing.any():
        values = [None if m else v for v, m in zip(values, missing)]
    if kind == "O" and not all(v is None or type(v) in _PLAIN_TYPES for v in values):
        values = [plain(v) for v in values]
    return values


def plain(value: Any) -> Any:
    """A plain Python value for a pandas or numpy one; NaN, NaT and NA become None."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    kind = type(value).__module__
    if kind.startswith("pandas"):
        import pandas as pd

        if value is pd.NaT or value is pd.NA:
            return None
        if isinstance(value, pd.Timestamp):
            return value.to_pydatetime()
        if isinstance(value, pd.Timedelta):
            return value.to_pytimedelta()
    if kind == "numpy":
        if getattr(value, "ndim", 0) > 0:
            return [plain(v) for v in value.tolist()]
        return plain(value.item())
    return value


def check_rows(table: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]],
               keys: Sequence[str], known: Sequence[str]) -> None:
    """Raise InvalidInputError naming the column (and a sample row) for frame-level mistakes."""
    if not columns:
        raise InvalidInputError(f"no columns given for {table}")
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise InvalidInputError(f"{table} has no column {unknown[0]!r}")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise BadKeyError(f"rows for {table} lack key column {missing[0]!r}")
    positions = [columns.index(k) for k in keys]
    if len(positions) == 1:
        p = positions[0]
        key_values: list[Any] = [row[p] for row in records]
        nulls = [i for i, v in enumerate(key_values) if v is None][:1]
    else:
        key_values = [tuple(row[p] for p in positions) for row in records]
        nulls = [i for i, v in enumerate(key_values) if None in v][:1]
    if nulls:
        sample = shorten(repr(dict(zip(columns, records[nulls[0]]))))
        raise BadKeyError(f"a row for {table} has a NULL key: {sample}")
    try:
        distinct = len(set(key_values))
    except TypeError:
        raise BadKeyError(f"a key of {table} is not hashable: {shorten(repr(key_values[0]))}") from None
    if distinct != len(key_values):
        seen: set[Any] = set()
        for duplicate in key_values:
            if duplicate in seen:
                break
            seen.add(duplicate)
        shown = duplicate if isinstance(duplicate, tuple) else (duplicate,)
        raise BadKeyError(f"duplicate key in rows for {table}: {shorten(repr(dict(zip(keys, shown))))}")


def parquet_batches(path: str, size: int = 10_000) -> tuple[Iterator[list[tuple[Any, ...]]], list[str]]:
    """A Parquet file's rows, in batches of Python values, and its column names (pyarrow reads it,
    a batch at a time: memory stays flat however large the file)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("loading a Parquet file needs pyarrow: pip install 'rowver[export]'") from None
    try:
        found = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # (pyarrow's errors are both)
        raise InvalidInputError(f"cannot read {path} as Parquet: {exc}") from exc

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        for batch in found.iter_batches(batch_size=size):
            yield list(zip(*(column.to_pylist() for column in batch.columns)))
    return batches(), list(found.schema_arrow.names)


def adapt_json(columns: Sequence[str], json_columns: set[str],
               records: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Wrap dicts and lists bound for json/jsonb columns so psycopg sends them as JSON."""
    wrap = [c in json_columns for c in columns]
    if not any(wrap):
        yield from records
        return
    for row in records:
        yield tuple(Jsonb(v) if w and v is not None and not isinstance(v, str) else v
                    for v, w in zip(row, wrap))


# int2, int4, int8: integer columns that may hold NULL read as pandas' nullable Int64,
# not as floats
_INTEGER_OIDS = {21, 23, 20}
_TIMESTAMPTZ_OID = 1184
# columns without NULLs that go straight into numpy, with the dtype pandas would infer
_NUMPY = {20: "int64", 21: "int64", 23: "int64", 700: "float64", 701: "float64", 16: "bool"}
_TEXT_OIDS = {25, 1043, 19, 1042}  # text, varchar, name, bpchar
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


class NotISO(ValueError):
    """A timestamptz fetched as text that pandas cannot parse (infinity, a BC date, a
    DateStyle other than ISO): fetch it again as datetimes."""


def to_frame(rows: Sequence[tuple[Any, ...]], columns: Sequence[str],
             type_oids: Sequence[int] = (), tz: Any = dt.timezone.utc) -> pd.DataFrame:
    """A DataFrame from fetched rows, built column by column; integer columns stay integers
    when NULLs occur; timestamptz columns fetched as text (see fast_loaders) are parsed in
    zone ``tz``. Columns are handled by position, so a repeated name does no harm."""
    import pandas as pd

    values = list(zip(*rows)) if rows else [() for _ in columns]
    oids = list(type_oids) + [0] * (len(columns) - len(type_oids))
    frame = pd.DataFrame({i: _column(v, oid, tz) for i, (v, oid) in enumerate(zip(values, oids))},
                         index=pd.RangeIndex(len(rows)))
    frame.columns = list(columns)
    return frame


def _column(values: Sequence[Any], oid: int, tz: Any) -> Any:
    import pandas as pd

    if oid in _INTEGER_OIDS and None in values:
        # pandas would make them floats, which round above 2**53 (built from a mask: a few
        # times faster than pd.array's inference)
        import numpy as np

        data = np.array(values, dtype=object)
        missing = data == None  # noqa: E711 (element-wise)
        data[missing] = 0
        return pd.arrays.IntegerArray(data.astype(np.int64), missing)
    if oid == _TIMESTAMPTZ_OID and isinstance(next((v for v in values if v is not None), None), str):
        import numpy as np

        try:  # (pandas' parser runs in C, several times faster than making datetimes; given an array
            # and no cache, it skips the Series route's unique-and-map pass: 1.6 -> 0.6 ms for 5,000)
            return pd.to_datetime(np.array(values, dtype=object), format="ISO8601", utc=True,
                                  cache=False).tz_convert(tz)
        except (ValueError, OverflowError) as exc:
            raise NotISO(str(exc)) from None
    if oid == _TIMESTAMPTZ_OID and values and None not in values:
        return _timestamps(values)
    if values and oid in _NUMPY and None not in values:
        import numpy as np

        return np.fromiter(values, dtype=_NUMPY[oid], count=len(values))  # (no inference: several times faster)
    if oid in _TEXT_OIDS:
        import numpy as np

        return np.array(values, dtype=object)  # (strings stay objects, as pandas would keep them)
    return pd.Series(values, dtype=object if not values else None)


def _timestamps(values: Sequence[dt.datetime]) -> Any:
    """Aware datetimes as a datetime64 column in their own zone, through whole microseconds
    since the epoch (a few times faster than pandas' conversion of datetime objects)."""
    import numpy as np
    import pandas as pd

    micros = np.fromiter(((v - _EPOCH) // _MICROSECOND for v in values), dtype=np.int64, count=len(values))
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC").dt.tz_convert(values[0].tzinfo)


def register_loaders(conn: psycopg.Connection) -> None:
    """Read 'infinity' and '-infinity' timestamps and dates as Python's largest and smallest
    values instead of failing: a versioned table may hold them, and reading the past must not.
    Every other value goes to psycopg's own loader (C where installed), so reads keep its speed."""
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    def infinite(oid: int, high: Any, low: Any) -> type[Loader]:
        found = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert found is not None  # psycopg loads every date and time type
        fast: type[psycopg.abc.Loader] = found

        class Infinite(Loader):
            def __init__(self, oid: int, context: Any = None):
                super().__init__(oid, context)
                self._load = fast(oid, context).load

            def load(self, data: Any) -> Any:
                if data == b"infinity":
                    return high
                if data == b"-infinity":
                    return low
                return self._load(data)
        return Infinite

    utc = dt.timezone.utc
    for name, high, low in (("timestamptz", dt.datetime.max.replace(tzinfo=utc), dt.datetime.min.replace(tzinfo=utc)),
                            ("timestamp", dt.datetime.max, dt.datetime.min), ("date", dt.date.max, dt.date.min)):
        oid = psycopg.adapters.types[name].oid
        conn.adapters.register_loader(oid, infinite(oid, high, low))


def fast_loaders(cur: psycopg.Cursor[Any]) -> psycopg.Cursor[Any]:
    """``cur`` for a frame: timestamptz as text (to_frame parses it), timestamp and date with
    psycopg's own loaders (C where installed) in place of the infinity-aware ones. Several
    times faster; on infinity, an error (psycopg.DataError, or NotISO from to_frame): fetch
    again with the connection's loaders then."""
    from psycopg.pq import Format

    for name in ("timestamp", "date"):
        oid = psycopg.adapters.types[name].oid
        loader = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert loader is not None
        cur.adapters.register_loader(oid, loader)
    text = psycopg.adapters.get_loader(psycopg.adapters.types["text"].oid, Format.TEXT)
    assert text is not None
    cur.adapters.register_loader(_TIMESTAMPTZ_OID, text)
    return cur


def is_infinite_value(exc: psycopg.DataError) -> bool:
    """Whether a fast loader failed on an infinite date or time."""
    return "infinity" in str(exc)

