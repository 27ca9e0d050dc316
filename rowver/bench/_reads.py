"""The read figures: 3 (full scan of current rows), 4 (as-of full read), 5 (as-of point
lookups) and 10 (reads whose cost follows the answer, and figure 4 again at depth)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from .._database import Database
from ..errors import RowverError
from ._core import _FULL_READ, _ROUND_UPDATE, Figure, _Core, _expect, _median, _ratio, _round


class _Reads(_Core):
    """Figures 3, 4, 5 and 10."""

    # -- 3, 4: full reads ----------------------------------------------------------------

    def _reads(self, what: str, plain: sql.Composed, versioned: sql.Composed,
               params: Sequence[Any] | None = None) -> tuple[list[float], list[float], Any, Any]:
        conn = self.pconn
        out_p = conn.execute(plain, prepare=True).fetchall()  # warm, and what they return
        out_v = conn.execute(versioned, params, prepare=True).fetchall()
        tp: list[float] = []
        tv: list[float] = []
        for i in range(self.s.reps):
            self.say(f"{what}, repetition {i + 1} of {self.s.reps}")
            tp.append(self._timed(plain, conn=conn, prepare=True))
            tv.append(self._timed(versioned, params, conn=conn, prepare=True))
        return tp, tv, out_p, out_v

    def _current_scan(self) -> Figure:
        tp, tv, out_p, out_v = self._reads("figure 3: current scan", sql.SQL(_FULL_READ).format(self.plain),
                                           sql.SQL(_FULL_READ).format(self.ver))
        _expect(out_p == out_v, f"the current scans disagree: {out_p} <> {out_v}")
        p, v = _median(tp), _median(tv)
        return Figure(3, "current_scan", f"full scan of current rows after {self.s.rounds} rounds of 10% updates",
                      "s", p, v, _ratio(v, p), "<=", 1.10,
                      detail={"plain_s": _round(tp), "versioned_s": _round(tv), "rewrite": self.copied,
                              "plain_heap_bytes": self._heap_bytes(self.plain),
                              "versioned_heap_bytes": self._heap_bytes(self.ver)})

    def _as_of_scan(self, at: str, rounds: int | None = None) -> Figure:
        """As-of full read at the oldest version (every row changed since) or at head, after
        the first rounds or (given) after that many."""
        version = self._v0 if at == "oldest" else self._head()
        rounds = rounds or self.s.rounds
        as_of = sql.SQL(_FULL_READ).format(sql.SQL("{}(%s)").format(self.as_of))
        tp, tv, out_p, out_v = self._reads(f"figure 4: as-of full read at {at}", sql.SQL(_FULL_READ).format(self.plain),
                                           as_of, (version,))
        _expect(out_v[0][0] == self.s.rows, f"as of version {version}, {out_v[0][0]} rows, not {self.s.rows}")
        if at == "head":  # (the plain side has the same rows as the versioned one now)
            _expect(out_p == out_v, f"as of head, the versioned table reads {out_v}, the plain one {out_p}")
        p, v = _median(tp), _median(tv)
        name = ("as_of_scan" if at == "oldest" else "as_of_scan_head") + ("" if rounds == self.s.rounds else
                                                                        f"_{rounds}_rounds")
        return Figure(4, name, f"as-of full read (T__as_of) at {'the oldest version' if at == 'oldest' else 'head'}"
                      f" after {rounds} rounds of 10% updates", "s", p, v, _ratio(v, p), "<=", 1.5,
                      detail={"version": version, "plain_s": _round(tp), "versioned_s": _round(tv)})

    # -- 5: point lookups ----------------------------------------------------------------

    def _lookups(self, query: sql.Composed, args: list[tuple[Any, ...]], prepare: bool) -> float:
        """Seconds per lookup, one round trip each, every row fetched."""
        cur = self.pconn.cursor()
        t = time.perf_counter()
        for a in args:
            cur.execute(query, a, prepare=prepare)
            if cur.fetchone() is None:
                raise RowverError(f"bench: no row for key {a[-1]}")
        return (time.perf_counter() - t) / len(args)

    def _point_lookup(self, at: str = "oldest", rounds: int | None = None) -> Figure:
        """Lookups at the oldest version or (given) at head after that many rounds, where a
        key has a state for every tenth round."""
        version = self._v0 if at == "oldest" else self._head()
        rng = random.Random(7)
        keys = [rng.randint(1, self.s.rows) for _ in range(self.s.lookups)]
        name, title = "as_of_point_lookup", "as-of point lookup by key at the oldest version, prepared"
        if rounds:
            name, title = f"as_of_point_lookup_head_{rounds}_rounds", f"the same at head after {rounds} rounds"
        return self._lookup_figure(name, title, keys, version)

    def _lookup_figure(self, name: str, title: str, keys: list[int], version: Any) -> Figure:
        """Figure 5: these keys looked up in the plain table and as of the version, one round
        trip each, prepared and not (the ratio is the prepared one's), and in the server."""
        plain = sql.SQL("select * from {} where id = %s").format(self.plain)
        versioned = sql.SQL("select * from {}(%s) where id = %s").format(self.as_of)
        p_args = [(k,) for k in keys]
        v_args = [(version, k) for k in keys]
        results: dict[str, dict[str, list[float]]] = {m: {"plain": [], "versioned": []}
                                                      for m in ("prepared", "unprepared")}
        for prepare in (True, False):  # warm up, and let prepared plans settle (generic after 5)
            self._lookups(plain, p_args[:50], prepare)
            self._lookups(versioned, v_args[:50], prepare)
        for i in range(self.s.reps):
            self.say(f"figure 5: {name}, repetition {i + 1} of {self.s.reps}")
            for mode, prepare in (("prepared", True), ("unprepared", False)):
                results[mode]["plain"].append(self._lookups(plain, p_args, prepare))
                results[mode]["versioned"].append(self._lookups(versioned, v_args, prepare))
        us = {m: {side: _median(v) * 1e6 for side, v in r.items()} for m, r in results.items()}
        server = self._server_lookups(keys, version)
        p, v = us["prepared"]["plain"], us["prepared"]["versioned"]
        return Figure(5, name, title, "us", p, v, _ratio(v, p), "<=", 1.2,
                      detail={"version": version, "lookups": len(keys),
                              "unprepared_plain_us": us["unprepared"]["plain"],
                              "unprepared_versioned_us": us["unprepared"]["versioned"],
                              "unprepared_ratio": _ratio(us["unprepared"]["versioned"], us["unprepared"]["plain"]),
                              **server})

    def _server_lookups(self, keys: list[int], version: Any) -> dict[str, Any]:
        """The same lookups without the client: a PL/pgSQL loop (its statements are prepared,
        as a client's are). Shows the executor's own cost, which round trips dilute."""
        conn = self.conn
        body = """create or replace function {}(keys bigint[], v {}) returns double precision
language plpgsql as $$
declare
  t0 timestamptz := clock_timestamp();
  k bigint;
  r record;
begin
  foreach k in array keys loop
    select * into r from {} where id = k;
  end loop;
  return extract(epoch from clock_timestamp() - t0);
end $$"""
        fn_p, fn_v = self._q("lookup_plain"), self._q("lookup_versioned")
        vtype = sql.SQL(self.version_type)
        conn.execute(sql.SQL(body).format(fn_p, vtype, self.plain))
        conn.execute(sql.SQL(body).format(fn_v, vtype, sql.SQL("{}(v)").format(self.as_of)))
        tp: list[float] = []
        tv: list[float] = []
        for i in range(self.s.reps + 1):
            a = conn.execute(sql.SQL("select {}(%s, %s)").format(fn_p), (keys, version)).fetchone()[0]  # type: ignore[index]
            b = conn.execute(sql.SQL("select {}(%s, %s)").format(fn_v), (keys, version)).fetchone()[0]  # type: ignore[index]
            if i:  # the first is warm-up
                tp.append(a / len(keys) * 1e6)
                tv.append(b / len(keys) * 1e6)
        p, v = _median(tp), _median(tv)
        return {"server_side_plain_us": p, "server_side_versioned_us": v, "server_side_ratio": _ratio(v, p)}

    # -- 10: reads whose cost follows the answer -------------------------------------------------

    def _reads_at_depth(self) -> list[Figure]:
        """A diff and the change feed of one small version, one key's long history, then
        figures 4 and 5 (at head) again after many more rounds."""
        s, conn = self.s, self.conn
        name = self._text("bench_versioned")
        before = self._head()
        conn.execute(sql.SQL("update {} set qty = qty + 1 where id between 101 and 110").format(self.ver))
        after = self._head()

        def diff() -> int:
            query = self.pconn.execute("select rowver.diff_sql(%s::regclass, %s, %s)", (name, before, after))
            return len(self.pconn.execute(query.fetchone()[0]).fetchall())  # type: ignore[index]

        def changes() -> int:
            return len(self.pconn.execute("select * from rowver.changes(%s::regclass, %s, %s)",
                                          (name, str(before), str(after))).fetchall())
        figures = [self._absolute("diff_adjacent", f"diff of two adjacent versions (10 rows changed), "
                                  f"{s.rows:,} rows after {s.rounds} rounds", diff, 10),
                   self._absolute("changes_adjacent", "change feed between the same two versions", changes, 10)]

        key = 101
        self.say(f"figure 10: {s.key_versions:,} versions of one key")
        first = self._head()
        with self._connect() as writer:
            writer.execute("set synchronous_commit = off")  # (setting up, not measuring)
            for _ in range(s.key_versions):
                writer.execute(sql.SQL("update {} set qty = qty + 1 where id = %s").format(self.ver), (key,))
        self._after_write()
        with Database(self.url) as db:
            figures.append(self._absolute("row_history", f"one key's history, {s.key_versions:,} versions, as a "
                                          "DataFrame (db.history)", lambda: len(db.history(name, key)),
                                          s.key_versions + 1, at_least=True))
        # figure 5 for that key, as of its middle state: half its states lie below that version
        figures.append(self._lookup_figure("as_of_point_lookup_long_history",
                                           f"the same for a key of {s.key_versions:,} states, as of the middle one",
                                           [key] * s.lookups, (first + self._head()) // 2))

        for r in range(s.rounds, s.deep_rounds):
            self.say(f"figure 4: bulk update, round {r + 1} of {s.deep_rounds}")
            for t in (self.plain, self.ver):
                conn.execute(sql.SQL(_ROUND_UPDATE).format(t), (r % 10,))
        self._after_write()
        self._vacuum(self.plain, self.ver, self.hist)
        self._maintain()
        return figures + [self._as_of_scan("oldest", s.deep_rounds), self._as_of_scan("head", s.deep_rounds),
                          self._point_lookup("head", s.deep_rounds)]

    def _absolute(self, name: str, title: str, read: Callable[[], int], rows: int, *,
                  at_least: bool = False) -> Figure:
        """Milliseconds a read takes (the median of the repetitions, after one to warm up),
        with figure 10's target of 20 ms; the read returns how many rows it got."""
        got = read()
        _expect(got >= rows if at_least else got == rows, f"{name}: {got} rows, not {rows}")
        times = []
        for i in range(self.s.reps):
            self.say(f"figure 10: {name}, repetition {i + 1} of {self.s.reps}")
            t = time.perf_counter()
            read()
            times.append((time.perf_counter() - t) * 1000)
        return Figure(10, name, title, "ms", None, _median(times), None, "<=", 20.0, absolute=True,
                      detail={"rows_read": got, "versioned_ms": _round(times)})
