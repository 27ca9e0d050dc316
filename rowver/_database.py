"""The Database handle: one connection, and the Python surface of DESIGN §4."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from . import _export, _follow, _frames, _guards, _iceberg, _install, _query, _refs, _schema, _server, _sql, _training, _write
from .errors import NOT_INSTALLED, InvalidInputError, NotInstalledError, RowverError, ServerError

if TYPE_CHECKING:
    import pandas as pd

    from ._export import ExportResult
    from ._follow import Committed
    from .models import Models

# What enable says of a table versioned without triggers (DESIGN §6: a trusted-writer mode).
TRUSTED_WRITERS = ("{table} is versioned without triggers: only rowver's write layer is captured, and every "
                   "role that may write {table} may also write its rv_version (forging a version). Use this "
                   "mode only where every writer of the table is trusted.")


def connect(url: str | None = None) -> Database:
    """A handle on a database: ``url``, else ``ROWVER_URL``, else the embedded default.

    The embedded default database gets the rowver catalog on first use (and upgrades when
    the package changes); any other database needs ``rowver init`` (or ``db.init()``).
    """
    embedded = not url and not os.environ.get("ROWVER_URL")
    try:
        target = _server.resolve_url(url)
    except RuntimeError as exc:  # the embedded server did not start
        raise ServerError(str(exc)) from exc
    db = Database(target)
    if embedded:
        if not _install.is_current(db.conn):
            db.init()  # rowver's own database: install, or upgrade to this package's catalog
    return db


def redacted(url: str) -> str:
    """``url`` with any password replaced, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Database:
    """A rowver database. Cheap to create; connects on first use."""

    def __init__(self, url: str):
        self.url = url
        self._conn: psycopg.Connection | None = None

    # -- connection -------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection:
        """The autocommit connection every call uses (changesets open transactions on it)."""
        if self._conn is None or self._conn.closed:
            try:
                # no automatic server-side prepares: they break after DDL changes a result
                # type, and under transaction-pooling connection poolers
                self._conn = psycopg.connect(self.url, autocommit=True, prepare_threshold=None)
                _frames.register_loaders(self._conn)
            except psycopg.OperationalError as exc:
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                reason = lines[0].removeprefix("connection failed: ") if lines else "no answer"
                raise ServerError(f"cannot connect to {redacted(self.url)}: {reason}") from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- catalog ----------------------------------------------------------------------

    def catalog_version(self) -> str | None:
        """The installed catalog version, or None when rowver is not installed here."""
        return _install.installed_version(self.conn)

    def init(self) -> None:
        """Install or upgrade the rowver catalog (idempotent)."""
        _install.install(self.conn)

    def require_catalog(self) -> None:
        if self.catalog_version() is None:
            raise NotInstalledError(NOT_INSTALLED)

    # -- schema -----------------------------------------------------------------------

    def enable(self, table: str, *, key: Sequence[str] | None = None, triggers: bool = True,
               ignore: Iterable[str] = (), rewrite: bool | None = None,
               progress: _schema.Progress | None = None) -> int:
        """Version ``table``; returns the enabling changeset's version. ``rewrite`` copies
        the table once (holding an exclusive lock meanwhile) so that every row stores its
        version; without the copy, rv_version is a fast default and full scans of the table
        cost ~15% more until it is rewritten. None (the default): copy tables of at most
        256 MB (the setting ``rowver.rewrite_limit``), add larger ones without a copy.
        ``triggers=False`` captures only the write layer, and trusts every writer of the table
        (it warns: such a writer may write rv_version, and so forge a version).
        ``progress(done, total)``: told, while it copies, the bytes copied of the bytes expected
        (watched on a second connection, a few times a second), the last call (size, size)."""
        if self.catalog_version() is None:
            self.init()
        version = _schema.enable(self, table, key=key, triggers=triggers, ignore=ignore, rewrite=rewrite,
                                 progress=progress, url=self.url)
        if not triggers:
            warnings.warn(TRUSTED_WRITERS.format(table=table), stacklevel=2)
        return version

    def disable(self, table: str, *, keep_history: bool = False) -> None:
        """Stop versioning ``table``; its history is dropped unless ``keep_history``."""
        _schema.disable(self, table, keep_history=keep_history)

    def refresh(self, table: str) -> str:
        """Follow schema changes of ``table`` (added, renamed, retyped, dropped columns, new
        partitions, grants, policies); returns what changed. A no-op on unversioned tables."""
        with _sql.transaction(self.conn):
            return str(_sql.value(self.conn, "select rowver.refresh(%s::regclass)", (table,)) or "not versioned")

    def analyze(self, table: str) -> int | None:
        """Refresh the planner's statistics of ``table`` and its history, summarize the history's new
        BRIN ranges (by which as-of reads skip history pages), and set its floor: the oldest version
        a row of ``table`` has, below which as-of reads skip the table itself (returned; None where
        it is not kept: ``triggers=False``, forced row-level security)."""
        with _sql.transaction(self.conn):
            floor = _sql.value(self.conn, "select rowver.analyze(%s::regclass)", (table,))
        return None if floor is None else int(floor)

    def alter(self, table: str, action: str) -> str:
        """Run ``ALTER TABLE table <action>`` (which the versions view would block), then refresh."""
        with _sql.transaction(self.conn):
            return str(_sql.value(self.conn, "select rowver.alter(%s::regclass, %s)", (table, action)))

    def truncate(self, table: str, *, cascade: bool = False, dry_run: bool = False) -> int:
        """Empty ``table`` with every delete on record, as a changeset; returns rows deleted
        (``dry_run``: that would be, with nothing changed)."""
        with self.changeset(message=f"truncate {table}", dry_run=dry_run) as cs:
            return cs.truncate(table, cascade=cascade)

    def prune(self, table: str, before: str | int, *, dry_run: bool = False) -> int:
        """Retention (the table's owner, or rowver_admin acting as the owner): drop history no
        version at or after ``before`` and no tagged version can read; as-of reads before it are
        refused afterwards. Returns rows removed (``dry_run``: that would be, with nothing changed)."""
        with self._transaction(dry_run):
            removed = int(_sql.value(self.conn, "select rowver.prune(%s::regclass, %s)", (table, str(before))))
        if not dry_run:
            self.publish_head()
        return removed

    def erase(self, table: str, key: Any, *, surrogate: Any = None, dry_run: bool = False) -> int:
        """Legal erasure (the table's owner, or rowver_admin acting as the owner): remove one key's
        data from the table and every version of its history, leaving a changeset and a tombstone
        (keyed by ``surrogate`` if given). Returns the stored states removed (``dry_run``: that
        would be, with nothing changed)."""
        from psycopg.types.json import Jsonb

        where = _query.key_object(self, table, key)
        instead = _query.key_object(self, table, surrogate) if surrogate is not None else None
        with self._transaction(dry_run):
            removed = int(_sql.value(self.conn, "select rowver.erase(%s::regclass, %s, %s)",
                                     (table, Jsonb(where), Jsonb(instead) if instead else None)))
        if not dry_run:
            self.publish_head()
        return removed

    def ddl(self, table: str, *, key: Sequence[str] | None = None, triggers: bool = True,
            ignore: Iterable[str] = (), rewrite: bool | None = None) -> str:
        """The SQL that ``enable`` would run, unapplied."""
        self.require_catalog()
        return _schema.ddl(self, table, key=key, triggers=triggers, ignore=ignore, rewrite=rewrite)

    def disable_ddl(self, table: str, *, keep_history: bool = False) -> str:
        """The SQL that ``disable`` would run, unapplied."""
        return _schema.disable_ddl(self, table, keep_history=keep_history)

    # -- writing ----------------------------------------------------------------------

    def changeset(self, message: str | None = None, author: str | None = None, *,
                  retries: int = 5, dry_run: bool = False,
                  checks: Iterable[_guards.ChangesetCheck] | None = None) -> _write.Changeset:
        """A transaction whose writes become one version: ``with db.changeset(...) as cs:``.
        ``dry_run``: every call runs and returns its counts, and the whole is rolled back.
        ``checks``: ``rowver.Check(table, where)`` values (every row the changeset writes to the
        table must meet the SQL condition) and functions of its counts per table (a dict of
        WriteResult by table name; falsy refuses), judged just before the commit; a refusal
        raises rowver.CheckFailedError and writes nothing."""
        return _write.Changeset(self, message=message, author=author, retries=retries, dry_run=dry_run,
                                checks=checks)

    def revert(self, table: str, to: str | int, *, message: str | None = None,
               author: str | None = None, dry_run: bool = False) -> _write.WriteResult:
        """Restore ``table`` as of ``to`` in a new changeset; nothing is erased. ``dry_run``: the
        counts it would write, with nothing changed."""
        with self.changeset(message=message, author=author, dry_run=dry_run) as cs:
            result = cs.revert(table, to)
        return dataclasses.replace(result, version=None) if dry_run else result

    def publish(self, name: str, *, message: str | None = None, author: str | None = None,
                dry_run: bool = False) -> _write.WriteResult:
        """Write the stage ``name`` (``cs.sync(..., stage=name)``) as one changeset, as this
        connection's role, then drop it; its message and author unless given. Refused
        (rowver.StaleStageError, nothing written) when a key it stages changed in the table after
        it was staged. ``dry_run``: the counts, with nothing written and the stage kept."""
        with self.changeset(message=message, author=author, dry_run=dry_run) as cs:
            result = cs.publish(name)
        return dataclasses.replace(result, version=None) if dry_run else result

    def stages(self, table: str | None = None) -> pd.DataFrame:
        """Stages kept for a look (only those of ``table``, when given): name, table, mode, base
        version, counts, message, author, who and when."""
        return _query.stages(self, table).frame()

    def unstage(self, name: str) -> str:
        """Drop a stage unpublished; returns its table."""
        return str(self.scalar("select rowver.unstage(%s)", (name,)))

    @functools.cached_property
    def models(self) -> Models:
        """The model-as-rows store: ``db.models.save(...)``, ``load``, ``alias``, ``rollback``."""
        from .models import Models

        return Models(self)

    # -- reading ----------------------------------------------------------------------

    def head(self) -> int:
        """The newest version safe to read."""
        return int(self.scalar("select rowver.head()"))

    def publish_head(self) -> int:
        """Advance the published head (``rowver.head_mark``) to the live head."""
        return int(self.scalar("select rowver.publish_head()"))

    def resolve(self, ref: str | int) -> int:
        """The version a ref names (number, tag, 'head', ISO-8601 timestamp); at most head."""
        return _refs.resolve(self.conn, ref)

    def resolve_for(self, table: str, ref: str | int) -> int:
        """``ref`` as the version to read ``table`` at: an error naming the table's first
        version when it predates it (versions count across all tables)."""
        return _refs.resolve_for(self.conn, table, ref)

    def tag(self, name: str, ref: str | int = "head", *, move: bool = False) -> int:
        """Name a version; returns it. An existing tag is refused unless ``move`` (a protected
        one even then). Needs rowver_tagger; every change is recorded (``tags(history=True)``)."""
        return int(self.scalar("select rowver.tag(%s, %s, %s)", (name, str(ref), move)))

    def untag(self, name: str) -> int:
        """Remove a tag (not a protected one); returns the version it named (which is untouched)."""
        return int(self.scalar("select rowver.untag(%s)", (name,)))

    def protect_tag(self, name: str, protect: bool = True) -> int:
        """Protect a tag from being moved or removed, or lift that (rowver_admin); returns its version."""
        return int(self.scalar("select rowver.protect_tag(%s, %s)", (name, protect)))

    def tags(self, *, history: bool = False) -> pd.DataFrame:
        """The tags, or with ``history`` every change to them: who, when, old and new version."""
        return (_query.tag_log(self) if history else _query.tags(self)).frame()

    def read(self, table: str, ref: str | int = "head", *, columns: Sequence[str] | None = None,
             where: str | None = None, order_by: Sequence[str] | None = None,
             limit: int | None = None, filters: Sequence[tuple[str, str, Any]] = (),
             after: Sequence[Any] | None = None) -> _query.Result:
        """``table`` as of a ref, rows first (``.rows``, ``.columns``, ``.version``; ``.frame()``
        for a DataFrame): only ``columns``, rows meeting ``where`` (one SQL condition, run in a
        READ ONLY transaction with your privileges) and every filter ``(column, operator,
        value)`` (operators ``= != < <= > >= contains``, ``is null``, ``is not null``; the value is
        a bound parameter), ordered by ``order_by`` (default: the key), at most ``limit``; with
        ``after``, only rows past those order values (the next page, by keyset)."""
        return _query.read(self, table, ref, columns=list(columns) if columns is not None else None,
                           where=where, order_by=list(order_by) if order_by is not None else None, limit=limit,
                           filters=filters, after=after)

    def stream(self, table: str, ref: str | int = "head", *, columns: Sequence[str] | None = None,
               where: str | None = None, order_by: Sequence[str] | None = None, limit: int | None = None,
               batch: int = 10_000, filters: Sequence[tuple[str, str, Any]] = (),
               after: Sequence[Any] | None = None) -> contextlib.AbstractContextManager[_query.Stream]:
        """As ``read``, in batches of rows from a server-side cursor (memory stays flat):
        ``with db.stream("t") as s: for rows in s: ...``; ``s.columns``, ``s.version``."""
        return _query.stream(self, table, ref, columns=list(columns) if columns is not None else None,
                             where=where, order_by=list(order_by) if order_by is not None else None,
                             limit=limit, batch=batch, filters=filters, after=after)

    def as_of(self, table: str, ref: str | int = "head", *, chunksize: int | None = None) -> Any:
        """``table`` as of a ref, as a DataFrame ordered by key; with ``chunksize``, an iterator of
        DataFrames of at most that many rows, read through a server-side cursor."""
        if chunksize is not None:
            return _query.chunks(self, _query.as_of_query(self, table, ref), chunksize)
        return _query.frame(self, _query.as_of_query(self, table, ref))

    def training_set(self, events: pd.DataFrame, features: Mapping[str, Any], *, on: Mapping[str, Any],
                     at: str) -> pd.DataFrame:
        """Each event row joined with each feature table's row as of the newest version published
        at or before the row's ``at`` (the rule of timestamp refs; ``at`` may also hold versions
        or refs). ``features`` maps tables to their columns (a list, or a mapping of columns to the
        names they get); ``on`` maps each table to the event column(s) holding its key. Events
        before a table's first version get NULLs there; ``attrs["rowver_before_first"]`` counts
        them, and ``attrs["rowver_lineage"]`` lists the versions read per table
        (``db.models.save(..., data_version=frame)`` records it)."""
        return _training.training_set(self, events, features, on, at)

    def history(self, table: str, key: Any) -> pd.DataFrame:
        """Every version of one row (key: a value, a tuple, or a dict of key columns)."""
        return _query.history(self, table, key)

    def diff(self, table: str, ref_a: str | int | None = None, ref_b: str | int | None = None, *,
             chunksize: int | None = None, columns: Sequence[str] | None = None, where: str | None = None,
             staged: str | None = None, progress: _query.Progress | None = None) -> Any:
        """Rows added, removed and changed between two refs (``ref_b`` default head), in the
        table's own types: ``op``, ``key``, ``changed``, then ``old_<column>`` and ``new_<column>``
        for each column; with ``chunksize``, an iterator of DataFrames of at most that many rows.
        ``columns``: only the key and these, and only rows where one of them differs; ``where``:
        only rows whose old or new state meets this SQL condition (run read-only). ``staged``:
        instead of refs, what publishing that stage would do (old: as of its base version).
        ``progress(done, total)``: told the rows read, 10,000 at a time, the last call (rows, rows)
        (not with ``chunksize``, whose chunks count themselves)."""
        only = list(columns) if columns is not None else None
        if chunksize is not None:
            if progress is not None:
                raise InvalidInputError("progress= is for a whole diff; with chunksize, count the chunks")
            query, keys, _ = _query.diff_query(self, table, ref_a, ref_b, columns=only, where=where, staged=staged)
            return _query.chunks(self, query, chunksize, _query.diff_frame(keys))
        return _query.diff(self, table, ref_a, ref_b, columns=only, where=where, staged=staged, progress=progress)

    def changes(self, table: str, since: str | int, until: str | int = "head", *,
                columns: Sequence[str] | None = None, where: str | None = None) -> pd.DataFrame:
        """The change feed: row changes after ``since`` up to ``until`` (clamped to head), in
        version order, with ``op`` insert, update or delete. Resume from the last version seen.
        Only the key and ``columns``, and only changes whose row after the change meets ``where``
        (one SQL condition, run read-only; a delete's row is its key alone), when given."""
        return _query.changes(self, table, since, until, columns=list(columns) if columns is not None else None,
                              where=where).frame()

    def follow(self, *tables: str, since: str | int | None = None, poll: float = 5.0,
               reconnect: float = 60.0) -> Iterator[Committed]:
        """The change stream: each committed changeset touching ``tables`` after ``since`` (a ref;
        default head), once, in version order, up to head, forever; woken by the NOTIFY a commit
        sends, and polling every ``poll`` seconds. Store each ``.version`` handled and pass the
        last as ``since`` to resume. On its own connections (a lost one is opened again, for up to
        ``reconnect`` seconds)."""
        return _follow.follow(self.url, tables, since, poll=poll, reconnect=reconnect)

    def export(self, table: str, to: str | os.PathLike[str], at: str | int = "head", *, format: str = "parquet",
               cast: dict[str, str] | None = None, catalog: str | None = None,
               name: str | None = None, progress: _export.Progress | None = None) -> ExportResult:
        """Write ``table`` as of ``at`` to ``to``/version=V/ as Parquet (``format="delta"``: to the
        Delta table ``to``, one commit per version; ``"iceberg"``: to the Iceberg table ``name``,
        NAMESPACE.TABLE, default rowver.<schema>_<table>, in warehouse ``to``, registered in the SQL
        ``catalog``, a SQLAlchemy URL, default ``to``/catalog.db; one commit per version, after the
        first only the rows that changed), streamed from a server-side cursor; the file metadata (a
        commit's info, a snapshot's summary) names the table and version. A version exported already
        is left as it is (``.written`` False). ``cast``: {column: PostgreSQL type} for a column whose
        type has no faithful type there (one is an error naming it otherwise). Needs pyarrow
        (``pip install 'rowver[export]'``; Delta: ``'rowver[delta]'``; Iceberg: ``'rowver[iceberg]'``).
        ``progress(done, total)``: told the rows written, a batch at a time (total None until the
        last call, (rows, rows)); nothing for a version exported already."""
        if format == "iceberg":
            return _iceberg.export(self, table, at, to, catalog=catalog, name=name, cast=cast, progress=progress)
        if catalog is not None or name is not None:
            raise InvalidInputError("a catalog and a table name are for format='iceberg' only")
        return _export.export(self, table, at, to, fmt=format, cast=cast, progress=progress)

    def log(self, limit: int = 50, table: str | None = None, *, author: str | None = None,
            grep: str | None = None, since: str | int | None = None, until: str | int | None = None) -> pd.DataFrame:
        """Changesets, newest first: only those touching ``table``, by ``author`` (the claimed author,
        session user or role), whose message contains ``grep`` (any case), after ``since`` and up to
        ``until`` (refs), when given."""
        return _query.log(self, limit=limit, table=table, author=author, grep=grep, since=since, until=until).frame()

    def status(self) -> pd.DataFrame:
        """Versioned tables: key, triggers, current and history rows, versions, definition."""
        return _query.status(self).frame()

    def in_flight(self) -> pd.DataFrame:
        """Open transactions holding versions (so holding head back), oldest first."""
        return _query.in_flight(self).frame()

    def check(self, table: str | None = None) -> pd.DataFrame:
        """Violations of rowver's invariants (DESIGN §7); empty when all hold."""
        return _query.check(self, table).frame()

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, dry_run: bool) -> Iterator[None]:
        """A transaction that commits, or with ``dry_run`` rolls back what it did."""
        with _sql.transaction(self.conn):
            yield
            if dry_run:
                raise psycopg.Rollback()

    def scalar(self, query: Any, params: Sequence[Any] | None = None) -> Any:
        return _sql.value(self.conn, query, params)

    def __repr__(self) -> str:
        return f"rowver.Database({redacted(self.url)!r})"


__all__ = ["Database", "RowverError", "connect"]
