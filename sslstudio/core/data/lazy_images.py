"""Thumbnails of a very large image folder, made when first looked at and kept on disk.

Decoding a million images before showing any would take hours on a laptop; the gallery needs
only the rows on screen. `LazyThumbnails` is indexed like the uint8 (N, S, S, 3) array a full
scan gives, but decodes an item the first time it is asked for and keeps it in a memory-mapped
file in the project's cache (sparse on disk: only what was made takes space; not in RAM).

Each row remembers which file it was made from (a hash of its path, its size and modification
time), so a row is remade when its file changed, and a folder whose count changed gets a store
of its own size.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from sslstudio.core.data.images import SkipItem, decode_image
from sslstudio.core.data.scan import FolderListing

LAZY_FROM = 100_000  # folders with more candidates than this are shown without a full decode
UNKNOWN, MADE, UNREADABLE = 0, 1, 2


def _path_hash(relative: str) -> int:
    return int.from_bytes(hashlib.blake2b(relative.encode("utf-8", "surrogateescape"),
                                          digest_size=8).digest(), "little", signed=True)


class LazyThumbnails:
    def __init__(self, listing: FolderListing, size: int, cache_dir: Path):
        self.paths = listing.paths
        self.size = size
        count = len(self.paths)
        root_key = hashlib.sha1(str(Path(listing.root).resolve()).encode(
            errors="surrogateescape")).hexdigest()[:12]
        stem = Path(cache_dir) / f"thumbnails-{root_key}-{size}px-{count}"
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.store = _open_or_make(stem.with_suffix(".npy"), (count, size, size, 3), np.uint8)
        # Per row: state, then what it was made from (path hash, size, modification time).
        self.state = _open_or_make(Path(f"{stem}.state.npy"), (count,), np.uint8)
        self.made_from = _open_or_make(Path(f"{stem}.from.npy"), (count, 3), np.int64)
        relatives = listing.relatives
        signatures = listing.signatures or [(-1, -1)] * count
        self.expected = np.array([(_path_hash(r), s[0], s[1]) for r, s in zip(relatives, signatures)],
                                 np.int64).reshape(count, 3)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.store.shape

    @property
    def nbytes_made(self) -> int:
        return int((np.asarray(self.state) == MADE).sum()) * self.size * self.size * 3

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._one(int(index))
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        return np.stack([self._one(int(row)) for row in rows]) if len(rows) else \
            np.zeros((0, self.size, self.size, 3), np.uint8)

    def _one(self, row: int) -> np.ndarray:
        with self._lock:
            current = self.state[row] != UNKNOWN and np.array_equal(self.made_from[row],
                                                                     self.expected[row])
            if not current:
                try:
                    self.store[row] = decode_image(self.paths[row], self.size)[0]
                    self.state[row] = MADE
                except (SkipItem, OSError):
                    # Shown as a blank tile; the scan before training reports why.
                    self.store[row] = 0
                    self.state[row] = UNREADABLE
                self.made_from[row] = self.expected[row]
            return np.array(self.store[row])


def _open_or_make(path: Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The memory map at `path` if it is one of this shape, else a new one (never over a file of
    another shape: that is not ours to replace)."""
    if path.exists():
        try:
            existing = np.load(path, mmap_mode="r+")
            if existing.shape == shape and existing.dtype == dtype:
                return existing
        except (OSError, ValueError):
            pass
        raise OSError(f"{path} is in the way of the thumbnail cache and is not one of its files")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
