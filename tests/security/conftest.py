"""Fixtures for the security tests: real logins (see logins.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from logins import Logins


@pytest.fixture
def logins(conn: psycopg.Connection, db_url: str) -> Iterator[Logins]:
    found = Logins(conn, db_url)
    try:
        yield found
    finally:
        found.close()

