"""A folder's decoded images and scan verdicts, kept between scans.

Keyed by each file's path, size and modification time: a rescan lists the folder (one stat a
file, which the listing does anyway), reuses every item whose key is unchanged and decodes only
new and changed files. Reopening a 70,000-image project or starting a second run on it then
costs a listing instead of 15-35 s of decoding.

The cache lives in a folder the program owns (a project's or a run's `cache/`), under names
derived from the data folder's path and the size, so two folders or two sizes never share one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sslstudio.core.data.row_file import RowFile, RowFileWriter
from sslstudio.core.fileio import atomic_write_text

# 2: the files as columns (a list per field), which a reopen of 70,000 files parses in a tenth
# of the time of 1's object per file. An index of another format is not read: the folder is
# decoded once again.
FORMAT = 2
COLUMNS = ("names", "sizes", "mtimes", "rows", "grey", "reasons")


class Verdict(NamedTuple):
    """What the last scan found for one file: a row of the store, or why it was skipped. (A
    tuple: a reopen makes one per file, and a frozen dataclass takes four times as long.)"""

    row: int  # -1 when skipped
    grey: bool = False
    reason: str = ""


@dataclass
class FolderChanges:
    reused: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0

    @property
    def any(self) -> bool:
        return bool(self.new or self.changed or self.removed)


@dataclass
class CachedFolder:
    """The verdicts that still hold for the current listing, and the store they point into."""

    store: RowFile | None  # the last store, read a few rows at a time; None without a cache
    verdicts: list[Verdict | None]  # per listed path; None: decode it
    changes: FolderChanges = field(default_factory=FolderChanges)

    @property
    def unchanged(self) -> bool:
        return self.store is not None and not self.changes.any and all(
            v is not None for v in self.verdicts)


class DecodedImageCache:
    def __init__(self, cache_dir: Path, root: Path, image_size: int):
        digest = hashlib.sha1(str(Path(root).resolve()).encode(errors="surrogateescape")).hexdigest()[:12]
        stem = f"images-{digest}-{image_size}px"
        self.cache_dir = Path(cache_dir)
        self.store_path = self.cache_dir / f"{stem}.npy"
        self.index_path = self.cache_dir / f"{stem}.json"
        # Unique to this scan: two processes scanning the same folder never write one file.
        self.partial_path = self.cache_dir / f"{stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        self.root, self.image_size = Path(root), image_size

    # -- reading ------------------------------------------------------------------------------
    def match(self, relatives: list[str], signatures: list[tuple[int, int]]) -> CachedFolder:
        """The last scan's verdicts for the listed files whose size and time are unchanged."""
        index = self._read_index()
        store = self._open_store(index) if index else None
        if store is None:
            return CachedFolder(None, [None] * len(relatives), FolderChanges(new=len(relatives)))
        files = index["files"]
        unchanged = self._unchanged_verdicts(files, relatives, signatures, len(store))
        if unchanged is not None:
            return CachedFolder(store, unchanged, FolderChanges(reused=len(unchanged)))
        position = {name: i for i, name in enumerate(files["names"])}
        sizes, times, rows = files["sizes"], files["mtimes"], files["rows"]
        verdicts: list[Verdict | None] = []
        changes = FolderChanges()
        for relative, signature in zip(relatives, signatures):
            at = position.get(relative)
            if at is None:
                changes.new += 1
                verdicts.append(None)
            elif signature[0] < 0 or (sizes[at], times[at]) != tuple(signature) or rows[at] >= len(store):
                changes.changed += 1
                verdicts.append(None)
            else:
                changes.reused += 1
                verdicts.append(Verdict(rows[at], bool(files["grey"][at]), files["reasons"][at]))
        changes.removed = len(position) - changes.reused - changes.changed
        return CachedFolder(store, verdicts, changes)

    @staticmethod
    def _unchanged_verdicts(files: dict, relatives: list[str], signatures: list[tuple[int, int]],
                            rows: int) -> list[Verdict] | None:
        """The verdicts when nothing changed since the index was written (the same files, in
        the same order, with the same sizes and times), found by comparing whole lists; None
        otherwise, and the caller compares file by file. A reopen is mostly this case."""
        if files["names"] != relatives or list(zip(files["sizes"], files["mtimes"])) != signatures \
                or any(signature[0] < 0 for signature in signatures) \
                or (files["rows"] and max(files["rows"]) >= rows):
            return None
        return list(map(Verdict._make, zip(files["rows"], map(bool, files["grey"]), files["reasons"])))

    def _read_index(self, any_format: bool = False) -> dict | None:
        """The index, with its files as columns of equal length (names, sizes, mtimes, rows,
        grey, reasons). With `any_format`, an older version's index is returned as it is, only
        to recognise the store as ours."""
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("image_size") != self.image_size:
            return None
        if any_format and isinstance(index.get("format"), int):
            return index
        files = index.get("files")
        if index.get("format") != FORMAT or not isinstance(files, dict) \
                or not all(isinstance(files.get(column), list) for column in COLUMNS) \
                or len({len(files[column]) for column in COLUMNS}) != 1:
            return None
        return index

    def _open_store(self, index: dict) -> np.ndarray | None:
        try:
            info = self.store_path.stat()
            # The index names the store it was written with: one replaced since (another process,
            # a crash between the two writes) is not trusted.
            if [info.st_size, info.st_mtime_ns] != index.get("store"):
                return None
            store = RowFile(self.store_path)
        except (OSError, ValueError):
            return None
        if store.ndim != 4 or store.shape[1:] != (self.image_size, self.image_size, 3) \
                or store.dtype != np.uint8:
            store.close()
            return None
        return store

    # -- writing ------------------------------------------------------------------------------
    def new_store(self, rows: int) -> RowFileWriter:
        """A store file to fill row by row, written beside the current one until `commit`."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return RowFileWriter(self.partial_path, rows, (self.image_size, self.image_size, 3))

    def commit(self, store: np.ndarray | RowFileWriter, written: int, relatives: list[str],
               signatures: list[tuple[int, int]], verdicts: list[Verdict]) -> RowFile:
        """Put the filled store in place (a `new_store` file, or an in-memory array, which is
        saved) and index it; returns its first `written` rows, read from the file."""
        if not self._replaceable():
            if isinstance(store, RowFileWriter):
                store.close()
            raise OSError(errno.EEXIST, f"{self.store_path.name} in {self.cache_dir} was not written "
                          "by this cache as its index says; it is left as it is")
        if isinstance(store, RowFileWriter):
            store.finish(written)
        else:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with open(self.partial_path, "wb") as handle:
                np.save(handle, store[:written])
        os.replace(self.partial_path, self.store_path)
        info = self.store_path.stat()
        files = {"names": list(relatives), "sizes": [signature[0] for signature in signatures],
                 "mtimes": [signature[1] for signature in signatures],
                 "rows": [v.row for v in verdicts], "grey": [int(v.grey) for v in verdicts],
                 "reasons": [v.reason for v in verdicts]}
        atomic_write_text(self.index_path, json.dumps({
            "format": FORMAT, "root": str(self.root), "image_size": self.image_size,
            "store": [info.st_size, info.st_mtime_ns], "files": files}))
        return RowFile(self.store_path, written)

    def _replaceable(self) -> bool:
        """Only a store and an index this cache wrote are ever replaced: none there yet, or an
        index of ours that names the store file exactly as it is (size and time)."""
        if not self.store_path.exists() and not self.index_path.exists():
            return True
        index = self._read_index(any_format=True)
        if index is None:
            return False
        if not self.store_path.exists():
            return True
        info = self.store_path.stat()
        return [info.st_size, info.st_mtime_ns] == index.get("store")

    def discard_partial(self) -> None:
        """Remove a store this scan began and did not finish (cancelled, failed)."""
        try:
            self.partial_path.unlink()
        except OSError:
            pass
