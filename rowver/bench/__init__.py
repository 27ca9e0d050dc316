"""`rowver bench`: what versioning costs, measured on the database it is pointed at (DESIGN §10).

Every figure but figure 10 is a ratio: a versioned table against a plain table of the same
shape and the same data, in the same run, timed interleaved (plain, versioned, plain, versioned, ...),
the median of several repetitions, with the absolute figures beside it. Every bench
session runs with parallel query and JIT off (``max_parallel_workers_per_gather = 0``,
``jit = off``), so that the ratios compare work rather than worker start-up or code
generation, and each side's read is run once untimed first, so caches are warm. Timed
writes start after a CHECKPOINT (where the role may ask for one), so that neither side
pays for the other's dirty pages.

The run lives in a scratch database it creates, with rowver installed, and drops afterwards
(``rowver_bench_<random>``), so the database it is pointed at is left as it was; whatever
happens, including an error or Ctrl-C, the database is dropped. In place (``in_place``), it
lives in a scratch schema of that database: versioning is disabled on its tables and the
schema dropped, but the changesets its writes made stay in that database's log (history is
append-only). The model-store figure writes through ``rowver.bench._models`` (see there).

The figures (targets from the benchmark issue; "ratio" is versioned / plain):

1. bulk UPDATE of 10% of the rows through the triggers, 10 rounds (each a different
   tenth, so every row changes once): median time ratio <= 2.5; the same on a wider row,
   ``(id int primary key, a int, b text, c float8, d timestamptz)`` with 300,000 rows and
   ``SET a = a + 1``: <= 2.5;
2. single-row UPDATEs by primary key from 4 concurrent clients (threads, one connection
   each, prepared) for a fixed time: throughput ratio >= 0.70; beside it, the server's CPU
   time per single-row UPDATE from one client, where the server runs on this machine;
3. full scan of the current rows after those 10 rounds: <= 1.10;
4. as-of full read (``T__as_of``) at the oldest version, where every row must be read from
   history: <= 2.5 against a plain full scan;
5. as-of point lookup by key at that version, both sides prepared: <= 1.2 against a plain
   primary-key lookup (unprepared and server-side figures are reported beside it);
6. ``sync`` of a DataFrame with 1% of its rows changed: <= 2.0 against COPY of the same
   DataFrame (the same column-wise conversion, psycopg's COPY) into a plain table;
7. history heap bytes per changed row: <= 1.3 times the row's size in a freshly loaded
   plain table (index bytes reported apart); bytes per unchanged row (a no-op UPDATE):
   0;
8. model save and load against raw binary COPY of the same bytes into and out of a plain
   bytea table: each >= 0.8 of its throughput; an unchanged re-save <= 0.2 of the first;
9. PostgreSQL's pgbench, TPC-B (scale 2, 4 clients, 2 threads, no retries) on its four
   tables, plain in one scratch schema and versioned in another: tps ratio >= 0.60, with
   failed transactions reported for both (none expected);
10. reads whose cost follows the answer, in milliseconds (absolute targets, no plain side):
    a diff of two adjacent versions that changed 10 rows, and the change feed between them,
    each <= 20 ms; one key's history of 5,000 versions as a DataFrame <= 20 ms; and figure 4
    again (oldest and head) after 50 rounds of 10% updates (200 with ``--deep``): <= 1.5,
    within 10% of the figure after 10 rounds, and figure 5 again at head, where a key has a
    state for every tenth round;
11. each page of ``rowver ui`` (home; the bench table at head, at its oldest version, a page
    further by key, filtered; an adjacent diff; the long-history key; a changeset; the
    models, a model of 100 versions with 1,000-step series, one version, a comparison of
    three), server side and warm, in milliseconds: <= 300 ms each;
12. ``db.training_set`` of 1,000,000 events against a 100,000-key feature table with 20
    versions per key, against a plain hash join of the same events with its current rows (the
    same COPY in, fetch and assembly): <= 3.0; the process's peak memory beside it;
13. ``db.export`` of the versioned table at head to Parquet and to Delta Lake, in MB/s of the
    rows' COPY text, against COPY of the same rows (the same as-of read, in key order) to the
    client: >= 0.25 (a target of ours; the export issue names none); then, after a changeset
    updating 1% of the rows (every hundredth key), the export of that version to the Delta and
    the Iceberg table exported whole before: <= 0.1 of the whole export's time. A figure whose
    package (pyarrow, deltalake, pyiceberg) is not installed says so.

A full read is ``count()`` of every column, so that every column of every row is read
and nothing is sent to the client; point lookups go through the client, one round trip
each, as an application makes them.

The package: ``_run`` runs it (the scratch database, the tables, the figures in turn, the
cleanup) on ``_core`` (settings, figures, connections and shared helpers); the figures are in
``_writes`` (1, 2, 6, 7, 9), ``_reads`` (3, 4, 5, 10) and ``_features`` (8, 11, 12, 13), with
``_models`` and ``_pgbench`` measuring the model store and running pgbench; ``_report`` prints.
"""

from ._core import Figure, Report, Settings
from ._report import COLUMNS, emit, notes, rows, status_line, table_rows
from ._run import bench

__all__ = ["COLUMNS", "Figure", "Report", "Settings", "bench", "emit", "notes", "rows", "status_line", "table_rows"]
