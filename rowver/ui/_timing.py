"""How long each page takes on the server side: the ASGI app called in this process with
no network between, so the figure is the app's own work (queries and rendering), warm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._web import create_app


async def _get(app: Any, target: str) -> tuple[int, bytes]:
    """One GET through the app, as uvicorn would hand it over."""
    url = urlsplit(target)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": url.path, "raw_path": url.path.encode(), "query_string": url.query.encode(),
             "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 0),
             "server": ("localhost", 80)}
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


def page_times(url: str, pages: Mapping[str, str], *, reps: int = 5,
               say: Callable[[str], None] = lambda _: None) -> dict[str, list[float]]:
    """Milliseconds of each page (name -> path), after one warm-up request; a page that does
    not answer 200 is an error naming it."""
    app = create_app(url)

    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {}
        for name, path in pages.items():
            say(f"ui page {name}")
            status, body = await _get(app, path)
            if status != 200:
                raise RuntimeError(f"ui page {name} ({path}) answered {status}: {body[:300].decode(errors='replace')}")
            times[name] = []
            for _ in range(reps):
                started = time.perf_counter()
                await _get(app, path)
                times[name].append((time.perf_counter() - started) * 1000)
        return times

    try:
        return asyncio.run(run())
    finally:
        app.state.rowver.pool.close()


