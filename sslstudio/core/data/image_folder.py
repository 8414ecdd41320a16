"""An image folder decoded once into a uint8 cache at training resolution.

Epochs after the first decode nothing: batches are rows of one (N, S, S, 3) array, in memory
without a cache folder, and with one a file there read a batch at a time (`RowFile`).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Sequence

import numpy as np

from sslstudio.core.control import RunControl
from sslstudio.core.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    MIN_SIDE,
    SkipItem,
    decode_image,
    open_regular_file,
    pillow_warnings_silenced,
)
from sslstudio.core.data.decoded_cache import DecodedImageCache, FolderChanges, Verdict
from sslstudio.core.data.lazy_images import LazyThumbnails
from sslstudio.core.data.row_file import RowFile, RowFileWriter
from sslstudio.core.data.scan import DataError, FolderListing, FolderPaths, ScanReport, list_folder
from sslstudio.core.events import ScanFinished, ScanProgress
from PIL import Image

CHUNK = 256
# With a cache folder, a folder whose decoded images take more than this is decoded straight into
# the cache's file, not first into memory: the first scan of 200,000 images at 64 px would
# otherwise hold 2.4 GB at once.
IN_MEMORY_DECODE_MAX = 512 * 2**20


@dataclass
class ImageFolderData:
    root: Path
    paths: Sequence[Path]  # usable items, sorted by relative path (a FolderPaths from a scan)
    labels: np.ndarray  # int64, -1 where unlabelled
    class_names: tuple[str, ...]
    images: np.ndarray  # uint8 (N, S, S, 3): in memory, a RowFile of the cache, or LazyThumbnails
    grey: bool  # nearly every item has R == G == B
    report: ScanReport
    image_size: int
    modality: str = "image"
    plan_notes: tuple[str, ...] = ()  # why the resolution is what it is, for the run's plan

    def __len__(self) -> int:
        return len(self.paths)

    @functools.cached_property
    def items(self) -> list[str]:
        """Item keys: each file's path relative to the folder, with '/'."""
        if isinstance(self.paths, FolderPaths) and self.paths.root == self.root:
            return self.paths.relatives  # the scan made them; a million take seconds to remake
        return [Path(p).relative_to(self.root).as_posix() for p in self.paths]

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def batch(self, indices: np.ndarray):
        """uint8 NHWC tensor of the given items, on the CPU; the trainer moves it."""
        import torch  # here, not at the top: the app scans folders before torch has loaded

        return torch.from_numpy(np.ascontiguousarray(self.images[indices]))

    def channel_stats(self, max_items: int = 2000, seed: int = 0) -> tuple[list[float], list[float]]:
        rng = np.random.default_rng(seed)
        count = min(len(self), max_items)
        pick = np.sort(rng.choice(len(self), size=count, replace=False))
        sample = np.asarray(self.images[pick])
        # From each channel's histogram of byte values: exact, and a tenth of the time of float
        # reductions over three axes (50 ms for 2,000 images of 28 px, paid at every run's start).
        values = np.arange(256, dtype=np.float64) / 255.0
        mean, std = np.empty(3), np.empty(3)
        for channel in range(3):
            counts = np.bincount(sample[..., channel].ravel(), minlength=256) / (sample.size / 3)
            mean[channel] = counts @ values
            std[channel] = np.sqrt(max(0.0, counts @ values ** 2 - mean[channel] ** 2))
        std = np.maximum(std, 1e-3)  # a constant channel would divide by zero
        return [round(float(m), 5) for m in mean], [round(float(s), 5) for s in std]


def default_memory_budget() -> int:
    """Bytes the image cache may take in RAM; past it the folder needs a cache folder."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 4 << 30
    return int(available * 0.4)


def load_image_folder(
    root: Path,
    image_size: int,
    labels_from_folders: bool = False,
    cache_dir: Path | None = None,
    memory_budget: int | None = None,
    control: RunControl | None = None,
    workers: int | None = None,
    lazy_from: int | None = None,
    listing: FolderListing | None = None,
) -> Generator[ScanProgress | ScanFinished, None, ImageFolderData]:
    """Scan and decode `root`. Yields progress; returns the data (use `yield from`). With
    `lazy_from` and a cache folder, a folder of more files than that is listed only: its images
    are decoded when first indexed (`LazyThumbnails`), as a gallery of a million items wants.
    `listing` is `list_folder`'s of the same folder and labelling, made just before by a caller
    that needed it first."""
    started = time.monotonic()
    if listing is None:
        listing = list_folder(root, IMAGE_EXTENSIONS, labels_from_folders)
    if not listing.paths and listing.skipped:
        report = ScanReport(str(listing.root), len(listing.skipped), 0, listing.ignored,
                            list(listing.skipped), ignored_names=listing.ignored_names)
        raise DataError(f"none of the {len(listing.skipped)} image files in {listing.root} could "
                        f"be read: {report.summary()}")
    if not listing.paths:
        hint = " (it holds other files only)" if listing.ignored else ""
        raise DataError(
            f"no images in {listing.root}{hint}; expected files ending in "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    total = len(listing.paths)
    if lazy_from is not None and cache_dir is not None and total > lazy_from:
        return (yield from _listed_only(listing, image_size, cache_dir, started))
    item_bytes = image_size * image_size * 3
    budget = default_memory_budget() if memory_budget is None else memory_budget
    on_disk = total * item_bytes > budget
    if on_disk and cache_dir is None:
        raise DataError(
            f"{total} images at {image_size}px need {total * item_bytes / 2**30:.1f} GiB, more "
            "than fits in memory, and no run folder was given to hold the cache"
        )
    relatives = listing.relatives  # computed once, by the listing
    signatures = listing.signatures or [(-1, -1)] * total
    cache = DecodedImageCache(cache_dir, listing.root, image_size) if cache_dir is not None else None
    known = cache.match(relatives, signatures) if cache is not None else None
    changes = known.changes if known is not None else FolderChanges(new=total)
    if known is not None and known.unchanged:
        verdicts = known.verdicts
        images = known.store.head(sum(v.row >= 0 for v in verdicts))
        yield ScanProgress(total, total, sum(v.row < 0 for v in verdicts) + len(listing.skipped), "")
    else:
        images, verdicts = yield from _decode_folder(listing, image_size, cache, known, on_disk,
                                                     relatives, signatures, control, workers)
    usable_rows = [row for row, v in enumerate(verdicts) if v.row >= 0]
    grey_flags = [v.grey for v in verdicts if v.row >= 0]
    skipped = [(relatives[row], v.reason) for row, v in enumerate(verdicts) if v.row < 0]

    # What the listing refused to open counts as skipped like what failed to decode; it stays out
    # of the cache index, which covers the decoded candidates only.
    all_skipped = sorted(listing.skipped + list(skipped))
    report = ScanReport(str(listing.root), total + len(listing.skipped), len(usable_rows),
                        listing.ignored, all_skipped, ignored_names=listing.ignored_names)
    yield ScanFinished(report.total_files, len(usable_rows), len(all_skipped),
                       report.skipped_by_reason(), time.monotonic() - started,
                       changes.reused, changes.new, changes.changed, changes.removed)
    if not usable_rows:
        raise DataError(f"none of the {report.total_files} image files in {listing.root} could be read: "
                        f"{report.summary()}")
    rows = np.asarray(usable_rows, dtype=np.int64)
    labels = np.asarray(listing.labels, dtype=np.int64)[rows]
    grey = bool(np.mean(grey_flags) >= 0.98)
    return ImageFolderData(listing.root, listing.paths.subset(usable_rows), labels,
                           listing.class_names, images, grey, report, image_size)


def _listed_only(listing, image_size: int, cache_dir: Path, started: float):
    total = len(listing.paths)
    images = LazyThumbnails(listing, image_size, cache_dir)
    yield ScanProgress(total, total, len(listing.skipped), "")
    report = ScanReport(str(listing.root), total + len(listing.skipped), total, listing.ignored,
                        sorted(listing.skipped), ignored_names=listing.ignored_names)
    yield ScanFinished(report.total_files, total, len(listing.skipped), report.skipped_by_reason(),
                       time.monotonic() - started, lazy=True)
    labels = np.asarray(listing.labels, dtype=np.int64)
    return ImageFolderData(listing.root, listing.paths, labels, listing.class_names, images,
                           False, report, image_size)


def typical_side(root: Path, probes: int = 64, listing: FolderListing | None = None) -> int:
    """Median shorter side of a spread of the folder's images, read from headers only."""
    if listing is None:
        listing = list_folder(root, IMAGE_EXTENSIONS, False)
    if not listing.paths:
        return 64
    picks = np.unique(np.linspace(0, len(listing.paths) - 1, min(probes, len(listing.paths))).astype(int))
    sides = [side for side in (_probe_side(listing.paths[i]) for i in picks) if side is not None]
    return int(np.median(sides)) if sides else 64


def _probe_side(path: Path) -> int | None:
    """The shorter side from the header; None for a file the scan will skip, which must not vote
    (a bomb's claimed 10,000 px would pull the median up)."""

    try:
        handle, _ = open_regular_file(path)
        with handle, pillow_warnings_silenced(), Image.open(handle) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - a broken file just does not vote; the scan reports it
        return None
    if width * height > MAX_PIXELS or min(width, height) < MIN_SIDE:
        return None
    return min(width, height)


def decode_or_reason(path: Path, size: int):
    """One file decoded, or why it is skipped: the unit a scan's worker pool runs (and what tests
    replace to count or fail decodes)."""
    try:
        return decode_image(path, size)
    except SkipItem as reason:
        return str(reason)
    except MemoryError:
        return "not enough memory to decode"


def _decode_folder(listing, image_size, cache, known, on_disk, relatives, signatures, control,
                   workers):
    """Decode what the cache does not hold (everything without one) into a new store, in the
    listing's order; returns (images, a verdict per listed path). With a cache, the new store
    replaces the old one once complete: a cancelled scan leaves the old one as it was."""
    total = len(listing.paths)
    store = None
    if cache is not None and (on_disk or total * image_size * image_size * 3 > IN_MEMORY_DECODE_MAX):
        try:
            store = cache.new_store(total)
        except OSError:
            if on_disk:
                raise
            # A read-only or full project: this scan decodes into memory and is not cached.
            cache = None
    if store is None:
        store = np.empty((total, image_size, image_size, 3), np.uint8)
    verdicts: list[Verdict] = []
    skipped_count = 0
    written = 0
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    completed = False
    try:
        for start in range(0, total, CHUNK):
            rows = range(start, min(total, start + CHUNK))
            fresh = [row for row in rows if known is None or known.verdicts[row] is None]
            decoded = dict(zip(fresh, pool.map(decode_or_reason, [listing.paths[r] for r in fresh],
                                               [image_size] * len(fresh))))
            for row in rows:
                if row in decoded:
                    result = decoded[row]
                    if isinstance(result, str):
                        verdicts.append(Verdict(-1, reason=result))
                        skipped_count += 1
                        continue
                    store[written] = result[0]
                    verdicts.append(Verdict(written, bool(result[1])))
                else:
                    kept = known.verdicts[row]
                    if kept.row < 0:
                        verdicts.append(kept)
                        skipped_count += 1
                        continue
                    store[written] = known.store[kept.row]
                    verdicts.append(Verdict(written, kept.grey))
                written += 1
            yield ScanProgress(rows[-1] + 1, total, skipped_count + len(listing.skipped),
                               listing.paths[rows[-1]].name)
            if control is not None:
                control.checkpoint()
        completed = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if not completed and cache is not None:
            if isinstance(store, RowFileWriter):
                store.close()
            del store
            cache.discard_partial()
    if cache is None:
        return store[:written], verdicts
    try:
        return cache.commit(store, written, relatives, signatures, verdicts), verdicts
    except OSError:
        # A full disk or a read-only project costs the next scan its speed, not this one its data.
        if isinstance(store, RowFileWriter):
            store.close()
            if on_disk:
                cache.discard_partial()
                raise
            # Decoded into the partial file and it fits in memory: read back, then let it go.
            images = np.asarray(RowFile(cache.partial_path, written))
            cache.discard_partial()
            return images, verdicts
        cache.discard_partial()
        if on_disk:
            raise
        return store[:written], verdicts
