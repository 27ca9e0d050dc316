"""Existing SQLAlchemy code keeps working on a versioned table: ORM inserts, updates and
deletes are captured, and no-op updates (char(n) padding, rewritten JSON) keep the row
counts SQLAlchemy checks while making no version."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import CHAR, JSON, ForeignKey, String, create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.orm.attributes import flag_modified


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(CHAR(5))
    profile: Mapped[dict] = mapped_column(JSON)
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    item: Mapped[str] = mapped_column(String(20))
    customer: Mapped[Customer] = relationship(back_populates="orders")


@pytest.fixture
def engine(db_url: str, conn: psycopg.Connection) -> Iterator[Engine]:
    eng = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    Base.metadata.create_all(eng)
    with Session(eng) as s, s.begin():
        s.add(Customer(id=1, code="ab", profile={"tier": "gold"}, orders=[Order(id=1, item="pen")]))
    conn.execute("select rowver.enable('customers'), rowver.enable('orders')")
    yield eng
    eng.dispose()


def versions(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("select version from rowver.changeset order by version")]


def test_noop_orm_updates_keep_row_counts_and_make_no_version(engine: Engine, conn: psycopg.Connection) -> None:
    before = versions(conn)
    updates: list[int] = []
    event.listen(engine, "after_cursor_execute",
                 lambda c, cur, stmt, *a: updates.append(cur.rowcount) if stmt.startswith("UPDATE") else None)
    with Session(engine) as s, s.begin():
        c = s.get(Customer, 1)
        assert c.code == "ab   "  # char(5) pads
        c.code = "ab"  # a different Python value, the same char(5) value
        flag_modified(c, "profile")  # rewrite the JSON unchanged
    # the UPDATE ran and matched its row (no StaleDataError), and nothing was versioned
    assert updates == [1]
    assert versions(conn) == before
    assert conn.execute("select count(*) from customers__history").fetchone()[0] == 0


def test_orm_writes_are_versions_with_metadata(engine: Engine, conn: psycopg.Connection) -> None:
    with Session(engine) as s, s.begin():
        s.execute(text("select set_config('rowver.message', 'orm edit', true), set_config('rowver.author', 'svc', true)"))
        c = s.get(Customer, 1)
        c.profile = {"tier": "platinum"}
        c.orders.append(Order(id=2, item="ink"))
        s.delete(s.get(Order, 1))
    v, author, message, tables = conn.execute(
        "select version, author, message, tables from rowver.log(1)").fetchone()
    assert (author, message, sorted(tables)) == ("svc", "orm edit", ["public.customers", "public.orders"])
    assert conn.execute("select profile->>'tier' from customers__as_of(%s)", (v - 1,)).fetchone()[0] == "gold"
    assert conn.execute("select item from orders__as_of(%s) order by id", (v,)).fetchall() == [("ink",)]
    # reading through the ORM is unchanged; rv_version is just an unmapped column
    with Session(engine) as s:
        assert [o.item for o in s.scalars(select(Order))] == ["ink"]
