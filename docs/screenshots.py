"""Screenshots of `rowver ui` for README, from a real `rowver demo` database.

    .venv/bin/python docs/screenshots.py [URL]

Runs `rowver demo` on URL (default: the embedded server), serves `rowver ui` on a free port,
and saves the main pages with headless Chromium (Debian: apt-get install chromium
chromium-driver) to docs/ui/*.png.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

import rowver

OUT = Path(__file__).resolve().parent / "ui"
ROWVER = str(Path(sys.executable).parent / "rowver")


def pages(url: str | None) -> dict[str, str]:
    """The pages to show; the diff is the demo's bad price feed (the version after the tag
    demo-good), the comparison every version of the demo's model."""
    with rowver.connect(url) as db:
        good = db.resolve("demo-good")
        versions = "&".join(f"v={m.version}" for m in db.models.versions("demo-prices"))
    return {
        "home": "/",
        "table": "/table?t=rowver_demo.customers",
        "diff": f"/diff?t=rowver_demo.orders&a={good}&b={good + 1}",
        "history": "/history?t=rowver_demo.customers&key=3",
        "model": "/models/demo-prices",
        "compare": f"/models/demo-prices/compare?{versions}&all=1",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(url: str | None) -> None:
    target = ["--url", url] if url else []
    subprocess.run([ROWVER, "demo", *target], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([ROWVER, "ui", *target, "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/static/rowver.css", timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        options = Options()
        options.binary_location = shutil.which("chromium") or "chromium"
        for arg in ("--headless=new", "--no-sandbox", "--window-size=1200,760", "--hide-scrollbars"):
            options.add_argument(arg)
        browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))
        OUT.mkdir(exist_ok=True)
        for name, path in pages(url).items():
            browser.get(base + path)
            browser.save_screenshot(str(OUT / f"{name}.png"))
            print(f"docs/ui/{name}.png  {path}")
        browser.quit()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
