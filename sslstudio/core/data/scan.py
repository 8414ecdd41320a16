"""Listing a data folder: which files are candidates, in a stable order, with optional labels."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """The folder cannot be used at all (missing, empty, no usable items). Message says what to do."""


@dataclass
class FolderListing:
    root: Path
    paths: list[Path]  # candidates, sorted by relative path
    labels: list[int]  # -1 where unlabelled
    class_names: tuple[str, ...]
    ignored: int  # files with extensions of another kind (README.txt, .DS_Store, ...)
    # (relative path, reason): candidates that must never be opened (pipes, devices, sockets) and
    # subfolders that could not be listed. Loaders merge these into their ScanReport.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # (size, modification time in ns) of each path, as listed; (-1, -1) where stat failed. What a
    # cache of decoded items is keyed by, so a rescan decodes only what changed.
    signatures: list[tuple[int, int]] = field(default_factory=list)
    relatives: list[str] = field(default_factory=list)  # each path relative to root, with "/"


@dataclass
class ScanReport:
    root: str
    total_files: int
    usable: int
    ignored: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            key = reason.split(":")[0].split("(")[0].strip()
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def summary(self) -> str:
        text = f"{self.usable} usable of {self.total_files} files"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason().items())
            text += f"; {len(self.skipped)} skipped ({reasons})"
        if self.ignored:
            text += f"; {self.ignored} other files ignored"
        return text


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this st_mode must not be opened, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return f"not a regular file ({kind})"
    return "not a regular file"


def os_error_reason(error: OSError) -> str | None:
    """The skip reason for a failure to reach a file, or None when errno says nothing (Pillow
    reports corrupt streams as OSError without one)."""
    code = error.errno
    if not isinstance(code, int) or code <= 0:  # Pillow's decoders use negative status codes
        return None
    if code in (errno.EACCES, errno.EPERM):
        return "unreadable: permission denied"
    if code == errno.ELOOP:
        return "broken link or link loop"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return "file vanished or is a broken link"
    if code == errno.EISDIR:
        return "is a folder, not a file"
    # strerror, not str(error): the latter repeats the absolute path, which may not even be
    # printable (names that are not UTF-8).
    return f"unreadable: {(error.strerror or os.strerror(code)).lower()}"


def list_folder(root: Path, extensions: frozenset[str], labels_from_folders: bool) -> FolderListing:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    found: list[tuple[str, Path, tuple[int, int]]] = []
    skipped: list[tuple[str, str]] = []
    ignored = 0

    def unlistable(error: OSError) -> None:
        if error.errno in (errno.EACCES, errno.EPERM):
            detail = "permission denied"
        else:
            detail = (error.strerror or str(error)).lower()
        where = Path(error.filename) if error.filename else root
        if where == root:
            raise DataError(f"cannot read folder {root}: {detail}")
        # Dropping it silently would make a whole class vanish from the data without a word.
        skipped.append((where.relative_to(root).as_posix(), f"folder unreadable: {detail}"))

    # followlinks stays False: a linked folder pointing at an ancestor would otherwise be walked
    # forever.
    for directory, subdirs, files in os.walk(root, onerror=unlistable, followlinks=False):
        # Hidden folders (.git, .thumbnails, ...) hold no user data.
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if path.suffix.lower() not in extensions:
                ignored += 1
                continue
            relative = path.relative_to(root).as_posix()
            signature = (-1, -1)
            try:
                # stat, never open: opening a pipe blocks until a writer comes, and opening some
                # devices (tape, watchdog) has effects of its own.
                info = os.stat(path)
                problem = not_regular_reason(info.st_mode)
                signature = (info.st_size, info.st_mtime_ns)
            except OSError:
                # Broken links, loops, permission: the reader reports those with their reason.
                problem = None
            if problem is not None:
                skipped.append((relative, problem))
            else:
                found.append((relative, path, signature))
    found.sort(key=lambda pair: pair[0])
    skipped.sort(key=lambda pair: pair[0])
    paths = [path for _, path, _ in found]
    if labels_from_folders:
        tops = [rel.split("/")[0] if "/" in rel else None for rel, _, _ in found]
        class_names = tuple(sorted({t for t in tops if t is not None}))
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index[t] if t is not None else -1 for t in tops]
    else:
        class_names = ()
        labels = [-1] * len(paths)
    return FolderListing(root, paths, labels, class_names, ignored, skipped,
                         [signature for _, _, signature in found], [rel for rel, _, _ in found])
