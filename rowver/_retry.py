"""One retry policy for rowver's writes: what is replayed, how many times, how long between.

A write is replayed only when a replay can cure its error and is safe to run again:

- 40001 (serialization failure) and 40P01 (deadlock), rowver.ConflictError: PostgreSQL rolled the
  work back, and says to try again. A changeset replays its whole transaction from the start,
  which its calls are kept for (rowver._write.WriteOp); a model commit runs its one statement again.
- 23505 (unique violation) only where the write says a replay cures it: an upsert or sync diffs,
  then inserts, and a concurrent insert of the same key after its diff fails it; the next diff sees
  that row. An insert's unique violation is the caller's duplicate and is never replayed.
- The callers add what only they can cure (a model commit whose stored chunk was reclaimed
  meanwhile writes it again and replays).

Between tries the wait is jittered exponential ("full jitter"): before try n+1 a uniform draw in
[0, min(base * 2**n, cap)] seconds, so writers that collided do not collide again in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

TRANSIENT = ("40001", "40P01")  # serialization failure, deadlock detected
UNIQUE_VIOLATION = "23505"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE an error carries (a RowverError's or a psycopg error's), if any."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def transient(exc: BaseException) -> bool:
    """PostgreSQL's own "try again": a serialization failure or a deadlock."""
    return sqlstate(exc) in TRANSIENT


@dataclass(frozen=True)
class Policy:
    """How often and how patiently to replay: ``retries`` replays after the first try."""

    retries: int = 5
    base: float = 0.02  # seconds before the first replay, at most
    cap: float = 1.0  # seconds before any replay, at most

    def delay(self, tried: int) -> float:
        """The wait after ``tried`` failed tries (1 or more), jittered."""
        return random.uniform(0, min(self.base * 2 ** (tried - 1), self.cap))

    def run(self, attempt: Callable[[int], T], retryable: Callable[[Exception], bool], *,
            before_wait: Callable[[], object] | None = None) -> T:
        """``attempt(n)`` (n = 0 on the first try, the replay's number after), until it returns,
        raises an error ``retryable`` refuses, or has failed ``retries + 1`` times (its last error
        raised). ``before_wait`` runs before each wait (a rollback that frees locks at once)."""
        tried = 0
        while True:
            try:
                return attempt(tried)
            except Exception as exc:
                tried += 1
                if tried > self.retries or not retryable(exc):
                    raise
            if before_wait is not None:
                before_wait()
            time.sleep(self.delay(tried))
