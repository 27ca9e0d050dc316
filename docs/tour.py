"""README's CLI tour, from a real run.

    .venv/bin/python docs/tour.py URL

runs `rowver demo` in URL's database, then every `$ rowver …` line of README's tour, and writes
what each printed back into README.md. tests/test_readme.py runs the same commands and fails when
README no longer shows what they print (times aside).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
ROWVER = str(Path(sys.executable).parent / "rowver")
START = "real run after `rowver demo`:\n\n"  # the tour's block follows this line
PROMPT = "    $ "


def block(text: str) -> tuple[int, int]:
    """Where the tour's indented block starts and ends in README's text."""
    start = text.index(START) + len(START)
    end = text.index("\n\n", text.rindex(PROMPT, start, text.index("\n## ", start)))
    return start, end


def commands(text: str) -> list[str]:
    start, end = block(text)
    return [line[len(PROMPT):] for line in text[start:end].splitlines() if line.startswith(PROMPT)]


def run(command: str, url: str) -> list[str]:
    """What one tour command prints, as README shows it: stdout, then stderr, a failure's exit
    status beside its last line; lines without trailing blanks."""
    args = shlex.split(command)
    assert args[0] == "rowver", command
    env = {**os.environ, "ROWVER_URL": url, "COLUMNS": "120", "NO_COLOR": "1"}
    done = subprocess.run([ROWVER, *args[1:]], capture_output=True, text=True, env=env, timeout=120)
    lines = [line.rstrip() for line in (done.stdout + done.stderr).splitlines()]
    if done.returncode:
        lines[-1] += f"          (exit status {done.returncode})"
    return lines


def rendered(url: str, text: str) -> str:
    """The tour's block as a run on ``url`` prints it."""
    out = []
    for command in commands(text):
        out.append(PROMPT + command)
        out.extend("    " + line if line else "" for line in run(command, url))
        out.append("")
    return "\n".join(out).rstrip("\n")


def main(url: str) -> None:
    subprocess.run([ROWVER, "demo", "--url", url], check=True, stdout=subprocess.DEVNULL)
    text = README.read_text()
    start, end = block(text)
    README.write_text(text[:start] + rendered(url, text) + text[end:])


TIMES = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+\d\d:\d\d")

if __name__ == "__main__":
    main(sys.argv[1])
