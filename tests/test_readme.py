"""README's Python examples run as written: every ```python block not marked
``<!-- illustrative -->``, in order, in one namespace, on a fresh database (ROWVER_URL)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- illustrative -->\n)?```python\n(.*?)```", re.S)


def python_blocks() -> list[tuple[bool, str]]:
    """(illustrative, code) for every Python block of the README."""
    return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def test_readme_python_examples_run_as_written(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    runnable = [code for illustrative, code in python_blocks() if not illustrative]
    assert len(runnable) >= 2, "README lost its runnable examples"
    monkeypatch.setenv("ROWVER_URL", db_url)
    scope: dict[str, Any] = {"__name__": "readme"}
    for code in runnable:
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102  (our own README)
    db = scope["db"]
    try:
        # what the examples say they did
        assert capsys.readouterr().out.splitlines()[-1].startswith("3 0 0 0 ")
        messages = list(db.log()["message"])
        assert "nightly load" in messages and "upgrades" in messages
        assert db.as_of("customers", "train-2026-11")["plan"].tolist() == ["free", "pro", "pro"]
        assert db.as_of("customers", "head")["plan"].tolist() == ["free", "pro", "pro"]  # reverted
        assert scope["plans"] == ["free", "pro", "pro"]  # the Dask read, as of the tag
        assert db.models.get("churn@production").version == scope["v1"].version  # rolled back
        ts = scope["ts"]  # the training set: point in time, its early event counted, its lineage saved
        assert ts["calls_7d"].tolist()[1:] == [3, 40, 0, 55, 7] and pd.isna(ts["calls_7d"][0])
        assert ts.attrs["rowver_before_first"] == {"public.customers": 0, "public.usage": 1}
        assert scope["m"].data_version == max(max(v) for v in ts.attrs["rowver_lineage"].values())
        assert db.check().empty
    finally:
        db.close()


def test_illustrative_blocks_are_the_ones_that_need_an_application() -> None:
    """Only the ORM/Alembic blocks, which need an engine, mapped classes or a migration context,
    are exempt from running."""
    skipped = [code for illustrative, code in python_blocks() if illustrative]
    assert skipped and all("rowver.orm" in code or "op." in code for code in skipped)


def test_the_cli_tour_shows_what_a_real_run_prints(db_url: str) -> None:
    """README's tour is docs/tour.py's output on a fresh `rowver demo` (times aside); rerun that
    script when a command's output changes."""
    import importlib.util
    import subprocess
    import sys

    spec = importlib.util.spec_from_file_location("tour", README.parent / "docs" / "tour.py")
    assert spec and spec.loader
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    rowver = str(Path(sys.executable).parent / "rowver")
    subprocess.run([rowver, "demo", "--url", db_url], check=True, capture_output=True, timeout=300)
    text = README.read_text()
    start, end = tour.block(text)
    assert len(tour.commands(text)) >= 5
    assert tour.TIMES.sub("<time>", tour.rendered(db_url, text)) == tour.TIMES.sub("<time>", text[start:end])
