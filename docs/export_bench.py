"""Figure 13 of ``rowver bench`` alone: exports to Parquet, Delta Lake and Iceberg (README, "What
it costs"), in a scratch database created and dropped here:

    .venv/bin/python docs/export_bench.py postgresql://postgres@127.0.0.1:5432/postgres [ROWS]

The bench table (ROWS rows, default 1,000,000: bigint key, two ints, a float, an md5 text, a
text with NULLs, a timestamptz) is loaded and versioned as ``rowver bench`` does; then its
figure 13 runs as there (rowver.bench._features._Features._exports): COPY of the rows as of head to the client
three times, db.export to Parquet and to Delta twice each and to Iceberg once, a changeset
updating every hundredth key, and the export of that version to the Delta and Iceberg tables.
In ``rowver bench`` the table has been through the other figures' updates first (history 5 to
6 times the table), so its reads there cost more than here.
"""

from __future__ import annotations

import sys
import time

from psycopg import sql

from rowver.bench import Report, Settings, _core, _run, table_rows


def main(url: str, rows: int) -> None:
    settings = Settings.for_run(rows=rows)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"{time.perf_counter() - started:7.1f} s  {message}", file=sys.stderr)

    with _run._scratch_database(url) as scratch:
        run = _run._Run(scratch, settings, say)
        try:
            run.conn.execute(sql.SQL("create schema {}").format(sql.Identifier(run.schema)))
            run.plain, run.ver = run._q("bench_plain"), run._q("bench_versioned")
            say(f"loading {rows:,} rows")
            run.conn.execute(sql.SQL(_core._CREATE).format(run.ver))
            run.conn.execute(sql.SQL(_core._FILL).format(run.ver), (rows,))
            run.conn.execute(sql.SQL("vacuum (freeze, analyze) {}").format(run.ver))
            run._enable()
            figures = run._exports()
        finally:
            run.cleanup()
    report = Report(run.server, settings, run.schema, time.perf_counter() - started, figures, "scratch, dropped")
    print(f"PostgreSQL {run.server}, {rows:,} rows")
    for row in table_rows(report):
        print(" | ".join(row))
    for f in figures:
        print(f.name, f.detail)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
