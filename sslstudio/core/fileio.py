"""Writes that never leave a half-written file behind: a crash leaves the old file or the new one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp and mkdtemp make files and folders only the owner can read; what we write are
# ordinary documents and folders.
_FILE_MODE = 0o666 & ~_umask()
FOLDER_MODE = 0o777 & ~_umask()


def new_partial_file(path: Path) -> Path:
    """A fresh hidden file beside `path`, with an ordinary file's mode, to be renamed to `path`
    when complete: made by us now, so ours to remove."""
    fd, name = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".partial", dir=Path(path).parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return Path(name)


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
    except BaseException as error:
        written = _size(tmp)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if is_disk_full(error):
            raise disk_full(path.parent, written, at_least=True) from None
        raise
    fsync_dir(path.parent)


class DiskFull(OSError):
    """No room where an output goes. Its message (strerror) names the folder, the space needed
    and the space free, and says what to do."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(folder: Path, needed_bytes: int | None, at_least: bool = False) -> DiskFull:
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    needed = "" if not needed_bytes or needed_bytes < 2**20 // 10 else \
        f"{'more than ' if at_least else ''}{needed_bytes / 2**20:.1f} MB needed, "
    return DiskFull(errno.ENOSPC, f"no space left on the disk that holds {folder} ({needed}"
                    f"{free}); free some space there, or choose a folder on another disk")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` (a name of ours, such as a partial file) and flush it to disk. A
    failed write removes what it wrote: a half file kept on a full disk keeps the disk full."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as error:
        Path(path).unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full(Path(path).parent, len(data)) from None
        raise


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
