"""Listing a data folder: which files are candidates, in a stable order, with optional labels."""

from __future__ import annotations

import os
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


def list_folder(root: Path, extensions: frozenset[str], labels_from_folders: bool) -> FolderListing:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    found: list[tuple[str, Path]] = []
    ignored = 0
    for directory, subdirs, files in os.walk(root, onerror=None):
        # Hidden folders (.git, .thumbnails, ...) hold no user data.
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if path.suffix.lower() in extensions:
                found.append((path.relative_to(root).as_posix(), path))
            else:
                ignored += 1
    found.sort(key=lambda pair: pair[0])
    paths = [path for _, path in found]
    if labels_from_folders:
        tops = [rel.split("/")[0] if "/" in rel else None for rel, _ in found]
        class_names = tuple(sorted({t for t in tops if t is not None}))
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index[t] if t is not None else -1 for t in tops]
    else:
        class_names = ()
        labels = [-1] * len(paths)
    return FolderListing(root, paths, labels, class_names, ignored)
