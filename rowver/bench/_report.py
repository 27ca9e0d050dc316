"""The bench's report: one row per figure for JSON and CSV, a table with notes for people, and
the status line shown while it runs."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from ._core import Progress, Report

# -- rendering ------------------------------------------------------------------------------------

_UNITS = {"s": ("s", 3), "ms": ("ms", 1), "us": ("µs", 1), "updates/s": ("/s", 0), "tps": ("tps", 0), "bytes/row": ("B/row", 1),
          "MB/s": ("MB/s", 0), "bytes": ("B", 0)}
COLUMNS = ["figure", "name", "title", "unit", "plain", "versioned", "ratio", "op", "target", "pass", "status",
           "detail"]


def rows(report: Report) -> list[tuple[Any, ...]]:
    """One row per figure, in COLUMNS order (for JSON and CSV)."""
    out = []
    for f in report.figures:
        out.append((f.figure, f.name, f.title, f.unit, _num(f.plain), _num(f.versioned), _num(f.ratio), f.op,
                    f.target, f.passed, f.status,
                    {"rows": report.settings.rows, "quick": report.settings.quick, "server": report.server,
                     "database": report.database,
                     **{k: _num(v) if isinstance(v, float) else v for k, v in f.detail.items()}}))
    return out


def _num(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def table_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per figure, as text for people."""
    out: list[tuple[str, ...]] = []
    for f in report.figures:
        unit, digits = _UNITS.get(f.unit, (f.unit, 3))

        def amount(x: float | None, digits: int = digits, unit: str = unit) -> str:
            return "" if x is None else f"{x:,.{digits}f} {unit}"

        verdict = {True: "pass", False: "MISS", None: f.status}[f.passed]
        out.append((str(f.figure), f.title, amount(f.plain), amount(f.versioned),
                    "" if f.ratio is None else f"{f.ratio:.2f}x",
                    f"{f.op} {f.target:g} {unit}" if f.absolute else f"{f.op} {f.target:g}x", verdict))
    return out


def notes(report: Report) -> list[str]:
    """Lines under the table: what else each figure measured."""
    lines = []
    for f in report.figures:
        d = f.detail
        if f.name.startswith("as_of_point_lookup") and f.status == "measured":
            where = {"as_of_point_lookup": "", "as_of_point_lookup_long_history": " (a long history)"}.get(
                f.name, " (at depth)")
            lines.append(f"5{where}: unprepared {d['unprepared_versioned_us']:.1f} µs vs {d['unprepared_plain_us']:.1f} µs "
                         f"({d['unprepared_ratio']:.2f}x); server-side, without round trips, "
                         f"{d['server_side_versioned_us']:.1f} µs vs {d['server_side_plain_us']:.1f} µs "
                         f"({d['server_side_ratio']:.2f}x)")
        elif f.name == "history_bytes_per_changed_row" and f.versioned is not None:
            lines.append(f"7: history index {d['history_index_bytes_per_row']:.1f} bytes per changed row, "
                         f"apart from the heap; {d['history_rows']:,} history rows")
        elif f.name == "history_bytes_per_unchanged_row" and f.status == "measured":
            lines.append(f"7: a no-op UPDATE of {d['rows_updated']:,} rows added {d['history_rows_added']} history rows "
                         f"and {d['changesets_added']} changesets")
        elif f.name == "concurrent_updates" and f.status == "measured":
            failures = d["serialization_failures"]
            if any(failures.values()):
                lines.append(f"2: serialization failures (retried by nobody, not counted): {failures}")
            if "server_cpu_us_per_update_versioned" in d:
                lines.append(f"2: server CPU per single-row UPDATE, one client: "
                             f"{d['server_cpu_us_per_update_versioned']:.0f} µs versioned, "
                             f"{d['server_cpu_us_per_update_plain']:.0f} µs plain")
        elif f.name == "tpcb" and f.status == "measured":
            lines.append(f"9: failed transactions (none expected): {d['failed_transactions']}")
        elif f.name == "current_scan" and f.status == "measured" and d["rewrite"] is not None:
            lines.append("3: enable copied the versioned table, so every row stores rv_version" if d["rewrite"] else
                         "3: enable added rv_version without copying the table (a fast default), so PostgreSQL "
                         "projects every row of a full scan; --rewrite copies it")
        elif f.name == "model_save" and f.status != "measured":
            lines.append(f"8: model store {f.status}")
    return lines


def emit(report: Report, fmt: Any) -> None:
    """Print the report: a table with notes for people, or one JSON (CSV) row per figure."""
    from .. import _output

    if fmt is not _output.Format.table:
        _output.emit(COLUMNS, rows(report), fmt)
        return
    s = report.settings
    out = _output.console()
    out.print(f"rowver bench on PostgreSQL {report.server}: {s.rows:,} rows"
              f"{' (--quick: a smoke test, not a measurement)' if s.quick else ''}"
              f"{', enable --rewrite' if s.rewrite else ', enable --no-rewrite' if s.rewrite is False else ''}, "
              f"{report.seconds:.0f} s; ratio = versioned / plain, median of interleaved runs")
    out.print(_output.to_table(["#", "figure", "plain", "versioned", "ratio", "target", "result"],
                               table_rows(report), width=out.width))
    for line in notes(report):
        out.print(line)


@contextlib.contextmanager
def status_line() -> Iterator[Progress]:
    """A spinner on stderr that shows what the bench is doing, when stderr is a terminal."""
    import sys

    if not sys.stderr.isatty():
        yield lambda _: None
        return
    from rich.console import Console

    with Console(stderr=True).status("rowver bench") as status:
        yield lambda message: status.update(f"rowver bench: {message}")
