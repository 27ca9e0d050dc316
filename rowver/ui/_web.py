"""The ASGI app behind ``rowver ui``: Starlette routes, Jinja2 pages rendered on the server,
a JSON twin of every page (``?format=json``), and connections that cannot write.

Read-only by construction: each connection sets ``default_transaction_read_only`` before
its first query, so every statement of every request runs in a READ ONLY transaction, under
the role the URL logs in as; input (table names, refs, filters) only ever reaches SQL as
bound parameters or through rowver's own quoting."""

from __future__ import annotations

import hmac
import logging
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources

from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg.types.json import set_json_loads
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import _output
from .._database import Database
from ..errors import InvalidInputError, NotVersionedError, PermissionDeniedError, RowverError, ServerError, UnknownTableError
from . import _pages
from ._pages import Page, TableQuery

log = logging.getLogger("rowver.ui")

# -- connections -------------------------------------------------------------------------


class Pool:
    """Connections for the request threads, each made read-only when it is opened; a
    connection is used by one request at a time."""

    def __init__(self, url: str):
        self.url = url
        self._idle: queue.SimpleQueue[Database] = queue.SimpleQueue()

    @contextmanager
    def database(self) -> Iterator[Database]:
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = self._open()
        try:
            yield db
        except BaseException:
            db.close()  # (whatever state it is in, a new one replaces it)
            raise
        self._idle.put(db)

    def _open(self) -> Database:
        db = Database(self.url)
        db.conn.execute("set default_transaction_read_only = on")
        db.conn.execute("set statement_timeout = '60s'")  # a page is never worth more
        db.conn.execute("set jit = off")  # short queries over big tables: compiling costs more than it saves
        set_json_loads(_output.json_loads, db.conn)  # jsonb numbers exactly, as the CLI reads them
        return db

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# -- rendering ---------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("rowver.ui", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["cell"] = _output.cell_text
    env.filters["number"] = lambda n: "" if n is None else f"{n:,}" if isinstance(n, int) else f"{n:.6g}"
    env.globals["url"] = _pages.link
    return env


STATUS = [(UnknownTableError, 404), (NotVersionedError, 404), (_pages.NotFound, 404), (PermissionDeniedError, 403),
          (ServerError, 503), (InvalidInputError, 400)]


def status_of(exc: BaseException) -> int:
    for kind, code in STATUS:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, RowverError):
        # a bad value, a bad ref: the asker's; anything else is the server's
        return 400 if (exc.sqlstate or "")[:2] in ("22", "42", "P0", "") else 500
    return 500


class App:
    """The pages, bound to a pool of connections and an optional token."""

    def __init__(self, url: str, *, token: str | None = None):
        self.pool = Pool(url)
        self.token = token
        self.env = _environment()

    def respond(self, request: Request, build: Callable[[Database], Page]) -> Response:
        if self.token is not None and not self._authorized(request):
            return self._error(request, 401, "this rowver ui needs its token: open it with ?token=…")
        as_json = request.query_params.get("format") == "json"
        try:
            with self.pool.database() as db:
                page = build(db)
            body = _output.json_value(page.data) + "\n" if as_json else \
                self.env.get_template(page.template).render(**page.data, page=page, request=request)
        except Exception as exc:  # every failure is a page, never a traceback
            code = status_of(exc)
            if code == 500:
                log.exception("rowver ui: %s failed", request.url.path)
            return self._error(request, code, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        headers = {"Cache-Control": "public, max-age=31536000, immutable" if page.immutable else "no-cache"}
        response = Response(body, media_type="application/json" if as_json else "text/html", headers=headers)
        if self.token is not None and request.query_params.get("token"):
            response.set_cookie("rowver_token", self.token, httponly=True, samesite="strict")
        return response

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        offered = (request.query_params.get("token") or request.cookies.get("rowver_token")
                   or request.headers.get("authorization", "").removeprefix("Bearer "))
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _error(self, request: Request, code: int, message: str) -> Response:
        if request.query_params.get("format") == "json":
            return Response(_output.json_value({"error": message, "status": code}) + "\n",
                            status_code=code, media_type="application/json")
        html = self.env.get_template("error.html").render(code=code, message=message, request=request)
        return HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-cache"})

    # -- routes -------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        return self.respond(request, _pages.home)

    def table(self, request: Request) -> Response:
        q = request.query_params
        return self.respond(request, lambda db: _pages.table(db, TableQuery(
            table=_required(q.get("t"), "t (the table)"), at=q.get("at") or "head",
            columns=q.getlist("cols") or None, filter=_filter(q.get("fcol"), q.get("fop"), q.get("fval")),
            after=_pages.parse_after(q.get("after")))))

    def diff(self, request: Request) -> Response:
        q = request.query_params
        return self.respond(request, lambda db: _pages.diff(
            db, _required(q.get("t"), "t (the table)"), q.get("a") or None, q.get("b") or None,
            all_columns=q.get("all") == "1", full=q.get("full") == "1", staged=q.get("staged") or None))

    def history(self, request: Request) -> Response:
        q = request.query_params
        return self.respond(request, lambda db: _pages.history(
            db, _required(q.get("t"), "t (the table)"), _required(q.get("key"), "key"), everything=q.get("all") == "1"))

    def changeset(self, request: Request) -> Response:
        return self.respond(request, lambda db: _pages.changeset(db, request.path_params["version"]))

    def models(self, request: Request) -> Response:
        return self.respond(request, _pages.models)

    def model(self, request: Request) -> Response:
        return self.respond(request, lambda db: _pages.model(db, request.path_params["name"]))

    def model_version(self, request: Request) -> Response:
        p = request.path_params
        return self.respond(request, lambda db: _pages.model_version(db, p["name"], p["version"]))

    def compare(self, request: Request) -> Response:
        q = request.query_params
        return self.respond(request, lambda db: _pages.compare(
            db, request.path_params["name"], [_whole(v, "v") for v in q.getlist("v")], all_params=q.get("all") == "1"))

    def not_found(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 404, f"no page at {request.url.path}")


def _required(value: str | None, what: str) -> str:
    if not value or not value.strip():
        raise InvalidInputError(f"this page needs {what}")
    return value


def _whole(value: str, what: str) -> int:
    if not value.strip().isdigit():
        raise InvalidInputError(f"{what} must be a version number, not {value!r}")
    return int(value)


def _filter(column: str | None, op: str | None, value: str | None) -> tuple[str, str, str] | None:
    """The page's one filter; an empty column means none."""
    if not column:
        return None
    return (column, op or "=", value or "")


def create_app(url: str, *, token: str | None = None) -> Starlette:
    """The ASGI app for a database URL (already resolved: the embedded server started)."""
    app = App(url, token=token)
    static = StaticFiles(directory=str(resources.files("rowver.ui") / "static"))
    routes = [
        Route("/", app.home), Route("/table", app.table), Route("/diff", app.diff), Route("/history", app.history),
        Route("/changeset/{version:int}", app.changeset), Route("/models", app.models),
        Route("/models/{name}", app.model), Route("/models/{name}/compare", app.compare),
        Route("/models/{name}/{version:int}", app.model_version), Mount("/static", static, name="static"),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        app.pool.close()

    starlette = Starlette(routes=routes, exception_handlers={404: app.not_found}, lifespan=lifespan)
    starlette.state.rowver = app  # (its pool, for callers that run the app without a server)
    return starlette


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve the UI with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(url, token=token), host=host, port=port, log_level="warning")
