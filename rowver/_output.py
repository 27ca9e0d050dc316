"""Where query results become text: rich tables for people, CSV and JSON for scripts.

Everything is rendered from plain rows (column names plus tuples of Python values);
DataFrames are turned into such rows first, with pandas' missing markers as None.

- ``table``: a rich table, sized to the terminal (to its content when stdout is a pipe).
- ``csv``: a header, then one line per row, as PostgreSQL's COPY writes CSV: NULL is an empty
  field, an empty string ``""``. (show and diff have the server encode it, sql/reads/csv_select.sql.)
- ``jsonl``: the same objects as ``json``, one per line, with no array around them.
- ``json``: one array of objects. Timestamps and dates are ISO-8601 strings, intervals
  ISO-8601 durations, numerics exact decimal strings, bytea base64 strings, NULL and NaN
  null. Values that PostgreSQL itself hands over as JSON (jsonb columns) stay JSON, with
  their numbers written exactly as stored. A diff's key and old and new rows are JSON
  objects whose numbers (numerics included) are exact JSON numbers.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from . import _frames

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console, RenderableType
    from rich.table import Table

Rows = list[tuple[Any, ...]]


class JsonNumber(Decimal):
    """A number read from JSON data, kept exact (json.loads would round it to a float)."""


def json_loads(text: str | bytes) -> Any:
    """json.loads for jsonb values: fractional numbers become JsonNumber, exactly as stored."""
    return json.loads(text, parse_float=JsonNumber)


class Format(str, Enum):
    """How a command prints data (``--format``)."""

    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


# -- consoles and progress ---------------------------------------------------------------


def console() -> Console:
    """A console on stdout: the terminal's width, or as wide as the content when piped."""
    from rich.console import Console

    width = None
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        width = 10_000
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


@contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while the block runs, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def _quiet(done: int, total: int | None = None) -> None:
    """Progress no one sees (not a terminal)."""


@contextmanager
def counting(what: str, *, unit: str = "rows") -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on stderr with counts and a rate (bytes or ``unit``), only when stderr is a
    terminal; yields the callback the library's ``progress=`` takes: (done so far, total or None)."""
    if not sys.stderr.isatty():
        yield _quiet
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [
        MofNCompleteColumn(), TextColumn(unit), TextColumn("{task.fields[rate]}")]
    with Progress(TextColumn("{task.description}"), BarColumn(), *counts, TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=None, rate="")

        def update(done: int, total: int | None = None) -> None:
            speed = bar.tasks[task].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:,.0f} {unit}/s" if speed else "")
        yield update


# -- from frames to rows -------------------------------------------------------------------


def frame_rows(frame: pd.DataFrame) -> tuple[list[str], Rows]:
    """(columns, rows) of a DataFrame, with numpy and pandas scalars made plain Python."""
    columns = [str(c) for c in frame.columns]
    rows = [tuple(_frames.plain(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    return columns, rows


# -- writing ------------------------------------------------------------------------------


# Control characters that a terminal obeys rather than shows (ESC starts colour, cursor and
# title sequences; CR, BS and the C1 set rewrite what is on screen). Tab and newline stay.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` for a terminal: each control character as ``\\xNN``, so data, tags and
    messages are shown, never obeyed. (JSON and CSV stay exact.)"""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def emit(columns: Sequence[str], rows: Rows, fmt: Format, *, title: str | None = None,
         caption: str | Callable[[], str] | None = None, empty: str | None = None, pager: bool = False) -> None:
    """Print rows to stdout in ``fmt``; ``title``, ``caption`` and ``empty`` are for tables, which
    with ``pager`` go through $PAGER (less -FRX by default) when stdout is a terminal. A caption
    may be a function, called once the table is drawn (a count still running meanwhile)."""
    if fmt is Format.json:
        sys.stdout.write(to_json(columns, rows))
    elif fmt is Format.jsonl:
        sys.stdout.writelines(line + "\n" for line in _json_lines(columns, rows, ()))
    elif fmt is Format.csv:
        sys.stdout.write(to_csv(columns, rows))
    else:
        from rich.text import Text

        out = console()
        if not rows and empty is not None:
            out.print(Text(printable(empty)))
            return
        with paged(pager, out):
            for part in to_tables(columns, rows, title=title, width=out.width):
                out.print(part)  # (the first rows show while the rest are drawn)
            if caption:
                out.print(Text(printable(caption if isinstance(caption, str) else caption())), style="dim")


@contextmanager
def paged(enabled: bool, out: Console) -> Iterator[None]:
    """What the block prints to ``out`` goes through $PAGER (less -FRX by default: one screen
    stays as it is, colours kept) when enabled and stdout is a terminal."""
    if not (enabled and sys.stdout.isatty()):
        yield
        return
    os.environ.setdefault("LESS", "-FRX")
    with out.pager(styles=True):
        yield


def emit_stream(columns: Sequence[str], batches: Iterable[Rows], fmt: Format,
                type_oids: Sequence[int] = ()) -> int:
    """Print rows as csv or json while they arrive, one batch in memory at a time (the same
    text ``emit`` prints; ``type_oids`` let plain columns skip the per-value rules); returns how many."""
    if fmt is Format.table:
        raise ValueError("a table is printed whole: emit, not emit_stream")
    out, n = sys.stdout, 0
    if fmt is Format.csv:
        out.write(to_csv(columns, []))
    with counting("writing") if not out.isatty() else nullcontext(_quiet) as progress:  # (bar beside a file)
        n = _stream_rows(out, columns, batches, fmt, type_oids, progress)
    if fmt is Format.json:
        out.write("\n]\n" if n else "[]\n")
    return n


def emit_copied(blocks: Iterable[tuple[int, bytearray]], encoding: str) -> int:
    """Print CSV as the server's COPY wrote it (blocks of lines, the header first, in
    ``encoding``), straight to stdout's bytes when it takes that encoding; returns how many rows."""
    out = sys.stdout
    same = hasattr(out, "buffer") and codecs.lookup(getattr(out, "encoding", None) or "ascii").name == \
        codecs.lookup(encoding).name
    out.flush()
    write: Callable[[bytearray], Any] = out.buffer.write if same else lambda data: out.write(data.decode(encoding))
    n = 0
    with counting("writing") if not out.isatty() else nullcontext(_quiet) as progress:  # (bar beside a file)
        for lines, data in blocks:
            write(data)
            n += lines
            progress(max(n - 1, 0), None)
    out.buffer.flush() if same else out.flush()
    return max(n - 1, 0)


def _stream_rows(out: Any, columns: Sequence[str], batches: Iterable[Rows], fmt: Format, type_oids: Sequence[int],
                 progress: Callable[[int, int | None], None]) -> int:
    n = 0
    for rows in batches:
        progress(n + len(rows), None)
        if fmt is Format.csv:
            out.write(to_csv(columns, rows, type_oids, header=False))
        elif fmt is Format.jsonl:
            out.writelines(line + "\n" for line in _json_lines(columns, rows, type_oids))
        else:
            for line in _json_lines(columns, rows, type_oids):
                out.write(("[\n" if n == 0 else ",\n") + line)
                n += 1
            continue
        n += len(rows)
    return n


def emit_frame(frame: pd.DataFrame, fmt: Format, **options: Any) -> None:
    emit(*frame_rows(frame), fmt, **options)


def to_json(columns: Sequence[str], rows: Rows, type_oids: Sequence[int] = ()) -> str:
    """One JSON array of objects, one object per line."""
    if not rows:
        return "[]\n"
    return "[\n" + ",\n".join(_json_lines(columns, rows, type_oids)) + "\n]\n"


# PostgreSQL types whose Python values need none of json_value's and csv_value's rules
# (oids: int8, int2, int4, oid; text, name, bpchar, varchar)
_INTEGERS = frozenset((20, 21, 23, 26))
_TEXTS = frozenset((25, 19, 1042, 1043))
_FLOATS = frozenset((700, 701))  # float4, float8


def _json_int(value: Any) -> str:
    return "null" if value is None else str(value)


def _json_text(value: Any) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _json_lines(columns: Sequence[str], rows: Rows, type_oids: Sequence[int]) -> Iterator[str]:
    """One JSON object per row; a column's encoder is chosen once, by its type."""
    oids = [*type_oids, *[0] * (len(columns) - len(type_oids))]
    encoders = [_json_int if o in _INTEGERS else _json_text if o in _TEXTS else json_value for o in oids]
    keys = [f"{json.dumps(c)}: " for c in columns]
    for row in rows:
        yield "{" + ", ".join([k + e(v) for k, e, v in zip(keys, encoders, row)]) + "}"


def json_value(value: Any) -> str:
    """The JSON text of one value (see the module docstring for the rules)."""
    kind = type(value)  # (the commonest first, by exact type: isinstance against Mapping is slow)
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if kind is int:
        return str(value)
    if kind is dict:
        return "{" + ", ".join([f"{json.dumps(str(k), ensure_ascii=False)}: {json_value(v)}" for k, v in value.items()]) + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "null"
        if math.isinf(value):
            return '"Infinity"' if value > 0 else '"-Infinity"'
        return repr(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return "null"
        if value.is_infinite():
            return '"Infinity"' if value > 0 else '"-Infinity"'
        # a number inside JSON data stays the exact number; a numeric value, an exact string;
        # both written out as PostgreSQL prints them (str would say 1E-7 for 0.0000001)
        return format(value, "f") if isinstance(value, JsonNumber) else '"' + format(value, "f") + '"'
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {json_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json_value(v) for v in value) + "]"
    return json.dumps(scalar_text(value), ensure_ascii=False)


def to_csv(columns: Sequence[str], rows: Rows, type_oids: Sequence[int] = (), *, header: bool = True) -> str:
    """CSV with a header line, as PostgreSQL's COPY (format csv) writes it, so that a read COPY
    encodes (sql/reads/csv_select.sql) and one encoded here are the same bytes: NULL is an empty
    field, an empty string ``""``; a field holding a comma, quote, CR or LF is quoted. Column by
    column: integer and text values as they are, floats through _csv_float, others csv_value."""
    lines = [",".join(map(_csv_field, columns))] if header else []
    if rows:
        oids = [*type_oids, *[0] * (len(columns) - len(type_oids))]
        values = [[_csv_field(v) for v in col] if oid in _TEXTS else
                  ["" if v is None else str(v) for v in col] if oid in _INTEGERS else
                  [_csv_field(_csv_float(v)) for v in col] if oid in _FLOATS else
                  [_csv_field(csv_value(v)) for v in col] for oid, col in zip(oids, zip(*rows))]
        if len(values) == 1:  # (COPY quotes a lone \. : on a line of its own it would end the data)
            values = [['"\\."' if v == "\\." else v for v in values[0]]]
        lines.extend(map(",".join, zip(*values)))
    return "".join(line + "\n" for line in lines)


_CSV_QUOTED = re.compile('[,"\n\r]')


def _csv_field(text: str | None) -> str:
    if text is None:
        return ""
    if text and not _CSV_QUOTED.search(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def _csv_float(value: Any) -> str | None:
    return None if value is None or value != value else repr(value)  # (NaN is not equal to itself)


def csv_value(value: Any) -> str | None:
    """The CSV text of one value; None for NULL (and NaN), which is an empty field."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list, tuple)):
        return json_value(value)
    return scalar_text(value)


def scalar_text(value: Any) -> str:
    """Exact text of a scalar: ISO-8601 times, base64 bytes, decimals as written."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return format(value, "f")  # (as PostgreSQL prints it: str would say 1E-7 for 0.0000001)
    return str(value)


def iso_duration(value: dt.timedelta) -> str:
    """An ISO-8601 duration: P1DT2H3M4.5S; negative durations get a leading '-'."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    secs = f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".") if value.microseconds else str(seconds)
    return f"{sign}P{value.days}DT{hours}H{minutes}M{secs}S"


# -- tables for people ----------------------------------------------------------------------


def to_table(columns: Sequence[str], rows: Rows, *, width: int, title: str | None = None) -> RenderableType:
    """A table that fits ``width``: text wraps, numbers are never cut. When even that is too
    wide, one block per row instead (like psql's expanded display), so no column is lost."""
    from rich.console import Group

    parts = to_tables(columns, rows, width=width, title=title)
    return parts[0] if len(parts) == 1 else Group(*parts)


def to_tables(columns: Sequence[str], rows: Rows, *, width: int, title: str | None = None,
              first: int = 100) -> list[RenderableType]:
    """to_table in parts that print one after the other as that one table: its first ``first``
    rows, then the rest, when every column's width is known from all rows (else one part), so
    that a terminal shows the first screen before the rest is drawn."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    texts = [[cell_text(v) for v in row] for row in rows]
    columns = [printable(c) for c in columns]
    title = printable(title) if title else title
    numeric = [_all(rows, i, _is_number) for i in range(len(columns))]
    whole = [numeric[i] or _all(rows, i, _is_time) for i in range(len(columns))]  # never cut
    minimum = []
    for i, name in enumerate(columns):
        longest = max((len(line) for t in texts for line in t[i].splitlines() or [""]), default=0)
        minimum.append(max(len(name), longest) if whole[i] else max(min(len(name), 12), min(longest, 10)))
    if sum(minimum) + 3 * (len(columns) - 1) > width:
        return [_expanded(columns, texts, title=title)]
    natural = _natural_widths(columns, texts, width)

    def table(part: list[list[str]], head: bool) -> Table:
        drawn = Table(box=box.SIMPLE_HEAD, title=Text(title) if title and head else None, title_justify="left",
                      title_style="bold", header_style="bold", pad_edge=False, show_edge=False, show_header=head)
        for i, name in enumerate(columns):
            drawn.add_column(Text(name), justify="right" if numeric[i] else "left", no_wrap=whole[i],
                             overflow="fold", min_width=minimum[i], width=natural[i] if natural else None)
        for row in part:
            drawn.add_row(*(Text(t) for t in row))
        return drawn
    if natural is None or len(texts) <= first:
        return [table(texts, True)]
    return [table(texts[:first], True), table(texts[first:], False)]


def _natural_widths(columns: Sequence[str], texts: list[list[str]], width: int) -> list[int] | None:
    """Each column's widest line, when every column fits ``width`` at that (no tabs, which rich
    expands): the widths rich would find by measuring every cell again, several times slower."""
    from rich.cells import cell_len

    if any("\t" in t for row in texts for t in row):
        return None
    natural = [max([cell_len(name), *(cell_len(line) for row in texts for line in row[i].splitlines())])
               for i, name in enumerate(columns)]
    return natural if sum(natural) + 3 * (len(columns) - 1) <= width else None


def _expanded(columns: Sequence[str], texts: list[list[str]], *, title: str | None) -> RenderableType:
    from rich.console import Group
    from rich.rule import Rule
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = [Text(title, style="bold")] if title else []
    for n, row in enumerate(texts, 1):
        parts.append(Rule(f"row {n}", align="left", style="dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, text in zip(columns, row):
            grid.add_row(name, Text(text))
        parts.append(grid)
    return Group(*parts)


def _all(rows: Rows, i: int, test: Any) -> bool:
    values = [row[i] for row in rows if row[i] is not None]
    return bool(values) and all(test(v) for v in values)


def cell_text(value: Any) -> str:
    """Short text of a value for a table cell, printable; NULL is empty, as in psql."""
    return printable(_cell_text(value))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return "\\x" + data[:32].hex() + ("…" if len(data) > 32 else "")
    if isinstance(value, Mapping):
        return json_value(value)
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return ", ".join(_cell_text(v) for v in value)
        return json_value(value)
    return scalar_text(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    return isinstance(value, (dt.date, dt.time))  # (datetime is a date)


# -- diffs ----------------------------------------------------------------------------------


def diff_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """db.diff's frame as op, key, changed, old, new records, the shape SQL's rowver.diff has:
    the key and the old and new rows as dicts (old is None for an added row, new for a
    removed one); values encode as in every other command (numerics as exact strings)."""
    names, values = frame_rows(frame)
    width = (len(names) - 3) // 2  # op, key, changed, old_<column>..., new_<column>...
    old_names = [n.removeprefix("old_") for n in names[3:3 + width]]
    new_names = [n.removeprefix("new_") for n in names[3 + width:]]
    records = []
    for op, key, changed, *cells in values:
        records.append({"op": op, "key": dict(key), "changed": changed,
                        "old": None if op == "added" else dict(zip(old_names, cells[:width])),
                        "new": None if op == "removed" else dict(zip(new_names, cells[width:]))})
    return records


def diff_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"added": 0, "removed": 0, "changed": 0}
    for row in rows:
        counts[row["op"]] = counts.get(row["op"], 0) + 1
    return counts


def diff_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """Added and removed rows on one line each; a changed row as one line per changed column."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    styles = {"added": "green", "removed": "red", "changed": "yellow"}
    marks = {"added": "+", "removed": "-", "changed": "~"}
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for name, least in (("", 9), ("key", 4), ("column", 6), ("old", 4), ("new", 4)):
        table.add_column(name, overflow="fold", min_width=least, no_wrap=not name)
    for row in rows:
        op, key = row["op"], row["key"] or {}
        mark = Text(f"{marks.get(op, '?')} {op}", style=styles.get(op, ""))
        key_text = Text(", ".join(f"{k}={cell_text(v)}" for k, v in key.items()))
        if op == "changed":
            for i, column in enumerate(row["changed"] or ()):
                table.add_row(mark if i == 0 else "", key_text if i == 0 else "", Text(column),
                              Text(cell_text((row["old"] or {}).get(column))),
                              Text(cell_text((row["new"] or {}).get(column))))
        else:
            values = row["new"] if op == "added" else row["old"]
            rest = ", ".join(f"{k}={cell_text(v)}" for k, v in (values or {}).items() if k not in key)
            table.add_row(mark, key_text, "", Text(rest) if op == "removed" else "",
                          Text(rest) if op == "added" else "")
    return table
