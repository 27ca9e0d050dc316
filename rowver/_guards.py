"""Guarded changesets: limits on what one write call may do (``max_deleted``, ``max_changed``,
``expect_rows``) and checks over a whole changeset (a SQL condition every row it wrote to a table
must meet, or a function of its counts). A call's limits are judged by the server after its diff
and before it writes (``rowver.check_guards``: a refusal allocates no version); the changeset's
checks inside its transaction just before the commit. A refusal is one CheckFailedError that
names the check, the counts and a few keys, and the whole changeset rolls back.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from . import _sql
from .errors import CheckFailedError, InvalidInputError, RowverError, from_database

SAMPLES = 5  # keys a refusal names
Limit = int | float  # a number of rows, or a fraction (0..1) of the table's rows before the call
Counts = dict[str, int]  # inserted, updated, deleted, unchanged (and rows_before, rows_after)


@dataclass(frozen=True)
class Guards:
    """Limits on one write call (None: no limit), judged after its diff and before it writes.

    ``max_deleted``: the rows it may delete; ``max_changed``: the rows it may update or delete.
    An int is a number of rows; a float in [0, 1] a fraction of the rows the table held before
    the call (``deleted / rows_before``, ``(updated + deleted) / rows_before``), so ``1`` is one
    row and ``1.0`` all of them. ``expect_rows=(lo, hi)``: the rows the table holds after the
    call, bounds included (None: open). Fractions and ``expect_rows`` count the table once."""

    max_deleted: Limit | None = None
    max_changed: Limit | None = None
    expect_rows: tuple[int | None, int | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_deleted", _limit("max_deleted", self.max_deleted))
        object.__setattr__(self, "max_changed", _limit("max_changed", self.max_changed))
        if self.expect_rows is not None:
            object.__setattr__(self, "expect_rows", _bounds(self.expect_rows))

    def __bool__(self) -> bool:
        return (self.max_deleted, self.max_changed, self.expect_rows) != (None, None, None)

    def as_json(self) -> str | None:
        """The limits as rowver.check_guards takes them (None: no limits)."""
        if not self:
            return None
        found: dict[str, Any] = {}
        for name, limit in (("max_deleted", self.max_deleted), ("max_changed", self.max_changed)):
            if limit is not None:
                found[name] = {"rows": limit} if isinstance(limit, int) else {"fraction": limit}
        if self.expect_rows is not None:
            found["expect_rows"] = list(self.expect_rows)
        return json.dumps(found)


@dataclass(frozen=True)
class Check:
    """A condition every row a changeset inserts or updates in ``table`` must meet: ``where`` is
    one SQL condition over the table's columns (as for ``rowver show --where``), run with the
    caller's privileges in a read-only savepoint just before the commit. A row for which it is
    false or NULL refuses the changeset. ``name`` names it in the error (default: the condition)."""

    table: str
    where: str
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table.strip():
            raise InvalidInputError(f"a Check needs a table name, not {self.table!r}")
        if not isinstance(self.where, str) or not self.where.strip() or ";" in self.where:
            raise InvalidInputError(f"a Check's where takes one SQL condition, without ';', not {self.where!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise InvalidInputError(f"a Check's name is text, not {self.name!r}")

    @property
    def label(self) -> str:
        return self.name or self.where.strip()


# A check over the whole changeset: a Check, or a function of its counts per table (regclass
# text -> WriteResult, summed over its calls) that returns whether to commit.
ChangesetCheck = Check | Callable[[Any], object]


def checks_given(checks: Iterable[ChangesetCheck] | None) -> list[ChangesetCheck]:
    """The checks of ``db.changeset(checks=...)``, each a Check or a function; else one clear error."""
    if checks is None:
        return []
    if isinstance(checks, (str, bytes, Check)) or not isinstance(checks, Iterable):
        raise InvalidInputError(f"checks takes a list of rowver.Check or functions, not {checks!r}")
    found = list(checks)
    for check in found:
        if not isinstance(check, Check) and not callable(check):
            raise InvalidInputError(f"a check is a rowver.Check(table, where) or a function of the changeset's "
                                    f"counts, not {check!r}")
    return found


# -- the values the CLI takes -------------------------------------------------------------------

def parse_limit(option: str, text: str) -> Limit:
    """``500`` (rows), ``0.05`` or ``5%`` (a fraction) from the command line."""
    body = text.strip()
    try:
        if body.endswith("%"):
            value: Limit = float(body[:-1]) / 100
        else:
            value = int(body) if body.lstrip("+-").isdigit() else float(body)
    except ValueError:
        raise InvalidInputError(f"{option} takes a number of rows (500) or a fraction of the table's rows "
                                f"(0.05 or 5%), not {text!r}") from None
    limit = _limit(option, value)
    assert limit is not None  # (a number was given)
    return limit


def parse_bounds(text: str) -> tuple[int | None, int | None]:
    """``LO:HI`` (either side may be empty: open) from the command line."""
    lo, sep, hi = text.partition(":")
    if not sep or not all(part.strip().isdigit() for part in (lo, hi) if part.strip()):
        raise InvalidInputError(f"--expect-rows takes LO:HI, whole numbers of rows (either may be left out: "
                                f"1000:), not {text!r}")
    return _bounds(tuple(int(part) if part.strip() else None for part in (lo, hi)))


def _limit(name: str, value: object) -> Limit | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} takes a number of rows (500) or a fraction of the table's rows (0.05), "
                                f"not {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise InvalidInputError(f"{name} cannot be negative: {value!r}")
        return int(value)
    fraction = float(value)
    if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
        raise InvalidInputError(f"{name} as a fraction of the table's rows is between 0 and 1, not {value!r} "
                                "(a whole number is a number of rows)")
    return fraction


def _bounds(value: object) -> tuple[int | None, int | None]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidInputError(f"expect_rows takes (lo, hi), whole numbers of rows (None: open), not {value!r}")
    for bound in value:
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, numbers.Integral) or bound < 0):
            raise InvalidInputError(f"expect_rows takes whole numbers of rows (None: open), not {bound!r}")
    lo, hi = (None if b is None else int(b) for b in value)
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInputError(f"expect_rows: lo {lo} is above hi {hi}")
    return lo, hi


def _counts_text(counts: Counts) -> str:
    text = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("inserted", "updated", "deleted", "unchanged"))
    if "rows_after" in counts:
        text += f"; {counts['rows_before']} rows before, {counts['rows_after']} after"
    return text


# -- judging a whole changeset ------------------------------------------------------------------

def run_checks(conn: psycopg.Connection, checks: list[ChangesetCheck], effect: Mapping[str, Counts],
               results: Mapping[str, Any]) -> None:
    """Run the changeset's checks, in order; the first that fails raises CheckFailedError.
    ``effect``: counts per table (regclass text); ``results``: the same as WriteResults, what a
    function check is given."""
    for check in checks:
        if isinstance(check, Check):
            _run_sql_check(conn, check, effect)
        elif not check(results):
            name = getattr(check, "__name__", None) or repr(check)
            totals = {k: sum(c.get(k, 0) for c in effect.values()) for k in ("inserted", "updated", "deleted", "unchanged")}
            per_table = "; ".join(f"{t}: {_counts_text(c)}" for t, c in effect.items()) or "no writes"
            raise CheckFailedError(f"check {name} refused the changeset ({per_table}); the changeset is rolled "
                                   "back, nothing written", check=name, counts=totals)


def _run_sql_check(conn: psycopg.Connection, check: Check, effect: Mapping[str, Counts]) -> None:
    table = str(_sql.value(conn, "select %s::regclass::text", (check.table,)))
    written = sql.SQL(_sql.value(conn, "select rowver.written_rows_sql(%s::regclass)", (table,)))
    # the caller's own SQL, on its own lines so that a trailing -- comment ends there
    probe = sql.SQL("select rv_key, count(*) over () from ({} and (\n{}\n) is not true) rv_failed"
                    " order by rv_key limit {}").format(written, sql.SQL(check.where), sql.Literal(SAMPLES))
    try:
        with conn.transaction(force_rollback=True):  # a savepoint, read only, always rolled back
            conn.execute("set transaction read only")
            rows = conn.execute(probe).fetchall()
    except psycopg.Error as exc:
        error = from_database(exc)
        if (error.sqlstate or "")[:2] in ("42", "22", "25"):
            raise type(error)(f"{error} (in check {check.label!r} on {table})", sqlstate=error.sqlstate) from exc
        raise error from exc
    if rows:
        counts = dict(effect.get(table, {}))
        counts.setdefault("inserted", 0)
        counts.setdefault("deleted", 0)
        after = int(_sql.value(conn, "select rowver.row_count(%s::regclass)", (table,)))
        counts["rows_before"], counts["rows_after"] = after - counts["inserted"] + counts["deleted"], after
        keys = [row[0] for row in rows]
        raise CheckFailedError(
            f"check {check.label!r} refused the changeset: {rows[0][1]} of the rows it wrote to {table} fail it "
            f"({_counts_text(counts)}); failing keys include {', '.join(json.dumps(k, default=str) for k in keys)}; "
            "the changeset is rolled back, nothing written",
            check=check.label, table=table, counts=counts, sample_keys=keys)


def refused_again(exc: CheckFailedError) -> RowverError:
    """The error for a call made after a check refused the changeset."""
    return RowverError(f"this changeset was refused by check {exc.check} and is rolled back at its end; "
                       "open a new one with db.changeset()")
