"""One writer at a time: a project, a run folder, an adapted model, an export, a features file.

The locks are OS file locks, so a crashed or killed holder releases them at once; the lock file
carries the holder's description, which a second writer is shown. A project's lock lives in
the project (`.sslstudio.lock`, left in place). An output's lock lives beside the output
(`.NAME.sslstudio-lock`), so that it can be taken before the output exists, and is removed by
its holder when the work ends. A holder that died leaves its description behind: the next
writer takes the lock over and says whose it was.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from sslstudio.core.outputs import OutputError, check_writable_place

LOCK_FILE = ".sslstudio.lock"
OUTPUT_LOCK_SUFFIX = ".sslstudio-lock"

# Who this process is, in a second writer's message; the command line names its command.
holder_name = "SSL Studio"


class ProjectLocked(Exception):
    """The project is held by someone else; the message says who."""


class OutputLocked(OutputError):
    """Another process is writing this output; the message says who."""


class _Held:
    """An open, OS-locked lock file holding this process's description."""

    REMOVED_ON_RELEASE = False

    def __init__(self, path: Path, handle: int, previous: str):
        self.path = path
        self._handle: int | None = handle
        # A holder that died without letting go; "" when the lock was free and clean.
        self.taken_over_from = previous

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        self._close(remove=self.REMOVED_ON_RELEASE)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _close(self, remove: bool) -> None:
        if self._handle is None:
            return
        try:
            if remove and sys.platform != "win32":
                # Removed while still held: a process waiting on this file finds it gone when it
                # gets the lock, and starts again on a new one (see _take).
                os.unlink(self.path)
            else:
                os.ftruncate(self._handle, 0)
        except OSError:
            pass
        os.close(self._handle)  # closing drops the OS lock
        self._handle = None


def _take(path: Path, holder: str | None) -> tuple[int, str] | None:
    """The locked handle and the description a dead holder left; None when a live one has it."""
    for _ in range(50):
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(handle)
        except OSError:
            os.close(handle)
            return None
        try:
            current = os.stat(path)
            opened = os.fstat(handle)
            same = (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev)
        except FileNotFoundError:
            same = False
        if not same:  # the last holder removed it after we opened it: lock the new one
            os.close(handle)
            continue
        previous = _read(handle)
        info = {"holder": holder or holder_name, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M")}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(info).encode(), 0)
        return handle, _describe_info(previous) if previous else ""
    raise OSError(f"could not take the lock {path}: it keeps being replaced")


class ProjectLock(_Held):
    @classmethod
    def acquire(cls, project_path: Path, holder: str | None = None) -> "ProjectLock":
        path = Path(project_path) / LOCK_FILE
        taken = _take(path, holder)
        if taken is None:
            raise ProjectLocked(f"{Path(project_path).name} is open in {_describe(path)}") from None
        return cls(path, *taken)


class OutputLock(_Held):
    """Held while one process writes `output` (a file or a folder, existing or not)."""

    REMOVED_ON_RELEASE = True

    def __init__(self, path: Path, handle: int, previous: str, made_folders: list[Path]):
        super().__init__(path, handle, previous)
        self._made_folders = made_folders

    @classmethod
    def acquire(cls, output: Path, what: str, holder: str | None = None) -> "OutputLock":
        check_writable_place(output, what)  # its own words for a file in the way, /proc, ...
        path = lock_path_for(output)
        made = _make_parents(path.parent)
        try:
            taken = _take(path, holder)
        except OSError as error:
            _remove_empty(made)
            raise OutputError(f"cannot write {what} {output}: {error.strerror or error}") from None
        if taken is None:
            _remove_empty(made)
            raise OutputLocked(f"{what} {output} is being written by {_describe(path)}; wait for "
                               "it to finish, or choose another name")
        return cls(path, *taken, made)

    def release(self) -> None:
        super().release()
        # Folders made only to hold the lock, now empty because the work failed or was refused.
        _remove_empty(self._made_folders)
        self._made_folders = []

    def note(self, what: str) -> str:
        if not self.taken_over_from:
            return ""
        return f"{what}: took over from {self.taken_over_from}, which stopped without finishing"


def lock_path_for(output: Path) -> Path:
    """One lock per place, however it is spelled (relative, through a link)."""
    output = Path(os.path.abspath(Path(output).expanduser()))
    parent = Path(os.path.realpath(output.parent))
    return parent / f".{output.name}{OUTPUT_LOCK_SUFFIX}"


def _make_parents(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones made, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir()
        except FileExistsError:
            pass
        except OSError as error:
            _remove_empty(missing)
            raise OutputError(f"cannot make the folder {made}: {error.strerror or error}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; rmdir never removes anything inside
        try:
            folder.rmdir()
        except OSError:
            return


def _read(handle: int) -> dict:
    try:
        return json.loads(os.pread(handle, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    return _describe_info(info)


def _describe_info(info: dict) -> str:
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
        # flock locks belong to the open file, so a second writer in the same process is
        # refused too (fcntl's record locks would let it through).
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
