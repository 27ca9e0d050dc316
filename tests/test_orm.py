"""rowver.orm on a real PostgreSQL: as-of sessions read the past through relationships
(lazy, selectin, joined; one-to-many and many-to-one; a schema-qualified table), refuse
writes, ORM writes become versions with author and message, and the Versioned mixin maps
rv_version without ever writing it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import ForeignKey, String, create_engine, event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

import rowver
import rowver.orm
from rowver.orm import AsOfWriteError, Versioned, as_of_session, changeset_info


class Base(DeclarativeBase):
    pass


class Region(Versioned, Base):
    __tablename__ = "regions"
    __table_args__ = ({"schema": "sales"},)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


class Customer(Versioned, Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("sales.regions.id"))
    orders: Mapped[list[Order]] = relationship(back_populates="customer", order_by="Order.id")
    region: Mapped[Region | None] = relationship()


class Order(Versioned, Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    item: Mapped[str] = mapped_column(String(20))
    customer: Mapped[Customer] = relationship(back_populates="orders")


class Note(Versioned, Base):
    """Reads rv_version back in the same UPDATE ... RETURNING."""

    __tablename__ = "notes"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 - SQLAlchemy reads it once
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


class Memo(Base):
    """An unversioned table: as-of sessions read it as it is."""

    __tablename__ = "memos"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


def sa_url(db_url: str) -> str:
    return db_url.replace("postgresql://", "postgresql+psycopg://", 1)


def head(conn: psycopg.Connection) -> int:
    return conn.execute("select rowver.publish_head()").fetchone()[0]


@pytest.fixture
def engine(db_url: str, conn: psycopg.Connection) -> Iterator[Engine]:
    conn.execute("create schema sales")
    eng = create_engine(sa_url(db_url))
    Base.metadata.create_all(eng)  # rv_version is a system column: enable adds it
    conn.execute("select rowver.enable('sales.regions'), rowver.enable('customers'), "
                 "rowver.enable('orders'), rowver.enable('notes')")
    yield eng
    eng.dispose()


@pytest.fixture
def history(engine: Engine, conn: psycopg.Connection) -> tuple[int, int]:
    """Version a: Ann (north) with pen and ink; version b: Ann renamed Anna (south), ink
    deleted, cap added, and Bob with his own order."""
    with Session(engine) as s, s.begin():
        north, south = Region(id=1, name="north"), Region(id=2, name="south")
        s.add_all([north, south, Memo(id=1, body="before")])
        s.add(Customer(id=1, name="Ann", region=north,
                       orders=[Order(id=1, item="pen"), Order(id=2, item="ink")]))
    a = head(conn)
    with Session(engine) as s, s.begin():
        ann = s.get(Customer, 1)
        ann.name, ann.region = "Anna", s.get(Region, 2)
        s.delete(s.get(Order, 2))
        ann.orders.append(Order(id=3, item="cap"))
        s.add(Customer(id=2, name="Bob", orders=[Order(id=4, item="hat")]))
        s.get(Memo, 1).body = "after"
    b = head(conn)
    assert a < b
    return a, b


def statements(engine: Engine) -> list[str]:
    """Every SQL statement the engine sends from now on (as-of sessions included)."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    return seen


def test_as_of_reads_through_relationships(engine: Engine, history: tuple[int, int]) -> None:
    a, b = history
    seen = statements(engine)
    with as_of_session(engine, a) as s:
        assert s.info["rowver_version"] == a
        ann = s.get(Customer, 1)
        assert (ann.name, ann.region.name) == ("Ann", "north")           # many-to-one, lazy
        assert [o.item for o in ann.orders] == ["pen", "ink"]           # one-to-many, lazy
        assert s.scalars(select(Order).where(Order.id == 2)).one().customer is ann
        assert s.scalars(select(Customer)).all() == [ann]               # Bob came later
        # criteria cannot reach a state that is not the one as of a
        assert s.scalars(select(Customer).where(Customer.name == "Anna")).all() == []
        assert s.get(Memo, 1).body == "after"                           # unversioned: as it is
    reads = [q for q in seen if "customers" in q or "orders" in q or "regions" in q]
    assert reads and all("__as_of(" in q for q in reads)

    with as_of_session(engine, b) as s:
        assert s.scalars(select(Customer).where(Customer.name == "Ann")).all() == []
        customers = s.scalars(select(Customer).order_by(Customer.id)
                              .options(selectinload(Customer.orders), joinedload(Customer.region))).all()
        assert [(c.name, c.region and c.region.name, [o.item for o in c.orders]) for c in customers] == [
            ("Anna", "south", ["pen", "cap"]), ("Bob", None, ["hat"])]
        orders = s.scalars(select(Order).order_by(Order.id).options(joinedload(Order.customer))).all()
        assert [(o.item, o.customer.name) for o in orders] == [("pen", "Anna"), ("cap", "Anna"), ("hat", "Bob")]


def test_eager_loads_and_joins_read_as_of_too(engine: Engine, history: tuple[int, int]) -> None:
    a, _ = history
    with as_of_session(engine, a) as s:
        ann = s.scalars(select(Customer).options(joinedload(Customer.orders), joinedload(Customer.region))
                        ).unique().one()
        assert [o.item for o in ann.orders] == ["pen", "ink"] and ann.region.name == "north"
        # relationship joins and filters on the joined table: ink exists as of a, cap does not
        names = s.scalars(select(Customer.name).join(Customer.orders).where(Order.item == "ink")).all()
        assert names == ["Ann"]
        assert s.scalars(select(Customer.name).join(Customer.orders).where(Order.item == "cap")).all() == []
        joined = s.execute(select(Order.item, Region.name).join(Order.customer).join(Customer.region)
                           .order_by(Order.id)).all()
        assert joined == [("pen", "north"), ("ink", "north")]
        ids = s.scalars(select(Order.id).where(Order.customer_id.in_(
            select(Customer.id).where(Customer.name == "Ann"))).order_by(Order.id)).all()
        assert ids == [1, 2]  # a subquery reads as of a as well


def test_refs_are_resolved_once_and_checked(engine: Engine, conn: psycopg.Connection,
                                            history: tuple[int, int]) -> None:
    a, b = history
    conn.execute("select rowver.tag('before-rename', %s)", (str(a),))
    with as_of_session(engine, "before-rename") as s:
        assert s.info["rowver_version"] == a
        assert s.get(Customer, 1).name == "Ann"
    with Session(engine) as outer, as_of_session(outer, "head") as s:
        assert s.info["rowver_version"] >= b
        assert s.get(Customer, 1).name == "Anna"
    with engine.connect() as c, as_of_session(c, b) as s:
        assert s.get(Customer, 2).name == "Bob"
    with pytest.raises(rowver.InvalidInputError, match="above head"):
        as_of_session(engine, b + 1000)
    with pytest.raises(rowver.InvalidInputError, match="unknown ref"):
        as_of_session(engine, "no-such-tag")


def test_writes_are_refused_in_an_as_of_session(engine: Engine, conn: psycopg.Connection,
                                                history: tuple[int, int]) -> None:
    a, _ = history
    versions = conn.execute("select count(*) from rowver.changeset").fetchone()[0]
    with as_of_session(engine, a) as s:
        s.get(Customer, 1).name = "Zed"
        with pytest.raises(AsOfWriteError, match=f"as of version {a}"):
            s.flush()
        s.rollback()
        s.add(Customer(id=9, name="Zed"))
        with pytest.raises(AsOfWriteError):
            s.commit()
        s.rollback()
        with pytest.raises(AsOfWriteError):
            s.execute(update(Customer).where(Customer.id == 1).values(name="Zed"))
        s.rollback()
        with pytest.raises(DBAPIError, match="read-only transaction"):
            s.execute(text("update customers set name = 'Zed'"))  # the database refuses too
    assert conn.execute("select name from customers where id = 1").fetchone() == ("Anna",)
    assert conn.execute("select count(*) from rowver.changeset").fetchone()[0] == versions
    # the engine, and the pooled connection the as-of session used, write as before
    single = create_engine(engine.url, pool_size=1, max_overflow=0)
    try:
        with as_of_session(single, a) as s:
            assert s.get(Customer, 1).name == "Ann"
        with Session(single) as s, s.begin():
            s.get(Customer, 1).name = "Ann"
    finally:
        single.dispose()
    assert conn.execute("select name from customers where id = 1").fetchone() == ("Ann",)


def test_orm_writes_are_versions_with_author_and_message(engine: Engine, conn: psycopg.Connection) -> None:
    with Session(engine) as s:
        changeset_info(s, message="first customers", author="crm-sync")
        with s.begin():
            s.add(Customer(id=1, name="Ann", orders=[Order(id=1, item="pen")]))
        with s.begin():  # the same info, a new transaction: a second version
            s.get(Customer, 1).name = "Anna"
        with s.begin():
            s.get(Customer, 1)  # the transaction has begun, with the first message set
            changeset_info(s, message="late message", author="crm-sync")
            s.add(Order(id=2, customer_id=1, item="ink"))
        changeset_info(s)
        with s.begin():
            s.delete(s.get(Order, 1))
    log = conn.execute("select version, author, message, tables from rowver.log(4) order by version").fetchall()
    assert [(au, m, sorted(t)) for _, au, m, t in log] == [
        ("crm-sync", "first customers", ["public.customers", "public.orders"]),
        ("crm-sync", "first customers", ["public.customers"]),
        ("crm-sync", "late message", ["public.orders"]),
        (None, None, ["public.orders"]),
    ]
    first, renamed = log[0][0], log[1][0]
    head(conn)
    with as_of_session(engine, first) as s:
        assert s.get(Customer, 1).name == "Ann"
    assert conn.execute("select rv_version from customers").fetchone() == (renamed,)
    # transaction-local: nothing leaks into the pooled connection's session
    with engine.connect() as c:
        assert c.scalar(text("select current_setting('rowver.message', true)")) in (None, "")


def test_versioned_mixin_reads_rv_version_back(engine: Engine, conn: psycopg.Connection) -> None:
    # create_all left rv_version out (enable refuses a table that has one): enable added it last
    assert conn.execute("select attname from pg_attribute where attrelid = 'notes'::regclass "
                        "and attnum > 0 order by attnum desc limit 1").fetchone() == ("rv_version",)
    with Session(engine) as s:
        note = Note(id=1, body="draft")
        cust = Customer(id=1, name="Ann")
        with s.begin():
            s.add_all([note, cust])
            s.flush()
            created = s.scalar(text("select currval('rowver.version_seq')"))
            # INSERT ... RETURNING brings the stamped version back
            assert note.rv_version == cust.rv_version == created
        with s.begin():
            note.body, cust.name = "final", "Anna"
            s.flush()
            assert "rv_version" in note.__dict__  # eager_defaults: UPDATE ... RETURNING
            updated = note.rv_version
            assert updated > created
        with s.begin():
            assert cust.rv_version == updated  # expired at commit, reloaded on access
            note.body = "final"  # unchanged: no UPDATE at all
            cust.name = "Anna"
        with s.begin():
            # a no-op UPDATE that does reach the database keeps its row count and version
            s.execute(update(Note).where(Note.id == 1).values(body="final"))
            s.refresh(note)
            assert note.rv_version == updated
    assert conn.execute("select rv_version from notes").fetchone() == (updated,)
    assert conn.execute("select count(*) from notes__history").fetchone() == (1,)
