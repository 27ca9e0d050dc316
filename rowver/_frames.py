"""Where a DataFrame (or an iterable of dicts) becomes rows for COPY, and back.

Frame-level mistakes (no rows' columns, a missing key column, duplicate keys) are caught
here, before anything is sent; value-level ones (a value the column's type cannot take)
are caught by COPY into the staging table, before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from .errors import InvalidInputError

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
        records = [tuple(plain(v) for v in row) for row in rows.itertuples(index=False, name=None)]
        return columns, records
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise InvalidInputError("rows must be a pandas DataFrame or an iterable of dicts")
    dicts = list(rows)
    names: dict[str, None] = {}  # the union of the dicts' keys, in first-seen order
    for i, row in enumerate(dicts):
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"row {i} is a {type(row).__name__}, not a dict")
        names.update((str(name), None) for name in row)
    return list(names), [tuple(plain(row.get(c)) for c in names) for row in dicts]


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
        raise InvalidInputError(f"rows for {table} lack key column {missing[0]!r}")
    positions = [columns.index(k) for k in keys]
    seen: set[tuple[Any, ...]] = set()
    for row in records:
        key = tuple(row[p] for p in positions)
        if any(v is None for v in key):
            raise InvalidInputError(f"a row for {table} has a NULL key: {dict(zip(columns, row))}")
        try:
            duplicate = key in seen
        except TypeError:
            raise InvalidInputError(f"key of {table} is not hashable: {key!r}") from None
        if duplicate:
            raise InvalidInputError(f"duplicate key in rows for {table}: {dict(zip(keys, key))}")
        seen.add(key)


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


def to_frame(rows: Sequence[Sequence[Any]], columns: Sequence[str],
             type_oids: Sequence[int] = ()) -> pd.DataFrame:
    """A DataFrame from fetched rows; integer columns stay integers when NULLs occur."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    for name, oid in zip(columns, type_oids):
        if oid in _INTEGER_OIDS and frame[name].dtype != "int64":
            frame[name] = pd.array(frame[name].tolist(), dtype="Int64")
    return frame
