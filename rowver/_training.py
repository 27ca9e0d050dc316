"""Point-in-time training sets: each event row joined with each feature table's row as of the
version its time resolves to (``db.training_set``).

Everything is checked before anything is sent; then, in one transaction, the events are COPY'd
into a temporary table (``rowver.training_stage``) and one query (``rowver.training_sql``, in
``sql/35_training.sql``) resolves their times and makes one range join per feature table over
its current rows and history. Times resolve as timestamp refs do, by the server; versions and
refs are resolved by ``rowver.resolve`` before the read, as every read resolves its ref.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from . import _frames, _query, _sql
from ._sql import Connected
from .errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

# the keys of a training set's DataFrame.attrs
LINEAGE = "rowver_lineage"            # {table: [every version a feature row was read from, ascending]}
BEFORE_FIRST = "rowver_before_first"  # {table: events whose version precedes the table's first}


@dataclass(frozen=True)
class Feature:
    """One feature table of a training set, checked against the catalog."""

    name: str                # as the caller wrote it
    qualified: str           # schema-qualified, from the catalog
    first: int               # the table's first version
    on: tuple[str, ...]      # the event columns holding its key, in key order
    keys: tuple[str, ...]    # its key columns
    columns: tuple[str, ...]  # the columns read
    names: tuple[str, ...]   # what each is called in the result


def training_set(db: Connected, events: pd.DataFrame, features: Mapping[str, Any],
                 on: Mapping[str, Any], at: str) -> pd.DataFrame:
    """``events`` with each feature table's columns as of each row's ``at`` (see Database.training_set)."""
    if not is_frame(events):
        raise InvalidInputError(f"events must be a pandas DataFrame, not a {type(events).__name__}")
    if not isinstance(at, str) or at not in events.columns:
        raise InvalidInputError(f"events have no column {at!r} (at=); their columns are "
                                f"{', '.join(map(str, events.columns))}")
    if not isinstance(features, Mapping) or not features:
        raise InvalidInputError("features must map at least one table to its columns")
    if not isinstance(on, Mapping):
        raise InvalidInputError("on must map each feature table to the event column(s) holding its key")
    unknown = [t for t in on if t not in features]
    if unknown:
        raise InvalidInputError(f"on names {unknown[0]!r}, which is not among the feature tables")
    tables = [_feature(db, events, name, features[name], on.get(name)) for name in features]
    _check_names(events, tables)
    kind, times = _times(events[at], at)
    if kind != "time":
        times = _versions(db, kind, times)
    fetched = _read(db, events, tables, kind == "time", times)
    return _result(events, tables, fetched)


def is_frame(value: object) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


# -- checking the request --------------------------------------------------------------------

def _feature(db: Connected, events: pd.DataFrame, name: str, wanted: Any, on: Any) -> Feature:
    """One feature table: registered, its columns known, its key matched by event columns."""
    qualified, keys, first, known = _sql.one(
        db.conn, "select rowver.qualified(r.relid), r.key_columns, r.enabled_version,"
                 " array(select p.name from rowver.payload_columns(r.relid) p order by p.attnum)"
                 " from rowver.registered(%s::regclass) r", (name,))
    if isinstance(wanted, Mapping):
        columns, names = [str(c) for c in wanted], [str(n) for n in wanted.values()]
    elif isinstance(wanted, (str, bytes)) or not isinstance(wanted, Sequence) or not wanted:
        raise InvalidInputError(f"features[{name!r}] must be a list of columns (or a mapping of "
                                f"columns to the names they get), not {wanted!r}")
    else:
        columns = names = [str(c) for c in wanted]
    missing = [c for c in columns if c not in known]
    if missing:
        raise InvalidInputError(f"{qualified} has no column {missing[0]!r}; its columns are {', '.join(known)}")
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"features[{name!r}] names a column twice")
    if on is None:
        raise InvalidInputError(f"on has no entry for {name!r}: name the event column(s) holding its key "
                                f"({', '.join(keys)})")
    if isinstance(on, Mapping):
        if sorted(map(str, on)) != sorted(keys):
            raise InvalidInputError(f"on[{name!r}] maps ({', '.join(map(str, on))}); {qualified} is keyed by "
                                    f"({', '.join(keys)})")
        event_columns = [str(on[k]) for k in keys]
    else:
        event_columns = [on] if isinstance(on, str) else list(on)
        if len(event_columns) != len(keys):
            raise InvalidInputError(f"{qualified} is keyed by ({', '.join(keys)}); on[{name!r}] names "
                                    f"{len(event_columns)} event column(s)")
    absent = [c for c in event_columns if c not in events.columns]
    if absent:
        raise InvalidInputError(f"events have no column {absent[0]!r} (on[{name!r}])")
    return Feature(name, qualified, int(first), tuple(event_columns), tuple(keys), tuple(columns), tuple(names))


def _check_names(events: pd.DataFrame, tables: list[Feature]) -> None:
    """Every column of the result has one name: no feature column takes an event column's name
    or another feature's (``features={"t": {"col": "new_name"}}`` renames)."""
    taken = {str(c): "an event column" for c in events.columns}
    for f in tables:
        for column, name in zip(f.columns, f.names):
            if name in taken:
                raise InvalidInputError(f"{f.name}.{column} would be called {name!r}, as {taken[name]} is; "
                                        f"rename it: features={{{f.name!r}: {{{column!r}: 'another_name'}}}}")
            taken[name] = f"{f.name}.{column}"


def _times(column: pd.Series, at: str) -> tuple[str, list[Any]]:
    """What the ``at`` column holds: ("time", ISO-8601 texts), ("version", ints) or ("ref", texts).
    A missing time is an error (drop or fill such events first); so is any other type."""
    import numpy as np
    import pandas as pd

    missing = column.isna().to_numpy()
    if missing.any():
        label = column.index[int(missing.argmax())]
        raise InvalidInputError(f"event {label!r} has no {at} ({int(missing.sum())} event(s) have none); "
                                f"drop or fill them first")
    kind = column.dtype.kind
    if kind == "O":
        values = column.tolist()
        if all(isinstance(v, dt.datetime) for v in values):
            try:
                column = pd.to_datetime(column)
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(f"{at} mixes times with and without a time zone: {exc}") from None
            kind = column.dtype.kind
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "version", [int(v) for v in values]
        elif all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            return "ref", [str(v) for v in values]
    if kind == "M":
        # sent as text with every digit: the server reads it (rounding, and a time without a zone
        # in the session's zone) exactly as it reads a timestamp ref
        if getattr(column.dtype, "tz", None) is not None:
            utc = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            return "time", list(np.datetime_as_string(utc, unit="ns", timezone="UTC"))
        return "time", list(np.datetime_as_string(column.to_numpy(), unit="ns"))
    if kind in "iu":
        return "version", column.tolist()
    raise InvalidInputError(f"{at} must hold times (datetime64 or datetimes), versions (integers) or refs "
                            f"(strings), not {column.dtype}")


def _versions(db: Connected, kind: str, values: list[Any]) -> list[int]:
    """Versions (checked: none negative or above head) or refs (each distinct one resolved), by
    rowver.resolve, in one statement."""
    asked = ([min(values), max(values)] if values else []) if kind == "version" else sorted(set(values))
    found = _sql.rows(db.conn, "select u.r, rowver.resolve(u.r) from unnest(%s::text[]) u(r)",
                      ([str(v) for v in asked],))
    resolved: dict[str, int] = dict(found)
    return [int(v) for v in values] if kind == "version" else [int(resolved[v]) for v in values]


# -- reading ----------------------------------------------------------------------------------

def _read(db: Connected, events: pd.DataFrame, tables: list[Feature], by_time: bool,
          times: list[Any]) -> pd.DataFrame:
    """Stage the events and run the training set's query, in one transaction; its rows ordered
    as the events are."""
    import numpy as np

    spec, staged, key_values = [], [], []
    for f in tables:
        numbers = []
        for key, column in zip(f.keys, f.on):
            staged.append((f.qualified, key))
            key_values.append(_frames._column_values(events[column]))
            numbers.append(len(staged))
        spec.append({"table": f.qualified, "keys": numbers, "columns": list(f.columns)})
    rows = zip(range(len(events)), times, *key_values)
    stage = sql.Identifier("pg_temp", "rv_events")  # made by rowver.training_stage
    with _sql.transaction(db.conn):
        _sql.one(db.conn, "select rowver.training_stage(%s::regclass[], %s::name[], %s)",
                 ([t for t, _ in staged], [k for _, k in staged], by_time))
        columns = ["rv_row", "rv_time" if by_time else "rv_at", *(f"rv_k{i}" for i in range(1, len(staged) + 1))]
        copy = sql.SQL("copy {} ({}) from stdin").format(stage, sql.SQL(", ").join(map(sql.Identifier, columns)))
        with db.conn.cursor().copy(copy) as cp:
            for row in rows:
                cp.write_row(row)
        _sql.execute(db.conn, sql.SQL("analyze {}").format(stage))  # the planner's row counts: a temporary table has none
        query = _sql.value(db.conn, "select rowver.training_sql('pg_temp.rv_events', %s, %s::jsonb)",
                           (by_time, json.dumps(spec)))
        fetched = _query.frame(db, query, raw=True)  # built by rowver.training_sql with format('%I')
    if len(fetched) != len(events):
        raise AssertionError(f"training set read {len(fetched)} rows for {len(events)} events")
    return fetched.take(np.argsort(fetched["rv_row"].to_numpy(), kind="stable")).reset_index(drop=True)


def _result(events: pd.DataFrame, tables: list[Feature], fetched: pd.DataFrame) -> pd.DataFrame:
    """The events with the feature columns after theirs, their index kept, and the lineage and
    the events read before each table's first version in ``attrs``."""
    import pandas as pd

    parts = {}
    lineage: dict[str, list[int]] = {}
    before: dict[str, int] = {}
    at = pd.to_numeric(fetched["rv_at"]).astype("Int64")
    for n, f in enumerate(tables, start=1):
        for m, name in enumerate(f.names, start=1):
            parts[name] = fetched[f"rv_f_{n}_{m}"]
        read = pd.to_numeric(fetched[f"rv_read_{n}"]).dropna().unique()
        lineage[f.qualified] = sorted(int(v) for v in read)
        before[f.qualified] = int((at.isna() | (at < f.first)).sum())
    result = pd.concat([events.reset_index(drop=True), pd.DataFrame(parts)], axis=1)
    result.index = events.index
    result.attrs = {**events.attrs, LINEAGE: lineage, BEFORE_FIRST: before}
    return result


# -- lineage for the model store --------------------------------------------------------------

def data_version_of(value: Any) -> tuple[int, str]:
    """A training set (its frame, its attrs, or its lineage mapping) as the model store records
    it: the newest version any of its feature rows was read from, and the lineage as JSON."""
    lineage = value.attrs.get(LINEAGE) if is_frame(value) else value.get(LINEAGE, value)
    if not isinstance(lineage, Mapping) or not all(
            isinstance(vs, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in vs)
            for vs in lineage.values()):
        raise InvalidInputError("data_version takes a ref, or a training set (db.training_set's frame, its "
                                f"attrs, or attrs[{LINEAGE!r}]: tables mapped to the versions read)")
    versions = [v for vs in lineage.values() for v in vs]
    if not versions:
        raise InvalidInputError("the training set read no feature row, so it names no data version")
    return max(versions), json.dumps({"training_set": {str(t): list(vs) for t, vs in lineage.items()}},
                                     separators=(",", ":"))
