"""`rowver bench --quick` as CI runs it: a smoke test of the command, not a timing gate.

Its JSON has every figure (1 to 13) with a target and a pass field and numbers for both
sides; it ran in a scratch database, gone afterwards, and left the user's database as it was
(in place: its scratch schema is gone). No assertion here is about speed.
"""

from __future__ import annotations

import json
import math

import psycopg
import pytest
from typer.testing import CliRunner

from rowver.bench import Settings, _features, _run
from rowver.cli import app

runner = CliRunner(env={"COLUMNS": None, "ROWVER_URL": None, "ROWVER_DEBUG": None})


def _schemas(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as c:
        return [r[0] for r in c.execute(
            "select nspname from pg_namespace where nspname like 'rowver\\_bench\\_%' order by 1")]


def _databases(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return int(c.execute("select count(*) from pg_database where datname like 'rowver\\_bench\\_%'").fetchone()[0])


def _log(url: str) -> tuple[int, int]:
    """The user's log: how many changesets, and head."""
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("select (select count(*) from rowver.changeset), rowver.head()").fetchone()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_bench_json(db_url: str) -> None:
    before = _log(db_url)
    result = runner.invoke(app, ["bench", "--quick", "--format", "json", "--url", db_url])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    figures = json.loads(result.stdout)
    # in a scratch database: the user's log and head are as they were, and the database is gone
    assert _log(db_url) == before and _databases(db_url) == 0
    assert {f["detail"]["database"] for f in figures} == {"scratch, dropped"}

    assert {f["figure"] for f in figures} == set(range(1, 14))
    names = [f["name"] for f in figures]
    assert len(names) == len(set(names))
    for f in figures:
        assert f["op"] in ("<=", ">=")
        assert _is_number(f["target"]), f
        assert "pass" in f and "status" in f, f
        assert f["detail"]["rows"] == Settings.for_run(quick=True).rows
        if f["status"].startswith("not available"):  # the model store may not be built here, nor pgbench,
            assert f["figure"] in (8, 9, 13) and f["pass"] is None, f  # nor export's packages (it says which)
            continue
        assert f["status"] == "measured", f
        assert isinstance(f["pass"], bool), f
        if f["figure"] in (10, 11):  # milliseconds against an absolute target, no plain side
            assert f["unit"] == "ms" and f["plain"] is None and _is_number(f["versioned"]), f
            assert f["pass"] == (f["versioned"] <= f["target"])
            continue
        for key in ("plain", "versioned", "ratio"):
            assert _is_number(f[key]), (key, f)
        assert f["pass"] == (f["ratio"] <= f["target"] if f["op"] == "<=" else f["ratio"] >= f["target"])

    by_name = {f["name"]: f for f in figures}
    # figure 4 again after more rounds, of the same rows; the diff read the 10 rows changed
    deep = Settings.for_run(quick=True).deep_rounds
    assert by_name[f"as_of_scan_{deep}_rounds"]["detail"]["version"] == by_name["as_of_scan"]["detail"]["version"]
    # and figure 5 at head after them, the version figure 4 read there, later than after 10 rounds
    at_depth = by_name[f"as_of_point_lookup_head_{deep}_rounds"]["detail"]["version"]
    assert at_depth == by_name[f"as_of_scan_head_{deep}_rounds"]["detail"]["version"]
    assert at_depth > by_name["as_of_scan_head"]["detail"]["version"]
    assert by_name["diff_adjacent"]["detail"]["rows_read"] == 10
    # figure 5 for figure 10's long-history key, as of a version among its states (after the first rounds)
    long_history = by_name["as_of_point_lookup_long_history"]["detail"]["version"]
    assert by_name["as_of_scan_head"]["detail"]["version"] < long_history < at_depth
    # every page of the web UI answered (page_times raises otherwise), each with its time
    assert {n for n in by_name if n.startswith("ui_")} == {
        "ui_home", "ui_table_head", "ui_table_oldest", "ui_table_next_page", "ui_table_filter", "ui_diff_adjacent",
        "ui_row_history", "ui_changeset", "ui_models", "ui_model", "ui_model_version", "ui_compare"}
    # as-of reads at the oldest version and at head read different versions of the same rows
    assert by_name["as_of_scan_head"]["detail"]["version"] > by_name["as_of_scan"]["detail"]["version"]
    # what the figures stand on, not how fast: unchanged rows write no history at all
    unchanged = by_name["history_bytes_per_unchanged_row"]
    assert unchanged["versioned"] == 0
    assert unchanged["detail"]["history_rows_added"] == 0
    assert unchanged["detail"]["changesets_added"] == 0
    # a table this small is copied by enable's default (so every row stores its version)
    assert by_name["current_scan"]["detail"]["rewrite"] is True
    # every row changed once, so history holds one row per row
    assert by_name["history_bytes_per_changed_row"]["detail"]["history_rows"] == by_name[
        "bulk_update"]["detail"]["rows_per_update"] * 10
    # pgbench's TPC-B on versioned tables fails no transaction (it does not retry)
    if by_name["tpcb"]["status"] == "measured":
        assert by_name["tpcb"]["detail"]["failed_transactions"] == {"plain": 0, "versioned": 0}
    assert _schemas(db_url) == []
    # exports: the changeset updated 1% of the rows, and each incremental export wrote those alone
    assert by_name["export_delta_changes"]["detail"]["rows_changed"] == Settings.for_run(quick=True).rows // 100
    assert by_name["export_parquet"]["detail"]["copy_text_bytes"] > 0
    # the model figure's gigabytes went into a scratch database of their own, dropped afterwards
    assert by_name["model_load"]["detail"]["database"] == "scratch, dropped"


def test_quick_bench_table_in_place(db_url: str) -> None:
    result = runner.invoke(app, ["bench", "--quick", "--no-models", "--rows", "2000", "--no-rewrite", "--in-place",
                                 "--url", db_url])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "as-of full read" in result.stdout
    assert "not run (--no-models)" in result.stdout
    assert "enable --no-rewrite" in result.stdout
    assert "3: enable added rv_version without copying the table" in result.stdout
    assert _schemas(db_url) == []


@pytest.mark.parametrize("where", [[], ["--in-place"]])
def test_bench_leaves_nothing_behind_on_error(db_url: str, monkeypatch: pytest.MonkeyPatch, where: list[str]) -> None:
    """An error halfway (here: in figure 5) still drops the scratch database, or in place
    disables versioning and drops the schema."""

    def broken(self: object) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(_run._Run, "_point_lookup", broken)
    result = runner.invoke(app, ["bench", "--quick", "--no-models", "--rows", "2000", *where, "--url", db_url])
    assert result.exit_code == 1
    assert "broken on purpose" in result.stderr
    assert _schemas(db_url) == [] and _databases(db_url) == 0
    with psycopg.connect(db_url, autocommit=True) as c:
        assert c.execute("select count(*) from rowver.versioned").fetchone() == (0,)


def test_bench_in_place_refuses_a_database_without_rowver(server_url: str, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("drop schema rowver cascade")
    result = runner.invoke(app, ["bench", "--quick", "--in-place", "--url", db_url])
    assert result.exit_code == 1
    assert "rowver init" in result.stderr
    assert _schemas(db_url) == []


def test_export_figures_say_which_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figure 13 without deltalake: its Delta figures are not measured and say why; the others are."""
    import sys

    monkeypatch.setitem(sys.modules, "deltalake", None)  # (import deltalake now fails)
    missing = _features._export_packages_missing()
    assert list(missing) == ["delta"] and "pip install 'rowver[delta]'" in missing["delta"]
    run = type("Run", (), {"s": Settings.for_run(quick=True)})()
    figures = _run._Run._export_figures(run, missing, {"parquet": [2.0], "iceberg": [4.0], "iceberg_changes": [0.2]},
                                        100.0, 10**8, 200)
    by_name = {f.name: f for f in figures}
    assert by_name["export_delta"].status == by_name["export_delta_changes"].status == missing["delta"]
    assert by_name["export_delta"].passed is None and by_name["export_delta_changes"].versioned is None
    assert by_name["export_parquet"].versioned == 50.0 and by_name["export_parquet"].ratio == 0.5
    assert by_name["export_iceberg_changes"].ratio == pytest.approx(0.05) and by_name["export_iceberg_changes"].passed
