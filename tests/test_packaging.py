"""The built distribution carries the SQL sources and the typing marker.

sql/ lives outside the package and is mapped into it by pyproject.toml; an
editable install would hide a broken mapping, so build the real thing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("build") is None,
    reason="the 'build' package is not installed (pip install -e '.[test]')",
)
def test_wheel_contains_sql_and_py_typed(tmp_path: Path) -> None:
    # No --wheel: build the sdist and the wheel from it, so the sdist is
    # checked too (a wheel built from a tree that lost sql/ would be wrong).
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = tmp_path.glob("rowver-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert "rowver/py.typed" in names
    # every module of the package and its subpackages (the CLI is one), none left behind
    source = {str(p.relative_to(REPO)) for p in (REPO / "rowver").rglob("*.py")}
    assert source - names == set()
    shipped = {
        name.removeprefix("rowver/sql/")
        for name in names
        if name.startswith("rowver/sql/") and name.endswith(".sql")
    }
    assert shipped, "no .sql files under rowver/sql/ in the wheel"
    assert shipped == {str(p.relative_to(REPO / "sql")) for p in (REPO / "sql").rglob("*.sql")}  # (and sql/ui/)
    # the web UI's templates and stylesheet
    ui = {str(p.relative_to(REPO)) for p in (REPO / "rowver" / "ui").rglob("*") if p.suffix in (".html", ".css")}
    assert ui and ui - names == set()
