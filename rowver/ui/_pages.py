"""What each page of ``rowver ui`` shows, as plain data: the templates render it as HTML and
the JSON twin (``?format=json``) prints it as it is. Every read goes through the library
(refs, as-of, diffs, history, models), so the UI validates input exactly as the CLI does."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .. import _query, _refs, _sql
from ..errors import InvalidInputError
from . import _svg

if TYPE_CHECKING:
    from .._database import Database

PAGE_ROWS = 50       # rows per page of a table
DIFF_ROWS = 200      # rows of a diff shown (the counts cover every row)
DIFF_CHANGES = 20_000  # row changes between two refs above which a diff page asks first
LOG_ROWS = 20        # changesets on the home and table pages
SPARK_DAYS = 30      # days in a table's changes-per-day sparkline


class NotFound(Exception):
    """Nothing at this address (a changeset that does not exist): a 404 page."""


@dataclass
class Page:
    """A page's template, its data (also the JSON twin) and whether it is fixed forever: it
    names every version it shows by number, so a cache may keep it (Cache-Control immutable)."""

    template: str
    data: dict[str, Any]
    immutable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # for the template only (charts, geometry)


def _records(db: Database, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = _query.fetch(db, _sql.query("ui/" + name), params)
    return [dict(zip(result.columns, row)) for row in result.rows]


def _rows(result: _query.Result) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row)) for row in result.rows]


def link(path: str, **params: Any) -> str:
    """A page's URL: None leaves a parameter out, a list repeats it."""
    pairs = [(k, x) for k, v in params.items() if v is not None for x in (v if isinstance(v, list) else [v])]
    return path + ("?" + urlencode(pairs) if pairs else "")


def fixed(ref: str) -> bool:
    """A ref that names one version forever: a plain number (tags move, head moves)."""
    return ref.strip().isdigit()


# -- home -------------------------------------------------------------------------------------


def home(db: Database) -> Page:
    tables = _records(db, "tables.sql", {"days": SPARK_DAYS})
    for t in tables:
        t["key_columns"] = list(t["key_columns"])
    data = {
        "head": db.head(),
        "published_head": int(db.scalar("select head from rowver.head_mark")),
        "tables": tables,
        "changesets": _rows(_query.log(db, limit=LOG_ROWS, table=None)),
        "tags": _rows(_query.tags(db)),
        "stages": _rows(_query.stages(db)),
        "in_flight": _rows(_query.in_flight(db)),
    }
    sparks = {t["table_name"]: _svg.sparkline(t["changes_per_day"]) for t in tables}
    return Page("home.html", data, extra={"sparks": sparks, "days": SPARK_DAYS})


# -- a table as of a ref ------------------------------------------------------------------------


@dataclass(frozen=True)
class TableQuery:
    """What the table page was asked: the ref, the columns, one filter, the keyset position."""

    table: str
    at: str = "head"
    columns: list[str] | None = None
    filter: tuple[str, str, str] | None = None
    after: list[Any] | None = None


def parse_after(text: str | None) -> list[Any] | None:
    """The keyset position as the page's links carry it: a JSON array of the last key."""
    if not text:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        raise InvalidInputError(f"after must be a JSON array of key values, not {text!r}") from None
    if not isinstance(values, list) or any(isinstance(v, (dict, list)) for v in values):
        raise InvalidInputError(f"after must be a JSON array of key values, not {text!r}")
    return [None if v is None else str(v) for v in values]


def table(db: Database, ask: TableQuery) -> Page:
    keys = key_columns(db, ask.table)
    everything = _query.read(db, ask.table, ask.at, limit=0).columns
    shown = [c for c in (ask.columns or everything) if c]
    # the key is always read (the next page starts after it), shown first
    read_columns = [*keys, *(c for c in shown if c not in keys)]
    filters = [ask.filter] if ask.filter else []
    result = _query.read(db, ask.table, ask.at, columns=read_columns, filters=filters, after=ask.after,
                         limit=PAGE_ROWS + 1)
    rows = result.rows[:PAGE_ROWS]
    more = len(result.rows) > PAGE_ROWS
    next_after = [_key_text(v) for v in rows[-1][:len(keys)]] if more and rows else None
    data = {
        "table": ask.table, "ref": ask.at, "version": result.version, "key_columns": keys,
        "enabled_version": db.scalar("select (rowver.registered(%s::regclass)).enabled_version", (ask.table,)),
        "all_columns": everything, "columns": read_columns, "rows": [list(r) for r in rows],
        "filter": list(ask.filter) if ask.filter else None, "after": ask.after, "next_after": next_after,
        "operators": _query.FILTER_OPERATORS,
        "changesets": _rows(_query.log(db, limit=LOG_ROWS, table=ask.table)),
    }
    state = {"t": ask.table, "cols": ask.columns, **dict(zip(("fcol", "fop", "fval"), ask.filter or ()))}
    links = {"permalink": link("/table", **state, at=result.version),
             "first": link("/table", **state, at=ask.at),
             "next": link("/table", **state, at=ask.at, after=json.dumps(next_after)) if next_after else None}
    return Page("table.html", data, immutable=fixed(ask.at),
                extra={"keys_json": [json.dumps([_key_text(v) for v in r[:len(keys)]]) for r in rows], **links})


def key_columns(db: Database, table: str) -> list[str]:
    return list(db.scalar("select (rowver.registered(%s::regclass)).key_columns", (table,)))


def _key_text(value: Any) -> Any:
    """A key value as its link carries it: text PostgreSQL reads back into the key's type."""
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)


# -- a diff between two refs --------------------------------------------------------------------


def diff(db: Database, table: str, a: str | None, b: str | None, *, all_columns: bool = False, full: bool = False,
         staged: str | None = None) -> Page:
    """Between two refs, or (``staged``) what publishing a stage would do to the table."""
    keys = key_columns(db, table)
    if staged is not None:
        return _diff_rows(db, table, None, None, keys, all_columns, staged)
    if a is None:
        raise InvalidInputError("this page needs a (the first ref), or staged (a stage's name)")
    b = b or "head"
    versions = (_refs.resolve_for(db.conn, table, a), _refs.resolve_for(db.conn, table, b))
    changes = int(_query.fetch(db, _sql.query("ui/row_changes.sql"),
                               {"table": table, "a": min(versions), "b": max(versions)}).rows[0][0])
    if changes > DIFF_CHANGES and not full:
        # a diff costs what changed between the refs: ask before spending seconds on it
        data = {"table": table, "a": a, "b": b, "versions": list(versions), "key_columns": keys,
                "row_changes": changes, "counts": None, "rows": []}
        return Page("diff_large.html", data)
    return _diff_rows(db, table, a, b, keys, all_columns, None)


def _diff_rows(db: Database, table: str, a: str | None, b: str | None, keys: list[str], all_columns: bool,
               staged: str | None) -> Page:
    with _query.diff_stream(db, table, a, b, batch=DIFF_ROWS, staged=staged) as (versions, found):
        batch = next(iter(found), [])
    counts = _query.diff_counts(db, table, *((None, None) if staged else versions), staged=staged)
    records = [{"op": op, "key": key, "changed": list(changed or []), "old": old, "new": new}
               for op, key, changed, old, new in batch]
    every = next((list((r["new"] or r["old"]).keys()) for r in records), [])
    changed = {c for r in records for c in r["changed"]}
    if all_columns or not changed:
        columns = every
    else:
        columns = [c for c in every if c in changed or c in keys]
    data = {"table": table, "a": a, "b": b, "staged": staged, "versions": list(versions), "key_columns": keys,
            "counts": counts, "columns": columns, "only_differences": not all_columns, "rows": records,
            "shown": len(records), "total": sum(counts.values())}
    return Page("diff.html", data, immutable=staged is None and fixed(a or "") and fixed(b or ""),
                extra={"key_json": [json.dumps({k: _key_text(v) for k, v in r["key"].items()}) for r in records]})


# -- one row's history --------------------------------------------------------------------------

VERSION_COLUMNS = ("rv_version", "rv_until", "rv_deleted", "created_at", "author", "message")


HISTORY_ROWS = 500   # versions of one row shown unless all are asked for (the newest)


def history(db: Database, table: str, key_text: str, *, everything: bool = False) -> Page:
    try:
        key = json.loads(key_text)
    except ValueError:
        key = key_text  # a single key value, as the CLI takes it
    if isinstance(key, list):
        key = tuple(key)
    result = _query.history_rows(db, table, key)
    values = [c for c in result.columns if c not in VERSION_COLUMNS]
    versions = []
    before: dict[str, Any] | None = None
    for row in _rows(result):
        now = {c: row[c] for c in values}
        changed = [] if before is None else [c for c in values if now[c] != before[c]]  # (new: nothing to compare)
        versions.append({**{c: row[c] for c in VERSION_COLUMNS}, "values": now,
                         "changed": [] if row["rv_deleted"] else changed})
        before = None if row["rv_deleted"] else now
    older = 0 if everything else max(len(versions) - HISTORY_ROWS, 0)
    data = {"table": table, "key": _query.key_object(db, table, key), "columns": values,
            "versions": versions[older:], "older_not_shown": older}
    return Page("history.html", data)


# -- one changeset ------------------------------------------------------------------------------


def changeset(db: Database, version: int) -> Page:
    found = _records(db, "changeset.sql", {"version": version})
    if not found:
        raise NotFound(f"no changeset {version} (head is {db.head()})")
    return Page("changeset.html", found[0], immutable=True)


# -- models -----------------------------------------------------------------------------------


def models(db: Database) -> Page:
    data = {"models": [
        {"name": m.name, "versions": m.versions, "latest": m.latest, "aliases": m.aliases,
         "description": m.description, "updated_at": m.updated_at} for m in db.models.list()]}
    return Page("models.html", data)


def metric_series(value: Any) -> list[tuple[float, float]]:
    """A metric as (step, value) points: a number is one point at step 0; a series is an
    array of numbers (steps 0, 1, ...) or of {"step": .., "value": ..}."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)) or _is_decimal(value):
        return [(0.0, float(value))]
    if isinstance(value, dict) and "value" in value:
        return metric_series(value["value"])
    if not isinstance(value, list):
        return []
    points = []
    step: Any
    y: Any
    for i, item in enumerate(value):
        if isinstance(item, dict):
            step, y = item.get("step", i), item.get("value")
        else:
            step, y = i, item
        if _number(step) and _number(y):
            points.append((float(step), float(y)))
    return points


def _is_decimal(value: Any) -> bool:
    return type(value).__name__ in ("Decimal", "JsonNumber")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and (isinstance(value, (int, float)) or _is_decimal(value)) \
        and math.isfinite(float(value))


def summary(metrics: dict[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """Every metric's last, min and max (and how many steps), not only its last value."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, value in sorted(metrics.items()):
        ys = [y for _, y in metric_series(value)]
        out[name] = {"last": ys[-1] if ys else None, "min": min(ys) if ys else None,
                     "max": max(ys) if ys else None, "steps": len(ys)}
    return out


def _version_record(v: Any) -> dict[str, Any]:
    return {"version": v.version, "params": v.params, "metrics": summary(v.metrics), "tags": v.tags,
            "aliases": v.aliases, "data_version": v.data_version, "data_ref": v.data_ref,
            "author": v.author, "db_user": v.db_user, "created_at": v.created_at, "changeset": v.changeset,
            "description": v.description, "code_revision": v.code_revision, "nbytes": v.nbytes,
            "content_hash": v.content_hash}


def _known(db: Database, name: str, version: int | None = None) -> None:
    """A 404 for a model (or model version) that does not exist; the store's own errors
    do not tell a missing name from a bad one."""
    if not db.scalar("select exists (select from rowver.model_version where model = %s and version = coalesce(%s, version))"
                     " or (%s::integer is null and exists (select from rowver.model where name = %s))",
                     (name, version, version, name)):
        raise NotFound(f"no model {name!r}" if version is None else f"no model version {name}/{version}")


def model(db: Database, name: str) -> Page:
    _known(db, name)
    versions = _records(db, "model_versions.sql", {"model": name})
    for v in versions:
        v["aliases"] = list(v["aliases"])
        v["metrics"] = summary(json.loads(v["metrics"]))
    data = {"name": name, "versions": versions,
            "metric_names": sorted({m for v in versions for m in v["metrics"]}),
            "param_names": sorted({p for v in versions for p in v["params"]}),
            "alias_log": _records(db, "alias_log.sql", {"model": name})}
    return Page("model.html", data)


def model_version(db: Database, name: str, version: int) -> Page:
    _known(db, name, version)
    v = db.models.get(f"{name}/{version}")
    lineage = db.models.lineage(f"{name}/{version}")
    tables = []
    if v.data_version is not None:
        tables = [t for (t,) in _query.fetch(
            db, "select relid::text from rowver.versioned where enabled_version <= %s order by 1",
            (v.data_version,)).rows]
    data = {**_version_record(v), "name": name,
            "tensors": [{"kind": t.kind, "name": t.name, "dtype": t.dtype, "shape": list(t.shape),
                         "nbytes": t.nbytes} for t in v.tensors],
            "lineage": {"data_version": lineage.data_version, "data_ref": lineage.data_ref,
                        "data_changeset": lineage.data_changeset, "saved_in": lineage.saved_in,
                        "tables": tables}}
    return Page("model_version.html", data)


def compare(db: Database, name: str, numbers: list[int], *, all_params: bool = False) -> Page:
    if len(numbers) < 2:
        raise InvalidInputError("compare needs two or more versions (?v=1&v=2)")
    for n in numbers:
        _known(db, name, n)
    versions = [db.models.get(f"{name}/{n}") for n in numbers]
    param_names = sorted({p for v in versions for p in v.params})
    params = [{"name": p, "values": [v.params.get(p) for v in versions],
               "differs": len({json.dumps(v.params.get(p), sort_keys=True, default=str) for v in versions}) > 1}
              for p in param_names]
    if not all_params:
        params = [p for p in params if p["differs"]]
    metric_names = sorted({m for v in versions for m in v.metrics})
    metrics = {m: [summary({m: v.metrics[m]})[m] if m in v.metrics else None for v in versions] for m in metric_names}
    tensors = [{"against": f"{name}/{v.version}",
                "changed": [{"tensor": t, "state": s, "detail": d}
                            for t, s, d in db.models.compare(f"{name}/{numbers[0]}", f"{name}/{v.version}").tensors
                            if s != "same"]}
               for v in versions[1:]]
    data = {"name": name, "versions": numbers, "params": params, "only_differences": not all_params,
            "metrics": metrics, "tensors": tensors}
    charts = {m: _svg.chart([(f"v{v.version}", metric_series(v.metrics.get(m))) for v in versions])
              for m in metric_names}
    return Page("compare.html", data, extra={"charts": charts})
