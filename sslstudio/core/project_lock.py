"""One writer per project: a lock held by the window (or program) that has a project open.

A second window on the same project, in this process or another, opens it read-only and is told
who holds it. The lock is an OS file lock, so a crashed or killed holder releases it at once;
the file itself only carries the holder's description and is left in place.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".sslstudio.lock"


class ProjectLocked(Exception):
    """The project is held by someone else; the message says who."""


class ProjectLock:
    def __init__(self, path: Path, handle: int):
        self.path = path
        self._handle: int | None = handle

    @classmethod
    def acquire(cls, project_path: Path, holder: str = "SSL Studio") -> "ProjectLock":
        path = Path(project_path) / LOCK_FILE
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(handle)
        except OSError:
            who = _describe(path)
            os.close(handle)
            raise ProjectLocked(f"{Path(project_path).name} is open in {who}") from None
        info = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M")}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(info).encode(), 0)
        return cls(path, handle)

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            os.ftruncate(self._handle, 0)
        except OSError:
            pass
        os.close(self._handle)  # closing drops the OS lock
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another SSL Studio window or program"
    return (f"{info.get('holder', 'SSL Studio')} (process {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, since {info.get('since', '?')})")


if sys.platform == "win32":
    import msvcrt

    def _lock(handle: int) -> None:
        os.lseek(handle, 0, os.SEEK_SET)
        msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(handle: int) -> None:
        # flock locks belong to the open file, so a second window in the same process is
        # refused too (fcntl's record locks would let it through).
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
