"""A versioned table as of one version, as a Dask DataFrame read in parallel (``pip install
'rowver[dask]'``; importing ``rowver`` does not import Dask, importing ``rowver.dask`` does).

    import rowver.dask
    frame = rowver.dask.read_as_of(url, "orders", "train-2026-11", npartitions=8)

Where things run: ``read_as_of`` runs in the client. It resolves the ref once, to a version
number, checks the table, the ref and the columns (so bad input is one rowver error before any
partition runs), reads the frame's shape from a zero-row read, and asks the server where to cut
the table's current rows (``rowver.key_splits``: ranges of the first key column, from a sample).
Each partition then runs wherever the Dask scheduler puts it (a worker process, or a thread of
the local scheduler): it opens its own connection to ``url`` and reads ``T__as_of(v)`` for its key
range (``db.read`` with bound filters). Every partition reads the same version, and a read of a
version at or below head returns the same rows forever (DESIGN §3), so the frame is consistent
by construction while writers keep writing, however the partitions are spread out in time.

The key ranges are cut on the current rows, but a row of version v whose key is no longer there
(deleted since, or its key changed) still falls in exactly one range: the first is unbounded
below, the last above. A composite key is cut on its first column. A table whose first key
column has fewer distinct values than ``npartitions`` gets fewer partitions.

Column dtypes are fixed by the columns' types, not by the values a partition happens to hold
(one partition may hold NULLs where another holds none): integers are pandas' nullable
``Int64``, booleans ``boolean``, floats ``float64``, text pandas' default string dtype,
``timestamptz`` a zoned ``datetime64[us]`` (in the session's zone), ``timestamp`` a naive one;
other types are Python objects, as ``db.as_of`` gives them. Partitions have their own
``RangeIndex`` (Dask's divisions are unknown); sort by the key for the table's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _sql
from ._database import connect
from .errors import InvalidInputError

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

# type OID -> the dtype every partition gives a column of that type (anything else: object)
_INTEGERS = {20, 21, 23, 26}  # int8, int2, int4, oid
_FLOATS = {700, 701}  # float4, float8
_TEXTS = {25, 1043, 1042, 19}  # text, varchar, bpchar, name
_BOOL, _TIMESTAMP, _TIMESTAMPTZ = 16, 1114, 1184


@dataclass(frozen=True)
class Part:
    """One partition's read: keys from ``lo`` (inclusive) to ``hi`` (exclusive) of ``key``,
    None for unbounded; the values are text, read by the server as the key column's type."""

    key: str
    lo: str | None
    hi: str | None

    def filters(self) -> list[tuple[str, str, Any]]:
        return [*([(self.key, ">=", self.lo)] if self.lo is not None else []),
                *([(self.key, "<", self.hi)] if self.hi is not None else [])]


def read_as_of(url: str | None, table: str, ref: str | int = "head", *, npartitions: int = 4,
               columns: Sequence[str] | None = None) -> dd.DataFrame:
    """``table`` as of a ref as a Dask DataFrame of at most ``npartitions`` partitions, each
    reading one key range of the table as of the same version on its own connection to ``url``
    (None: ``ROWVER_URL``, else the embedded default; workers must reach that server). Only
    ``columns``, if given. A Dask frame holds no attributes: to know the version read, resolve
    the ref first (``v = db.resolve_for(table, ref)``) and pass ``v``."""
    import dask
    import dask.dataframe as dd

    if isinstance(npartitions, bool) or not isinstance(npartitions, int) or npartitions < 1:
        raise InvalidInputError(f"npartitions must be a positive whole number, not {npartitions!r}")
    wanted = list(columns) if columns is not None else None
    if wanted is not None and (not wanted or not all(isinstance(c, str) for c in wanted)):
        raise InvalidInputError(f"columns must name at least one column, as strings; got {columns!r}")
    if wanted is not None and len(set(wanted)) != len(wanted):
        raise InvalidInputError(f"columns names a column twice: {columns!r}")
    with connect(url) as db:
        version = db.resolve_for(table, ref)  # once: every partition reads this version
        shape = db.read(table, version, columns=wanted, limit=0)  # an unknown column fails here
        dtypes = _dtypes(shape.type_oids, shape.columns, shape.tz)
        meta = conform(shape.frame(), dtypes)
        key, splits = _sql.one(db.conn, "select * from rowver.key_splits(%s::regclass, %s)", (table, npartitions))
        target = db.url  # the URL resolved here, so workers need no ROWVER_URL of their own
    bounds: list[str | None] = [None, *splits, None]
    parts = [Part(key, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    # Dask would turn every object column into strings (dates, JSON, decimals too): text columns
    # already have pandas' string dtype, so its conversion is off for this frame. Dask passes
    # read_part the columns a computation needs (``columns``), so ``frame["x"].sum()`` reads x alone.
    with dask.config.set({"dataframe.convert-string": False}):
        frame: dd.DataFrame = dd.from_map(  # type: ignore[no-untyped-call]
            read_part, parts, url=target, table=table, version=version, columns=wanted, dtypes=dtypes,
            meta=meta, label=f"rowver-as-of-{version}", enforce_metadata=False)
    return frame


def read_part(part: Part, *, url: str, table: str, version: int, columns: list[str] | None,
              dtypes: dict[str, Any]) -> pd.DataFrame:
    """One partition: ``table`` as of ``version`` within ``part``'s key range, on a connection
    of its own (this runs on a Dask worker; it is module-level so that it pickles)."""
    with connect(url) as db:
        found = db.read(table, version, columns=columns, filters=part.filters())
    return conform(found.frame(), dtypes)


def _dtypes(type_oids: Sequence[int], columns: Sequence[str], tz: Any) -> dict[str, Any]:
    import pandas as pd

    text = pd.Series(["x"]).dtype  # pandas' default for strings (object before pandas 3)

    def dtype(oid: int) -> Any:
        if oid in _INTEGERS:
            return "Int64"
        if oid in _FLOATS:
            return "float64"
        if oid in _TEXTS:
            return text
        if oid == _BOOL:
            return "boolean"
        if oid == _TIMESTAMPTZ:
            return pd.DatetimeTZDtype("us", tz if tz is not None else "UTC")
        if oid == _TIMESTAMP:
            return "datetime64[us]"
        return object

    return {name: dtype(oid) for name, oid in zip(columns, type_oids)}


def conform(frame: pd.DataFrame, dtypes: dict[str, Any]) -> pd.DataFrame:
    """``frame`` (a read of the table) with the column dtypes ``read_as_of`` gives: to compare
    a ``db.as_of`` frame with a Dask one, conform it to ``dask_frame.dtypes.to_dict()``."""
    import pandas as pd

    out = frame.copy(deep=False)
    for name in out.columns:
        column, dtype = out[name], dtypes[name]
        if column.dtype == dtype:
            continue
        if isinstance(dtype, pd.DatetimeTZDtype):  # aware datetimes (and None) as one zoned column
            out[name] = pd.to_datetime(column, utc=True).dt.tz_convert(dtype.tz).astype(dtype)
        else:
            out[name] = column.astype(dtype)
    return out
