"""Running a command with its stderr on a terminal (a pseudo-terminal), as a person would see
progress bars, while its stdout goes where the test says."""

from __future__ import annotations

import os
import pty
import subprocess
from typing import IO, Any


def stderr_on_terminal(args: list[str],
                       stdout: IO[Any] | int = subprocess.PIPE) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """Run ``args``; return the finished process and every byte it drew on the terminal."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(args, stdout=stdout, stderr=follower, text=True, timeout=300)
    finally:
        os.close(follower)
    drawn = b""
    while True:
        try:
            part = os.read(leader, 1 << 16)
        except OSError:  # (the terminal's other end is gone: all read)
            break
        if not part:
            break
        drawn += part
    os.close(leader)
    return done, drawn
