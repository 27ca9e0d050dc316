"""The figures of what is built on the versioned rows: 8 (the model store), 11 (the web UI's
pages), 12 (point-in-time training sets) and 13 (exports to Parquet, Delta Lake and Iceberg)."""

from __future__ import annotations

import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.conninfo
from psycopg import sql

from .. import _frames, _query
from .._database import Database
from ..errors import RowverError
from ._core import _OPTIONS, Figure, _Core, _expect, _median, _ratio, _round

if TYPE_CHECKING:
    import pandas as pd


class _Features(_Core):
    """Figures 8, 11, 12 and 13."""

    # -- 11: the web UI --------------------------------------------------------------------------

    def _ui_pages(self) -> list[Figure]:
        """Each page of rowver ui in milliseconds, server side and warm (the app called in this
        process), on the bench table after every figure before it has written (10,000s of
        changesets, a key with figure 10's long history) and a model whose versions each carry a
        long metric series; target 300 ms."""
        import numpy as np

        from ..ui import _timing

        s, name = self.s, self._text("bench_versioned")
        model = f"{self.schema}-ui"
        with Database(self.url) as db:
            for v in range(s.ui_model_versions):
                self.say(f"figure 11: model version {v + 1} of {s.ui_model_versions}")
                db.models.save(model, params={"lr": 0.01 * (v % 7), "depth": v % 5},
                               metrics={"auc": 0.5 + v / 1000, "loss": [1 / (i + 1 + v) for i in range(s.ui_steps)]},
                               weights={"w": np.full(16, v, dtype=np.float32)}, data_version="head")
            before = db.head()
            self.conn.execute(sql.SQL("update {} set qty = qty + 1 where id between 201 and 210").format(self.ver))
            self._after_write()
            after, first = db.head(), self._v0
        t = urllib.parse.quote(name)
        middle = s.ui_model_versions // 2
        pages = {"home": "/", "table_head": f"/table?t={t}", "table_oldest": f"/table?t={t}&at={first}",
                 "table_next_page": f"/table?t={t}&after=" + urllib.parse.quote(f"[{s.rows // 2}]"),
                 "table_filter": f"/table?t={t}&fcol=qty&fop=%3E&fval=5",
                 "diff_adjacent": f"/diff?t={t}&a={before}&b={after}", "row_history": f"/history?t={t}&key=101",
                 "changeset": f"/changeset/{after}", "models": "/models", "model": f"/models/{model}",
                 "model_version": f"/models/{model}/{middle}",
                 "compare": f"/models/{model}/compare?v=1&v={middle}&v={s.ui_model_versions}"}
        times = _timing.page_times(self.url, pages, reps=s.reps, say=lambda p: self.say(f"figure 11: {p}"))
        return [Figure(11, f"ui_{page}", f"rowver ui {pages[page]}", "ms", None, _median(ms), None, "<=", 300.0,
                       absolute=True, detail={"versioned_ms": _round(ms)}) for page, ms in times.items()]

    # -- 12: point-in-time training sets -----------------------------------------------------------

    def _training_set(self) -> Figure:
        """db.training_set: events joined with a feature table as of each event's time, against a
        plain hash join of the same events with the table's current rows, with the same COPY of
        the events in, fetch and assembly; the process's peak memory after each."""
        import resource

        import numpy as np
        import pandas as pd

        s, conn = self.s, self.conn
        feat, name = self._q("bench_features"), self._text("bench_features")
        self.say(f"figure 12: {s.train_keys:,} keys in {s.train_versions} versions each")
        conn.execute(sql.SQL("create table {} (id int primary key, plan text, mrr numeric, calls int)").format(feat))
        conn.execute(sql.SQL("insert into {} select g, 'free', 0, 0 from generate_series(1, %s) g").format(feat),
                     (s.train_keys,))
        conn.execute("select rowver.enable(%s::regclass)", (name,))
        self._after_write()
        for _ in range(s.train_versions - 1):
            conn.execute(sql.SQL("update {} set calls = calls + 1, mrr = mrr + 1,"
                                 " plan = case plan when 'free' then 'pro' else 'free' end").format(feat))
            self._after_write()
        self._vacuum(feat, self._q("bench_features__history"))
        lo, hi = conn.execute("select min(at), max(at) from rowver.head_log where head > 0").fetchone()  # type: ignore[misc]
        rng = np.random.default_rng(7)
        start, span = pd.Timestamp(lo).value, pd.Timestamp(hi).value - pd.Timestamp(lo).value + 10**9
        events = pd.DataFrame({"customer_id": rng.integers(1, s.train_keys + 1, s.train_events),
                               "event_time": pd.to_datetime(start + rng.integers(0, span, s.train_events), utc=True),
                               "label": rng.integers(0, 2, s.train_events)})
        memory = {}
        with Database(self.url) as db:
            self.say(f"figure 12: a training set of {s.train_events:,} events")
            started = time.perf_counter()
            got = db.training_set(events, {name: ["plan", "mrr", "calls"]}, on={name: "customer_id"}, at="event_time")
            versioned = time.perf_counter() - started
            memory["versioned"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            self.say("figure 12: the same events joined with the current rows")
            started = time.perf_counter()
            plain_rows = self._plain_join(db, events, feat)
            plain = time.perf_counter() - started
            memory["plain"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        _expect(len(got) == len(plain_rows) == s.train_events, "figure 12: a row per event on both sides")
        return Figure(12, "training_set", f"db.training_set, {s.train_events:,} events against {s.train_keys:,} keys "
                      f"in {s.train_versions} versions each, against a hash join with the current rows", "s",
                      plain, versioned, _ratio(versioned, plain), "<=", 3.0,
                      detail={"peak_rss_mb_after": memory,
                              "versions_read": len(next(iter(got.attrs["rowver_lineage"].values())))})

    def _plain_join(self, db: Database, events: pd.DataFrame, feat: sql.Composable) -> pd.DataFrame:
        """The events joined with the current rows: COPY'd in, one hash join, fetched and put
        beside the events in their order."""
        import numpy as np
        import pandas as pd

        with db.conn.transaction():
            db.conn.execute("create temp table rv_events (rv_row bigint, rv_time timestamptz, k int) on commit drop")
            with db.conn.cursor().copy("copy rv_events (rv_row, rv_time, k) from stdin") as cp:
                for row in zip(range(len(events)), events["event_time"], _frames._column_values(events["customer_id"])):
                    cp.write_row(row)
            found = _query.frame(db, sql.SQL("select e.rv_row, f.plan, f.mrr, f.calls from rv_events e"
                                             " left join {} f on f.id = e.k").format(feat))
        found = found.take(np.argsort(found["rv_row"].to_numpy(), kind="stable")).reset_index(drop=True)
        joined: pd.DataFrame = pd.concat([events.reset_index(drop=True), found[["plan", "mrr", "calls"]]], axis=1)
        return joined

    # -- 8: models ----------------------------------------------------------------------------------

    def _models(self) -> list[Figure]:
        try:
            from ._models import bench_models
        except ImportError:
            return _models_skipped("not available (rowver.bench._models is not installed)")
        self.say(f"figure 8: model save and load, {self.s.model_mb} MB of float32 weights")
        try:
            m = bench_models(self.url, self.s.model_mb, rounds=self.s.model_rounds)
        except Exception as exc:
            return _models_skipped(f"error: {' '.join(str(exc).split())}")
        size = {"size_mb": m.get("size_mb"), "rounds": m.get("rounds"), "database": m.get("database"),
                "model": m.get("model")}
        measured = {  # name: plain, versioned, ratio, detail
            "model_save": (m["raw_copy_in_mb_s"], m["save_mb_s"], m["save_vs_raw_copy_in"], size),
            "model_load": (m["raw_copy_out_mb_s"], m["load_mb_s"], m["load_vs_raw_copy_out"],
                           {**size, "raw_copy_out_to_memory_mb_s": m.get("raw_copy_out_to_memory_mb_s"),
                            "load_vs_raw_copy_out_to_memory": m.get("load_vs_raw_copy_out_to_memory")}),
            "model_resave_unchanged": (m["first_save_s"], m["resave_unchanged_s"], m["resave_unchanged_vs_first_save"],
                                       {**size, "resave_unchanged_written_bytes": m.get("resave_unchanged_written_bytes")}),
            "model_resave_10pct": (m["model_bytes"], m["resave_10pct_written_bytes"], m["resave_10pct_written_fraction"],
                                   {**size, "relation_growth_bytes": m.get("resave_10pct_relation_growth_bytes")}),
        }
        figures = []
        for name, (title, unit, op, target) in _MODEL_FIGURES.items():
            plain, versioned, ratio, detail = measured[name]
            figures.append(Figure(8, name, title, unit, plain, versioned, ratio, op, target, detail=detail))
        return figures

    # -- 13: exports to Parquet, Delta Lake and Iceberg -------------------------------------------

    def _exports(self) -> list[Figure]:
        """db.export of the versioned table at head to Parquet and to Delta Lake, in MB/s of the
        rows' COPY text, against COPY of the same rows (the same as-of read, in key order) to the
        client; then, after a changeset updating 1% of the rows (every hundredth key, so every
        data file holds some), the export of that version to the Delta and the Iceberg table
        exported whole before, against the whole export's time. A figure whose package is not
        installed says so."""
        import tempfile

        s, name = self.s, self._text("bench_versioned")
        missing = _export_packages_missing()
        head = self._head()
        self.say(f"figure 13: COPY of {s.rows:,} rows as of version {head} to the client")
        copied = [self._copy_out(head) for _ in range(3)]
        size = copied[0][1]
        copy_mb_s = _median([size / t / 1e6 for t, _ in copied])
        timed: dict[str, list[float]] = {}
        results: dict[str, Any] = {}
        url = psycopg.conninfo.make_conninfo(self.url, options=_OPTIONS)
        with tempfile.TemporaryDirectory(prefix="rowver-bench-") as tmp, Database(url) as db:
            def export(fmt: str, to: str, label: str) -> float:
                self.say(f"figure 13: export to {fmt}, {label}")
                started = time.perf_counter()
                results[label] = db.export(name, f"{tmp}/{to}", head if "whole" in label else "head", format=fmt)
                return time.perf_counter() - started

            for fmt in ("parquet", "delta"):
                if fmt not in missing:
                    timed[fmt] = [export(fmt, f"{fmt}{r}", f"whole, {r + 1} of 2") for r in range(2)]
            if "iceberg" not in missing:
                timed["iceberg"] = [export("iceberg", "iceberg", "whole")]
            self.conn.execute(sql.SQL("update {} set qty = qty + 1 where id % 100 = 7").format(self.ver))
            self._after_write()
            changed = sum(1 for i in range(1, s.rows + 1) if i % 100 == 7)
            for fmt, to in (("delta", "delta1"), ("iceberg", "iceberg")):
                if fmt in timed:
                    timed[f"{fmt}_changes"] = [export(fmt, to, "1% changed")]
                    _expect(results["1% changed"].changed == changed, f"figure 13: {fmt} wrote only the change")
        return self._export_figures(missing, timed, copy_mb_s, size, changed)

    def _copy_out(self, version: Any) -> tuple[float, int]:
        """COPY of the versioned table as of ``version``, in key order, to the client: seconds, bytes."""
        query = sql.SQL("copy (select * from {}(%s) order by id) to stdout").format(self.as_of)
        size = 0
        started = time.perf_counter()
        with self.conn.cursor().copy(query, (version,)) as cp:
            for block in cp:
                size += len(block)
        return time.perf_counter() - started, size

    def _export_figures(self, missing: dict[str, str], timed: dict[str, list[float]], copy_mb_s: float,
                        size: int, changed: int) -> list[Figure]:
        rows, figures = self.s.rows, []
        for fmt, title in (("parquet", "Parquet"), ("delta", "Delta Lake")):
            figure = Figure(13, f"export_{fmt}", f"db.export of {rows:,} rows to {title}, MB/s of their COPY text, "
                            "against COPY of the same rows to the client", "MB/s", copy_mb_s, None, None, ">=",
                            EXPORT_RATE_TARGET, detail={"copy_text_bytes": size})
            if fmt in missing:
                figure.status = missing[fmt]
            else:
                figure.versioned = _median([size / t / 1e6 for t in timed[fmt]])
                figure.ratio = _ratio(figure.versioned, copy_mb_s)
                figure.detail["seconds"] = _round(timed[fmt])
            figures.append(figure)
        for fmt, title in (("delta", "Delta Lake"), ("iceberg", "Iceberg")):
            figure = Figure(13, f"export_{fmt}_changes", f"export to {title} after 1% of {rows:,} rows changed, "
                            "against the whole export", "s", None, None, None, "<=", 0.1,
                            detail={"rows_changed": changed})
            if fmt in missing:
                figure.status = missing[fmt]
            else:
                figure.plain, figure.versioned = _median(timed[fmt]), timed[f"{fmt}_changes"][0]
                figure.ratio = _ratio(figure.versioned, figure.plain)
            figures.append(figure)
        return figures


EXPORT_RATE_TARGET = 0.25  # figure 13: an export's MB/s against COPY's (ours: the issue names none)


def _export_packages_missing() -> dict[str, str]:
    """{format: why its figures are not measured}, for the formats whose package is not installed."""
    from .. import _export, _iceberg

    missing = {}
    for fmt, require in (("parquet", _export.require_pyarrow), ("delta", _export.require_deltalake),
                         ("iceberg", _iceberg.require_pyiceberg)):
        try:
            require()
        except RowverError as exc:
            missing[fmt] = f"not available ({exc})"
    if "parquet" in missing:  # (Delta and Iceberg need pyarrow too)
        missing = {fmt: missing.get(fmt, missing["parquet"]) for fmt in ("parquet", "delta", "iceberg")}
    return missing


_MODEL_FIGURES = {  # name: title, unit, op, target
    "model_save": ("model save against raw binary COPY into bytea", "MB/s", ">=", 0.8),
    "model_load": ("model load against raw binary COPY out of bytea", "MB/s", ">=", 0.8),
    "model_resave_unchanged": ("unchanged re-save against the first save", "s", "<=", 0.2),
    "model_resave_10pct": ("re-save with 10% of tensors changed: bytes written, against the model", "bytes",
                           "<=", 0.12),
}


def _models_skipped(status: str) -> list[Figure]:
    return [Figure(8, name, title, unit, None, None, None, op, target, status=status)
            for name, (title, unit, op, target) in _MODEL_FIGURES.items()]
