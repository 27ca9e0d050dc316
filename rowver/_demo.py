"""``rowver demo``: a small shop, versioned, changed, read back and repaired, narrated.

The demo owns the schema ``rowver_demo``. Every run replaces it (versioning of its
tables is disabled first, so rowver's catalog keeps no entry for a dropped table) and
leaves it in place afterwards, so that the commands it suggests have data to read.
Everything goes through the library, as a Python user would write it.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import _output, _sql
from .errors import PromotionRefusedError

if TYPE_CHECKING:
    from rich.console import Console

    from ._database import Database
    from .models import ModelVersion

SCHEMA = "rowver_demo"
CUSTOMERS = "rowver_demo.customers"
ORDERS = "rowver_demo.orders"
AUTHOR = "rowver demo"
MODEL = "demo-prices"

_CUSTOMERS = [
    (1, "Ada Lovelace", "London"), (2, "Alan Turing", "Manchester"), (3, "Grace Hopper", "Porto"),
    (4, "Edsger Dijkstra", "Eindhoven"), (5, "Barbara Liskov", "Boston"), (6, "Donald Knuth", "Stanford"),
    (7, "Frances Allen", "Albany"), (8, "John Backus", "Santa Fe"), (9, "Margaret Hamilton", "Paoli"),
    (10, "Niklaus Wirth", "Zurich"), (11, "Radia Perlman", "Seattle"), (12, "Ken Thompson", "Berkeley"),
]
_PRODUCTS = [
    ("Espresso beans 1 kg", Decimal("18.50")), ("Pour-over kettle", Decimal("42.00")),
    ("Ceramic dripper", Decimal("24.90")), ("Paper filters x100", Decimal("6.40")),
    ("Burr grinder", Decimal("129.00")), ("Milk jug", Decimal("15.75")),
]
_BAD_PRODUCT = "Ceramic dripper"  # the price feed sends it in cents
_MOVER = 3                        # Grace Hopper moves from Porto to Lisbon
_CORRECTED = 8                    # an order for 3 drippers, entered as 1
_CANCELLED = 12


class Order(NamedTuple):
    id: int
    customer_id: int
    product: str
    qty: int
    unit_price: Decimal
    ordered_at: dt.datetime


def _orders() -> list[Order]:
    start = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(1, 37):
        product, price = _PRODUCTS[i % len(_PRODUCTS)]
        customer = _CUSTOMERS[(i * 7) % len(_CUSTOMERS)][0]
        rows.append(Order(i, customer, product, 1 + (i * 5) % 3, price, start + dt.timedelta(hours=17 * i)))
    return rows


def run(db: Database, *, url: str | None = None) -> None:
    out = _output.console()
    began = time.perf_counter()
    out.print(f"[bold]rowver demo[/bold]: a small shop, versioned inside PostgreSQL "
              f"{db.scalar('show server_version').split()[0]}")

    with _output.progress("creating the shop"):
        if db.catalog_version() is None:
            db.init()
        with _sql.transaction(db.conn):  # a failure leaves the previous demo as it was
            _reset(db)
            _create(db)
            enabled = db.enable(CUSTOMERS)
            db.enable(ORDERS)
    _say(out, 1, "A shop with data.",
         f"{CUSTOMERS} has {len(_CUSTOMERS)} rows and {ORDERS} {len(_orders())}; every order "
         "references its customer with a foreign key.")
    _say(out, 2, "Versioning on.",
         f"`rowver enable` made the existing rows of both tables version {enabled}. The tables keep "
         "their names, keys, foreign key and writers; they gained a trailing rv_version column.")

    mover = _CUSTOMERS[_MOVER - 1]
    with _output.progress("changing rows"):
        with db.changeset(message=f"{mover[1]} moved to Lisbon; order {_CORRECTED} was for 3, not 1",
                          author=AUTHOR) as cs:
            cs.upsert(CUSTOMERS, [{"id": _MOVER, "city": "Lisbon"}])
            moved = cs.upsert(ORDERS, [{"id": _CORRECTED, "qty": 3}])
        with db.changeset(message=f"order {_CANCELLED} cancelled", author=AUTHOR) as cs:
            deleted = cs.delete(ORDERS, [{"id": _CANCELLED}])
    _say(out, 3, "An update.",
         f"One changeset changed both tables, so both changes are version {moved.version}: "
         f"{mover[1]} moved from {mover[2]} to Lisbon and order {_CORRECTED} got its right quantity.")
    _say(out, 4, "A delete.",
         f"Order {_CANCELLED} was cancelled in version {deleted.version}. The row is gone from the "
         f"table, and still readable as of version {moved.version}.")

    tag = "demo-good"
    if tag in set(db.tags().name):
        db.untag(tag)  # left by an earlier run
    good = db.tag(tag, str(deleted.version))
    _say(out, 5, "A tag.", f"Someone checked the data and tagged version {good} as {tag}.")

    feed = [{"id": o.id, "unit_price": o.unit_price * (100 if o.product == _BAD_PRODUCT else 1)}
            for o in _orders() if o.id != _CANCELLED]
    with _output.progress("loading the price feed"), \
            db.changeset(message="nightly price feed", author="price-feed") as cs:
        bad = cs.upsert(ORDERS, feed)
    assert bad.version is not None, "the price feed changed nothing"
    _say(out, 6, "A bad load.",
         f"The nightly price feed sent all {len(feed)} prices, with the {_BAD_PRODUCT.lower()} in "
         f"cents. Version {bad.version} updated {bad.updated} orders; the {bad.unchanged} unchanged "
         "rows made no history at all.")

    customer = next(o.customer_id for o in _orders() if o.id == _CORRECTED)
    then = db.as_of(ORDERS, tag)
    now = db.as_of(ORDERS, "head")
    city_then = db.as_of(CUSTOMERS, enabled).set_index("id").loc[_MOVER, "city"]
    _say(out, 7, "Reading the past.",
         f"As of version {enabled}, {mover[1]} lived in {city_then}. "
         f"Customer {customer}'s orders as of {tag}, and now:")
    shown = ["id", "product", "qty", "unit_price", "rv_version"]
    for frame, title in ((then, f"as of {tag}"), (now, "now (head)")):
        picked = frame.loc[frame["customer_id"] == customer, shown]
        out.print()
        out.print(_output.to_table(*_output.frame_rows(picked), title=title, width=out.width))

    _say(out, 8, "What changed.", f"`rowver diff {ORDERS} {tag} head`:")
    changes = _output.diff_records(db.diff(ORDERS, tag, "head"))
    counts = _output.diff_counts(changes)
    out.print(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")
    out.print(_output.diff_table(changes))

    with _output.progress("reverting the bad load"):
        fixed = db.revert(ORDERS, tag, message="undo the bad price feed", author=AUTHOR)
    left = db.diff(ORDERS, tag, "head")
    bad_price = db.as_of(ORDERS, bad.version).set_index("id").loc[_CORRECTED, "unit_price"]
    _say(out, 9, "The repair.",
         f"`rowver revert {ORDERS} --to {tag}` restored {fixed.updated} orders as version "
         f"{fixed.version}; {ORDERS} now differs from {tag} in {len(left)} rows. Nothing was "
         f"erased: as of version {bad.version}, order {_CORRECTED} still costs {bad_price}.")

    model, retrain = _models(db, tag, bad.version)
    _say(out, 10, "A model, tied to its data.",
         f"A price model trained on {tag} was saved as {model.ref}: its params, metric and weights are "
         f"rows, and production points at it. A nightly retrain on the bad load (version {bad.version}) "
         f"became {retrain.ref} with a mean error of {retrain.metrics['mae']:.2f} against "
         f"{model.metrics['mae']:.2f}, so `promote` refused it: production stays on {model.ref}. "
         f"`rowver show {ORDERS} --at model:{MODEL}@production` reads the rows production was trained on.")

    _say(out, 11, "One row's story.", f"`rowver history {ORDERS} {_CORRECTED}`:")
    story = db.history(ORDERS, _CORRECTED).astype({"rv_until": "Int64"})
    story = story[["rv_version", "rv_until", "author", "message", "qty", "unit_price"]]
    out.print(_output.to_table(*_output.frame_rows(story), width=out.width))

    _say(out, 12, "The log.", "`rowver log`, newest first: saving a model and moving an alias are changesets too.")
    changesets = db.log(limit=10).astype({"rows": "Int64"})
    changesets = changesets.loc[changesets["version"] >= enabled,
                                ["version", "author", "message", "tables", "rows"]]
    out.print(_output.to_table(*_output.frame_rows(changesets), width=out.width))

    url_option = " --url URL" if url else ""
    out.print(f"\nDone in {time.perf_counter() - began:.1f} s. The shop stays in schema {SCHEMA} "
              "(the next `rowver demo` replaces it). Try:")
    for command in (f"rowver show {ORDERS} --at {tag} --where 'customer_id = {customer}'{url_option}",
                    f"rowver diff {ORDERS} {bad.version} head{url_option}",
                    f"rowver history {CUSTOMERS} {_MOVER}{url_option}",
                    f"rowver log --table {ORDERS}{url_option}",
                    f"rowver model show {MODEL}@production{url_option}"):
        out.print(f"  {command}", markup=False)


def _models(db: Database, good: str, bad: int) -> tuple[ModelVersion, ModelVersion]:
    """A model trained on the good data, aliased production, and a retrain on the bad load
    that guarded promotion refuses. The model: each product's mean unit price; its error:
    the mean distance from the list prices."""
    listed = np.array([float(price) for _, price in _PRODUCTS])

    def train(ref: str | int) -> tuple[np.ndarray, float]:
        frame = db.as_of(ORDERS, ref)
        means = frame.assign(price=frame["unit_price"].astype(float)).groupby("product")["price"].mean()
        weights = np.array([means[name] for name, _ in _PRODUCTS])
        return weights, round(float(np.abs(weights - listed).mean()), 4)

    params = {"estimator": "mean unit price", "by": "product"}
    with _output.progress("saving a model"):
        weights, mae = train(good)
        model = db.models.save(MODEL, params=params, metrics={"mae": mae}, weights={"price": weights},
                               data_version=good, alias="production", author=AUTHOR)
        weights, mae = train(bad)
        retrain = db.models.save(MODEL, params=params, metrics={"mae": mae}, weights={"price": weights},
                                 data_version=bad, author="nightly retrain")
        try:
            db.models.promote(MODEL, "production", retrain.version, metric="mae", mode="min",
                              author="nightly retrain")
        except PromotionRefusedError:
            return model, retrain
    raise AssertionError("promote moved production to a model trained on the bad load")


def _say(out: Console, number: int, title: str, text: str) -> None:
    out.print()
    out.print(f"[bold]{number}. {title}[/bold] ", end="")
    out.print(text, markup=False)


def _reset(db: Database) -> None:
    """Drop the previous demo: disable versioning of its tables, then drop the schema."""
    conn = db.conn
    tables = [r[0] for r in conn.execute(
        "select c.oid::regclass::text from pg_catalog.pg_class c"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind in ('r', 'p') order by c.oid desc", (SCHEMA,))]
    if tables:
        versioned = set(db.status()["table_name"])
        for table in tables:
            if table in versioned:
                db.disable(table)
    conn.execute("drop schema if exists rowver_demo cascade")


def _create(db: Database) -> None:
    conn = db.conn
    conn.execute("create schema rowver_demo")
    conn.execute("""
        create table rowver_demo.customers (
          id     integer primary key,
          name   text not null,
          email  text not null unique,
          city   text not null,
          joined date not null)""")
    conn.execute("""
        create table rowver_demo.orders (
          id          integer primary key,
          customer_id integer not null references rowver_demo.customers,
          product     text not null,
          qty         integer not null check (qty > 0),
          unit_price  numeric(10, 2) not null,
          ordered_at  timestamptz not null)""")
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rowver_demo.customers values (%s, %s, %s, %s, %s)",
            [(i, name, name.split()[0].lower() + "@example.com", city, dt.date(2025, i, 1))
             for i, name, city in _CUSTOMERS])
        cur.executemany("insert into rowver_demo.orders values (%s, %s, %s, %s, %s, %s)", _orders())
