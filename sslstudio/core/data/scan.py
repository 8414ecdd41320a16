"""Listing a data folder: which files are candidates, in a stable order, with optional labels."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """The folder cannot be used at all (missing, empty, no usable items). Message says what to do."""


# Which kind of data a file is, by its suffix: each modality says which of its files it reads
# (`register_file_kind`), so that a folder's kind is told without importing the engine (the window
# asks before torch loads).
FILE_KINDS: dict[str, frozenset[str]] = {}
# Below this share the minority kind is most likely stray files (a README, a few thumbnails).
MIXED_MINORITY_SHARE = 0.05


def register_file_kind(modality: str, extensions) -> None:
    FILE_KINDS[modality] = frozenset(e.lower() for e in extensions)


def detect_modality(root: Path, probe: int = 5000) -> str:
    """What `root` holds, from the names of its first `probe` data files: a registered modality,
    "mixed" when the two commonest kinds both hold a real share, or "empty" when it has none."""
    kind_of = {suffix: kind for kind, suffixes in FILE_KINDS.items() for suffix in suffixes}
    counts = dict.fromkeys(FILE_KINDS, 0)
    seen = 0
    for directory, subdirs, files in os.walk(Path(root).expanduser()):
        # Sorted so that a folder larger than the probe always gets the same verdict.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            kind = None if name.startswith(".") else kind_of.get(os.path.splitext(name)[1].lower())
            if kind is None:
                continue
            counts[kind] += 1
            seen += 1
            if seen >= probe:
                return _modality_verdict(counts)
    return _modality_verdict(counts)


def _modality_verdict(counts: dict[str, int]) -> str:
    # The earlier registered kind wins a tie (images before texts, as before there were more).
    ranked = sorted(counts, key=lambda kind: -counts[kind])
    if not ranked or not counts[ranked[0]]:
        return "empty"
    if len(ranked) > 1 and counts[ranked[1]] and \
            counts[ranked[1]] >= MIXED_MINORITY_SHARE * sum(counts.values()):
        return "mixed"
    return ranked[0]


class FolderPaths(Sequence):
    """Paths under one folder, kept as relative strings and made into Paths when asked for: a
    million Path objects take seconds to build and hundreds of MB to hold, where a gallery or a
    decode needs a few at a time."""

    def __init__(self, root: Path, relatives: list[str]):
        self.root = Path(root)
        self.relatives = relatives
        self._prefix = os.path.join(str(root), "")

    def __len__(self) -> int:
        return len(self.relatives)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return FolderPaths(self.root, self.relatives[index])
        return Path(self._prefix + self.relatives[index])

    def __iter__(self):
        prefix = self._prefix
        return (Path(prefix + relative) for relative in self.relatives)

    def __eq__(self, other) -> bool:
        if isinstance(other, FolderPaths):
            return self.root == other.root and self.relatives == other.relatives
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"FolderPaths({str(self.root)!r}, {len(self)} files)"

    def subset(self, rows) -> "FolderPaths":
        relatives = self.relatives
        return FolderPaths(self.root, [relatives[row] for row in rows])


IGNORED_NAMES_KEPT = 3


@dataclass
class FolderListing:
    root: Path
    paths: FolderPaths  # candidates, sorted by relative path
    labels: list[int]  # -1 where unlabelled
    class_names: tuple[str, ...]
    ignored: int  # files with extensions of another kind (README.txt, .DS_Store, ...)
    # (relative path, reason): candidates that must never be opened (pipes, devices, sockets) and
    # subfolders that could not be listed. Loaders merge these into their ScanReport.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # (size, modification time in ns) of each path, as listed; (-1, -1) where stat failed. What a
    # cache of decoded items is keyed by, so a rescan decodes only what changed.
    signatures: list[tuple[int, int]] = field(default_factory=list)
    ignored_names: tuple[str, ...] = ()  # the first few ignored files, to name in the report

    @property
    def relatives(self) -> list[str]:
        """Each path relative to root, with "/" (what the paths are kept as)."""
        return self.paths.relatives


@dataclass
class ScanReport:
    root: str
    total_files: int
    usable: int
    ignored: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    ignored_names: tuple[str, ...] = ()  # the first few of the ignored files

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
            names = ", ".join(self.ignored_names)
            more = ", ..." if self.ignored > len(self.ignored_names) else ""
            text += (f"; {self.ignored} other file{'s' if self.ignored != 1 else ''} ignored"
                     + (f" ({names}{more})" if names else ""))
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
    found: list[tuple[str, tuple[int, int]]] = []
    skipped: list[tuple[str, str]] = []
    ignored = 0
    ignored_names: list[str] = []

    def unlistable(error: OSError, relative_folder: str) -> None:
        if error.errno in (errno.EACCES, errno.EPERM):
            detail = "permission denied"
        else:
            detail = (error.strerror or str(error)).lower()
        if not relative_folder:
            raise DataError(f"cannot read folder {root}: {detail}")
        # Dropping it silently would make a whole class vanish from the data without a word.
        skipped.append((relative_folder.rstrip("/"), f"folder unreadable: {detail}"))

    # Strings and os.scandir, not Path objects: a million files list in seconds, not minutes.
    # Linked folders are not followed: one pointing at an ancestor would be walked forever.
    pending = [""]
    while pending:
        relative_folder = pending.pop()
        try:
            with os.scandir(os.path.join(root, relative_folder[:-1]) if relative_folder else root) as listing:
                entries = list(listing)
        except OSError as error:
            unlistable(error, relative_folder)
            continue
        for entry in entries:
            name = entry.name
            if name[0] == ".":  # hidden files and folders (.git, .thumbnails) hold no user data
                continue
            relative = relative_folder + name
            try:
                is_folder = entry.is_dir()
            except OSError:
                is_folder = False
            if is_folder:
                if not entry.is_symlink():
                    pending.append(relative + "/")
                continue
            # What os.path.splitext finds, for a name that does not start with a dot; the loop
            # runs once a file, and a million files want it lean.
            dot = name.rfind(".")
            if dot < 0 or name[dot:].lower() not in extensions:
                ignored += 1
                if len(ignored_names) < IGNORED_NAMES_KEPT:
                    ignored_names.append(relative)
                continue
            try:
                # stat, never open: opening a pipe blocks until a writer comes, and opening some
                # devices (tape, watchdog) has effects of its own.
                info = entry.stat()
            except OSError:
                # Broken links, loops, permission: the reader reports those with their reason.
                found.append((relative, (-1, -1)))
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((relative, (info.st_size, info.st_mtime_ns)))
            else:
                skipped.append((relative, not_regular_reason(info.st_mode)))
    found.sort()  # by name: names are unique, so the signatures are never compared
    skipped.sort(key=lambda pair: pair[0])
    relatives = [relative for relative, _ in found]
    paths = FolderPaths(root, relatives)
    if labels_from_folders:
        tops = [rel.split("/", 1)[0] if "/" in rel else None for rel in relatives]
        class_names = tuple(sorted({t for t in tops if t is not None}))
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index[t] if t is not None else -1 for t in tops]
    else:
        class_names = ()
        labels = [-1] * len(paths)
    return FolderListing(root, paths, labels, class_names, ignored, skipped,
                         [signature for _, signature in found], tuple(sorted(ignored_names)))
