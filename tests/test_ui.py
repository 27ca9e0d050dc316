"""rowver ui: a real server process (`rowver ui`, uvicorn) over a real database, read by
headless Chromium the way a person clicks through it, and by its JSON twins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgserver import free_port

import rowver
from rowver.ui import _web

ROWVER = str(Path(sys.executable).parent / "rowver")


# -- a server, a client ---------------------------------------------------------------------


class Ui:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path + ("&" if "?" in path else "?") + "format=json")
        assert status == 200, body
        return json.loads(body)


@pytest.fixture
def start_ui(db_url: str) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*options: str) -> Ui:
        port = free_port()
        proc = subprocess.Popen([ROWVER, "ui", "--url", db_url, "--port", str(port), *options],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        ui = Ui(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"rowver ui exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                ui.get("/static/rowver.css")
                return ui
            except OSError:
                time.sleep(0.2)
        raise AssertionError("rowver ui did not answer within 60 s")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def demo_db(db_url: str) -> str:
    """The demo's shop (customers, orders, a price model), plus a model whose versions differ in
    params and log a loss curve, for the compare page."""
    done = subprocess.run([ROWVER, "demo", "--url", db_url], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with rowver.connect(db_url) as db:
        for version, lr in enumerate([0.1, 0.01, 0.01], start=1):
            db.models.save("churn", params={"lr": lr, "depth": 4 if version < 3 else 6},
                           metrics={"auc": 0.8 + version / 100, "loss": [1.0 / (step + version) for step in range(20)]},
                           weights={"w": np.full(8, version, dtype=np.float32)}, data_version="head")
        db.models.alias("churn", "production", 1)
        db.models.alias("churn", "production", 2)
        db.models.rollback("churn", "production")
    return db_url


# -- JSON twins and what every page promises --------------------------------------------------


def test_json_twins_say_what_the_pages_show(demo_db: str, start_ui: Any) -> None:
    ui = start_ui()
    with rowver.connect(demo_db) as db:
        head = db.head()
        customers_first = int(db.scalar("select enabled_version from rowver.versioned"
                                        " where relid = 'rowver_demo.customers'::regclass"))
    home = ui.json("/")
    assert home["head"] == head
    assert {"rowver_demo.customers", "rowver_demo.orders"} <= {t["table_name"] for t in home["tables"]}
    assert home["changesets"][0]["version"] == head and len(home["tags"]) >= 1

    # head: the page says which version it showed, and is not cached; a number is cached forever
    page = ui.json("/table?t=rowver_demo.customers")
    assert page["version"] == head and page["ref"] == "head"
    grace = next(r for r in page["rows"] if r[0] == 3)
    assert grace[page["columns"].index("city")] == "Lisbon"
    status, headers, _ = ui.get("/table?t=rowver_demo.customers")
    assert status == 200 and headers["cache-control"] == "no-cache"
    status, headers, _ = ui.get(f"/table?t=rowver_demo.customers&at={customers_first}")
    assert "immutable" in headers["cache-control"]
    old = ui.json(f"/table?t=rowver_demo.customers&at={customers_first}")
    assert next(r for r in old["rows"] if r[0] == 3)[old["columns"].index("city")] == "Porto"

    diff = ui.json(f"/diff?t=rowver_demo.customers&a={customers_first}&b=head")
    assert diff["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert diff["rows"][0]["changed"] == ["city"] and diff["columns"] == ["id", "city"]  # only differences
    assert "name" in ui.json(f"/diff?t=rowver_demo.customers&a={customers_first}&b=head&all=1")["columns"]

    history = ui.json("/history?t=rowver_demo.customers&key=3")
    assert [v["values"]["city"] for v in history["versions"]] == ["Porto", "Lisbon"]
    assert history["versions"][1]["changed"] == ["city"]

    changeset = ui.json(f"/changeset/{history['versions'][1]['rv_version']}")
    assert "Lisbon" in changeset["message"]
    assert {t["table"] for t in changeset["tables"]} == {"rowver_demo.customers", "rowver_demo.orders"}

    model = ui.json("/models/churn")
    assert [v["version"] for v in model["versions"]] == [1, 2, 3]
    loss = model["versions"][0]["metrics"]["loss"]
    assert (loss["last"], loss["min"], loss["max"], loss["steps"]) == (1 / 20, 1 / 20, 1.0, 20)
    moves = [(e["alias"], e["model_version"], e["rv_until"] is None) for e in model["alias_log"]]
    assert moves == [("production", 1, False), ("production", 2, False), ("production", 1, True)]

    compare = ui.json("/models/churn/compare?v=1&v=2&v=3")
    assert [p["name"] for p in compare["params"]] == ["depth", "lr"]  # only the params that differ
    assert compare["tensors"][0]["changed"][0]["tensor"] == "w"


def test_table_pages_by_key_filter_and_choose_columns(db_url: str, conn: psycopg.Connection, start_ui: Any) -> None:
    conn.execute("create table items (id int primary key, name text, price numeric)")
    conn.execute("insert into items select i, 'item ' || i, i * 1.5 from generate_series(1, 120) i")
    with rowver.connect(db_url) as db:
        db.enable("items")
    ui = start_ui()
    first = ui.json("/table?t=items")
    assert [r[0] for r in first["rows"]] == list(range(1, 51)) and first["next_after"] == [50]
    second = ui.json("/table?t=items&after=" + urllib.parse.quote(json.dumps(first["next_after"])))
    assert [r[0] for r in second["rows"]] == list(range(51, 101))
    third = ui.json("/table?t=items&after=" + urllib.parse.quote(json.dumps(second["next_after"])))
    assert [r[0] for r in third["rows"]] == list(range(101, 121)) and third["next_after"] is None

    some = ui.json("/table?t=items&fcol=price&fop=%3E%3D&fval=170&cols=price")
    assert some["columns"] == ["id", "price"] and [r[0] for r in some["rows"]] == [114, 115, 116, 117, 118, 119, 120]
    assert [r[0] for r in ui.json("/table?t=items&fcol=name&fop=contains&fval=M+11")["rows"]] == \
        [11, *range(110, 120)]

    # a hostile value is a value: bound, never SQL
    status, _, body = ui.get("/table?t=items&fcol=name&fop=%3D&fval=" + urllib.parse.quote("x'; drop table items; --"))
    assert status == 200 and "no rows" in body
    status, _, body = ui.get("/table?t=items&fcol=price&fop=%3D&fval=" + urllib.parse.quote("1; drop table items"))
    assert status == 400 and "price" in body
    status, _, body = ui.get("/table?t=items&fcol=price&fop=" + urllib.parse.quote("; drop") + "&fval=1")
    assert status == 400 and "unknown filter operator" in body
    assert conn.execute("select count(*) from items").fetchone() == (120,)


def test_a_diff_that_would_take_seconds_asks_first(db_url: str, conn: psycopg.Connection, start_ui: Any) -> None:
    conn.execute("create table wide (id int primary key, v int)")
    conn.execute("insert into wide select g, 0 from generate_series(1, 25000) g")
    with rowver.connect(db_url) as db:
        db.enable("wide")
        before = db.head()
        conn.execute("update wide set v = 1")
        after = db.head()
    ui = start_ui()
    asked = ui.json(f"/diff?t=wide&a={before}&b=head")
    assert (asked["row_changes"], asked["counts"], asked["rows"], asked["versions"]) == (25000, None, [], [before, after])
    status, _, body = ui.get(f"/diff?t=wide&a={before}&b=head")
    assert status == 200 and "compute it anyway" in body
    full = ui.json(f"/diff?t=wide&a={before}&b=head&full=1")
    assert full["counts"] == {"added": 0, "removed": 0, "changed": 25000} and len(full["rows"]) == 200


def test_a_stage_waits_on_the_home_page_and_shows_what_publishing_would_do(db_url: str, conn: psycopg.Connection,
                                                                          start_ui: Any) -> None:
    conn.execute("create table items (id int primary key, price int)")
    conn.execute("insert into items select g, g from generate_series(1, 5) g")
    with rowver.connect(db_url) as db:
        db.enable("items")
        with db.changeset(message="nightly prices") as cs:
            cs.sync("items", [{"id": 1, "price": 10}, {"id": 2, "price": 2}, {"id": 6, "price": 6}], stage="nightly")
        head = db.head()
    ui = start_ui()
    [stage] = ui.json("/")["stages"]
    assert (stage["name"], stage["table"], stage["inserted"], stage["updated"], stage["deleted"]) == \
        ("nightly", "items", 1, 1, 3)
    page = ui.json("/diff?t=items&staged=nightly")
    assert page["counts"] == {"added": 1, "removed": 3, "changed": 1} and page["versions"] == [head, head]
    changed = next(r for r in page["rows"] if r["op"] == "changed")
    assert (changed["key"], changed["old"]["price"], changed["new"]["price"]) == ({"id": 1}, 1, 10)
    status, headers, body = ui.get("/diff?t=items&staged=nightly")
    assert status == 200 and "rowver publish nightly" in body and headers["cache-control"] == "no-cache"
    assert ui.get("/diff?t=items&staged=nope")[0] in (400, 404)
    assert conn.execute("select count(*) from items").fetchone() == (5,)  # nothing of it written


def test_bad_input_is_a_clear_page_with_the_right_status(db_url: str, conn: psycopg.Connection,
                                                         start_ui: Any) -> None:
    conn.execute('create table "Odd ""Name"" é" ("Kéy" int primary key, "select" text)')
    conn.execute('insert into "Odd ""Name"" é" values (1, \'<script>alert(1)</script>\')')
    with rowver.connect(db_url) as db:
        db.enable('"Odd ""Name"" é"')
        first = db.head()
    ui = start_ui()
    odd = urllib.parse.quote('"Odd ""Name"" é"')
    status, _, body = ui.get(f"/table?t={odd}")
    assert status == 200 and "&lt;script&gt;" in body and "<script>" not in body
    assert ui.json(f"/history?t={odd}&key=1")["versions"][0]["values"]["select"] == "<script>alert(1)</script>"

    cases = [
        ("/table?t=no_such_table", 404, "no_such_table"),
        ("/table?t=items%3B%20drop", 400, "invalid name"),
        (f"/table?t={odd}&at={first + 1000}", 400, "above head"),
        (f"/table?t={odd}&at=no-such-tag", 400, "no-such-tag"),
        (f"/diff?t={odd}&a=0", 400, str(first)),  # before the table's first version: names it
        (f"/history?t={odd}&key=abc", 400, "Kéy"),
        ("/changeset/999999", 404, "no changeset"),
        ("/models/nope", 404, "nope"),
        ("/models/nope/compare?v=1", 400, "two or more"),
        ("/models/nope/compare?v=1&v=2", 404, "no model version"),
        ("/models/nope/3", 404, "no model version nope/3"),
        ("/table", 400, "needs t"),
        ("/nowhere", 404, "no page"),
    ]
    for path, code, words in cases:
        status, _, body = ui.get(path)
        assert status == code, (path, status, body)
        assert words in body and "Traceback" not in body, (path, body)
        status, _, body = ui.get(path + ("&" if "?" in path else "?") + "format=json")
        assert status == code and json.loads(body)["status"] == code, (path, body)


def test_a_token_guards_every_page(demo_db: str, start_ui: Any) -> None:
    ui = start_ui("--token", "s3cret")
    assert ui.get("/")[0] == 401
    assert ui.get("/?token=wrong")[0] == 401
    status, headers, _ = ui.get("/?token=s3cret")
    assert status == 200 and "rowver_token=s3cret" in headers["set-cookie"]
    assert ui.get("/models", {"Cookie": "rowver_token=s3cret"})[0] == 200
    assert ui.get("/models", {"Authorization": "Bearer s3cret"})[0] == 200


def test_a_select_only_role_sees_every_page(demo_db: str, conn: psycopg.Connection) -> None:
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from rowver.ui import _timing

    role = f"rv_viewer_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:  # README's recipe: usage on the schema, select on its tables
        conn.execute(sql.SQL("grant usage on schema rowver_demo to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on all tables in schema rowver_demo to {}").format(sql.Identifier(role)))
        # history takes the new grants at refresh
        conn.execute("select rowver.refresh('rowver_demo.customers'), rowver.refresh('rowver_demo.orders')")
        pages = {"home": "/", "table": "/table?t=rowver_demo.orders&at=2", "diff": "/diff?t=rowver_demo.orders&a=1",
                 "history": "/history?t=rowver_demo.customers&key=3", "changeset": "/changeset/2",
                 "models": "/models", "model": "/models/churn", "version": "/models/churn/2",
                 "compare": "/models/churn/compare?v=1&v=3"}
        times = _timing.page_times(make_conninfo(demo_db, user=role), pages, reps=1)  # (raises unless 200)
        assert set(times) == set(pages)
    finally:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_connections_cannot_write(db_url: str) -> None:
    pool = _web.Pool(db_url)
    with pool.database() as db:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("create table written (id int)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("select rowver.publish_head()")
    pool.close()


# -- in a browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("ROWVER_REQUIRE_BROWSER"):
            pytest.fail("headless Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    yield chrome
    chrome.quit()


def goes(browser: Any, action: Any) -> None:
    """Click or submit, and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(browser, 20).until(expected_conditions.staleness_of(page))


def test_a_person_clicks_from_home_to_a_changeset(demo_db: str, start_ui: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    ui = start_ui()
    with rowver.connect(demo_db) as db:
        head = db.head()
        first = int(db.scalar("select enabled_version from rowver.versioned where relid = 'rowver_demo.customers'::regclass"))
    browser.get(ui.base + "/")
    assert browser.find_element(By.ID, "head").text == str(head)
    goes(browser, browser.find_element(By.ID, "tables").find_element(By.LINK_TEXT, "rowver_demo.customers").click)

    # the table as of head: the page says the version, Grace lives in Lisbon
    assert browser.find_element(By.ID, "version").text == str(head)
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#rows tr")[1:]]
    assert ["3", "Grace Hopper", "grace@example.com", "Lisbon"] == cells[2][:4]

    # the ref box takes a version: as of the first version, Porto
    box = browser.find_element(By.NAME, "at")
    box.clear()
    box.send_keys(str(first))
    goes(browser, box.submit)
    assert browser.find_element(By.ID, "version").text == str(first)
    assert "Porto" in browser.find_element(By.ID, "rows").text

    # diff first -> head: the changed cell highlighted old -> new
    form = browser.find_element(By.ID, "diff-form")
    to = form.find_element(By.NAME, "b")
    to.clear()
    to.send_keys("head")
    goes(browser, form.submit)
    assert "0 added" in browser.find_element(By.ID, "counts").text
    changed = browser.find_element(By.CSS_SELECTOR, "#diff td.changed")
    assert (changed.find_element(By.CLASS_NAME, "old").text, changed.find_element(By.CLASS_NAME, "new").text) == \
        ("Porto", "Lisbon")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#diff th")]
    assert "name" not in headers and "city" in headers  # only differences, by default

    # the key's history: two versions, the city highlighted in the second
    goes(browser, browser.find_element(By.CSS_SELECTOR, "#diff a.history").click)
    assert "id = 3" in browser.find_element(By.TAG_NAME, "h1").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#history tr")[1:]
    assert len(rows) == 2
    assert [td.text for td in rows[1].find_elements(By.CSS_SELECTOR, "td.changed")] == ["Lisbon"]

    # the changeset that moved her, and the diff it made
    moved = rows[1].find_element(By.TAG_NAME, "a")
    version = moved.text
    goes(browser, moved.click)
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Changeset {version}"
    assert "Lisbon" in browser.find_element(By.ID, "changeset").text
    link = browser.find_element(By.CSS_SELECTOR, "#touched a.diff")
    assert f"a={int(version) - 1}" in link.get_attribute("href") and f"b={version}" in link.get_attribute("href")
    goes(browser, link.click)
    title = browser.find_element(By.TAG_NAME, "h1").text
    assert title.endswith(f": version {int(version) - 1} → {version}") and title.startswith("rowver_demo.")


def test_a_person_compares_model_versions(demo_db: str, start_ui: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    ui = start_ui()
    browser.get(ui.base + "/models")
    goes(browser, browser.find_element(By.LINK_TEXT, "churn").click)
    moves = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#aliases li")]
    assert len(moves) == 3 and "production → churn/2" in moves[1]
    assert "rollback" in moves[2] and moves[2].endswith("now") and "now" not in moves[0]
    for box in browser.find_elements(By.CSS_SELECTOR, "#versions input[name=v]")[:3]:
        box.click()
    goes(browser, browser.find_element(By.ID, "compare-form").submit)

    params = [[c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
              for tr in browser.find_elements(By.CSS_SELECTOR, "#params tr")]
    assert params == [["param", "v1", "v2", "v3"], ["depth", "4", "4", "6"], ["lr", "0.1", "0.01", "0.01"]]
    # the loss curves of the three versions overlaid in one chart
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 1 and len(charts[0].find_elements(By.TAG_NAME, "polyline")) == 3
    assert "w: changed" in browser.find_element(By.CSS_SELECTOR, "ul.tensors").text
    goes(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "show every param").click)
    assert "depth" in browser.find_element(By.ID, "params").text

    # lineage: the version page links to every table as of its data version
    browser.get(ui.base + "/models/churn/1")
    data_version = browser.find_element(By.CSS_SELECTOR, "#lineage strong").text
    goes(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "rowver_demo.orders as of").click)
    assert browser.find_element(By.ID, "version").text == data_version
