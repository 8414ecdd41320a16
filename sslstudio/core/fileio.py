"""Writes that never leave a half-written file behind: a crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes files only the owner can read; the files we write are ordinary documents.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_with(path: Path, write) -> None:
    """`write(handle)` fills a temporary file beside `path`, which then replaces `path` at once:
    a reader sees the old file or the new one, never half of one. For large arrays
    (`np.savez(handle, ...)`), without a second copy of them in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no mode bits to fix
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` (a name of ours, such as a partial file) and flush it to disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    # File names that are not valid UTF-8 reach Python as lone surrogates; writing them back as
    # their original bytes lets every list of paths round-trip (read with errors="surrogateescape").
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def path_line(path: str) -> str:
    """One line of a paths file. A name holding a line break (or starting with a quote) is
    written as a JSON string, so each line is still exactly one path; every other name as is."""
    if "\n" in path or "\r" in path or path.startswith('"'):
        return json.dumps(path)
    return path


def read_path_lines(path: Path) -> list[str]:
    """The paths of a file written with `path_line`, exactly as they were."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [json.loads(line) if line.startswith('"') else line for line in lines]


def fsync_dir(directory: Path) -> None:
    # The rename itself is only durable once the directory entry is flushed.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
