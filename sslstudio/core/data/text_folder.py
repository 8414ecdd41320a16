"""A folder of text documents, read as a stream.

A .txt or .md file is one document; a .jsonl or .csv file holds one document per record. Every
way a real folder can be awkward (legacy encodings, binary files named .txt, records without the
text field, a 43 MB document on a single line, a 1 GB .jsonl) ends either as a usable document or
as a skipped entry with a reason a person can act on. Tokenising is left to the trainer.

Memory follows the number of documents, not the size of the files: a record file is read a line
at a time, every document is cut to MAX_DOCUMENT_CHARS as it is read, and a folder whose documents
outgrow INLINE_BUDGET_BYTES keeps only where each one lies and reads it back when asked for.
"""

from __future__ import annotations

import csv
import json
import operator
import os
import time
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslstudio.core.control import RunControl
from sslstudio.core.data.images import SkipItem
from sslstudio.core.data.scan import (
    DataError,
    ScanReport,
    detect_modality,
    list_folder,
    os_error_reason,
    register_file_kind,
)
from sslstudio.core.data import text_files
from sslstudio.core.data.text_files import (
    RECORD_EXTENSIONS,
    TextSource,
    allow_large_csv_fields,
    capped,
    csv_cell,
    csv_pieces,
    document_text,
    file_documents,
    span_lines,
)
from sslstudio.core.events import ScanFinished, ScanProgress

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".jsonl", ".csv"})
register_file_kind("text", TEXT_EXTENSIONS)
CHUNK = 256
# Documents stay in memory as strings while they fit in this. A larger folder keeps only where
# each one lies (about 30 bytes) and reads it back on demand: memory then follows the item count,
# and a 1 GB .jsonl trains in well under 2 GB.
INLINE_BUDGET_BYTES = 128 * 2**20
# What one kept document costs besides its characters: its string and key objects, list slots.
_INLINE_OVERHEAD = 128
# A large record file reports progress, and can be cancelled, within the file.
RECORDS_PER_PROGRESS = 50_000
_VIEW_BLOCK = 1024


@dataclass
class TextFolderData:
    root: Path
    # Relative posix path, plus "#n" for the n-th record of a .jsonl or .csv. Lists for a folder
    # within INLINE_BUDGET_BYTES; for a larger one, read-only sequences that read on demand
    # (texts from the files themselves, so they raise DataError if a file changed since the scan).
    items: Sequence[str]
    texts: Sequence[str]
    labels: np.ndarray  # int64, -1 where unlabelled
    class_names: tuple[str, ...]
    report: ScanReport
    encodings: dict[str, str] = field(default_factory=dict)  # relative path -> fallback encoding
    modality: str = "text"
    # Files holding a document longer than MAX_DOCUMENT_CHARS, of which only the start is kept.
    truncated: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    @property
    def paths(self) -> Sequence[Path]:
        """The file each document came from, one per document (records share their file's)."""
        if isinstance(self.items, _View):
            store, root = self.items.store, self.root
            return _View(store, lambda indices: [root / name for name in store.files(indices)])
        return [self.root / item_file(item) for item in self.items]


def item_file(item: str) -> str:
    """The relative path of the file an item key points into."""
    # A plain split on "#" would cut a file named "notes#2.txt"; only record keys carry a suffix.
    base, hash_sign, number = item.rpartition("#")
    if hash_sign and number.isdigit() and os.path.splitext(base)[1].lower() in RECORD_EXTENSIONS:
        return base
    return item


def load_text_folder(
    root: Path,
    text_field: str = "text",
    labels_from_folders: bool = False,
    control: RunControl | None = None,
) -> Generator[ScanProgress | ScanFinished, None, TextFolderData]:
    """Scan and read `root`. Yields progress; returns the data (use `yield from`)."""
    started = time.monotonic()
    listing = list_folder(root, TEXT_EXTENSIONS, labels_from_folders)
    unopened = list(getattr(listing, "skipped", []))  # pipes, devices: never opened
    if not listing.paths:
        if unopened:
            report = ScanReport(str(listing.root), len(unopened), 0, listing.ignored, unopened,
                                ignored_names=listing.ignored_names)
            raise DataError(f"none of the {len(unopened)} text files in {listing.root} could be "
                            f"read: {report.summary()}")
        raise DataError(_nothing_to_read(listing.root, listing.ignored, text_field))
    total = len(listing.paths)
    found = _Found()
    sources: list[TextSource] = []
    skipped: list[tuple[str, str]] = []
    encodings: dict[str, str] = {}
    truncated: list[str] = []
    for index, (path, label) in enumerate(zip(listing.paths, listing.labels)):
        relative = path.relative_to(listing.root).as_posix()
        mark = len(found)
        reading = file_documents(path, relative, text_field)
        try:
            while True:
                try:
                    number, start, end, text = next(reading)
                except StopIteration as stop:
                    source, encoding, partly_unusable, cut = stop.value
                    break
                found.add(len(sources), number, start, end, label, text, relative)
                if (len(found) - mark) % RECORDS_PER_PROGRESS == 0:
                    yield ScanProgress(index, total, len(skipped) + len(unopened), path.name)
                    if control is not None:
                        control.checkpoint()
        except SkipItem as reason:
            found.rollback(mark)
            skipped.append((relative, str(reason)))
        except MemoryError:
            found.rollback(mark)
            skipped.append((relative, "not enough memory to read"))
        else:
            sources.append(source)
            if encoding is not None:
                encodings[relative] = encoding
            if partly_unusable is not None:
                skipped.append((relative, partly_unusable))
            if cut:
                truncated.append(relative)
        finally:
            reading.close()
        done = index + 1
        if done % CHUNK == 0 or done == total:
            yield ScanProgress(done, total, len(skipped) + len(unopened), path.name)
            if control is not None:
                control.checkpoint()

    all_skipped = sorted(unopened + skipped)
    report = ScanReport(str(listing.root), total + len(unopened), len(sources), listing.ignored,
                        all_skipped, ignored_names=listing.ignored_names)
    yield ScanFinished(report.total_files, len(sources), len(all_skipped),
                       report.skipped_by_reason(), time.monotonic() - started)
    if control is not None:
        control.checkpoint()
    if not len(found):
        raise DataError(f"none of the {report.total_files} text files in {listing.root} held a "
                        f"usable document ({_expected(text_field)}): {report.summary()}")
    labels = np.frombuffer(found.labels, dtype=np.int64).copy()
    if found.texts is not None:
        texts, items = found.texts, found.items
    else:
        store = found.store(tuple(sources))
        texts, items = _View(store, store.texts), _View(store, store.keys)
    return TextFolderData(listing.root, items, texts, labels, listing.class_names, report,
                          encodings, truncated=truncated)


def snippet(text: str, length: int = 160) -> str:
    """One-line preview of at most `length` characters, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[:length - 1]
    if flat[length - 1] != " ":
        space = cut.rfind(" ")
        # One very long word (a URL, a hash) would otherwise leave almost nothing to preview.
        if space > length // 2:
            cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def _expected(text_field: str) -> str:
    return f"expected .txt, .md, .jsonl or .csv files (.jsonl and .csv with a '{text_field}' field)"


def _nothing_to_read(root: Path, ignored: int, text_field: str) -> str:
    found = detect_modality(root)
    if found not in ("text", "empty", "mixed"):
        return (f"no text documents in {root}: it holds {found}s, so open it as a folder of "
                f"{found}s; {_expected(text_field)}")
    hint = " (it holds other files only)" if ignored else ""
    return f"no text documents in {root}{hint}; {_expected(text_field)}"


# -- where documents lie, and reading them back ----------------------------------------------------

class _Found:
    """The documents read so far. Where each one lies is always kept, a few bytes apiece; the
    texts and keys themselves only until they outgrow INLINE_BUDGET_BYTES."""

    def __init__(self) -> None:
        self.file_index = array("i")
        self.number = array("q")  # record number in its file; 0 for a whole-file document
        self.start = array("q")
        self.end = array("q")
        self.labels = array("q")
        self.texts: list[str] | None = []
        self.items: list[str] | None = []
        self.inline_bytes = 0

    def __len__(self) -> int:
        return len(self.file_index)

    def add(self, file: int, number: int, start: int, end: int, label: int, text: str,
            relative: str) -> None:
        self.file_index.append(file)
        self.number.append(number)
        self.start.append(start)
        self.end.append(end)
        self.labels.append(label)
        if self.texts is None:
            return
        key = f"{relative}#{number}" if number else relative
        self.inline_bytes += len(text) + len(key) + _INLINE_OVERHEAD
        if self.inline_bytes > INLINE_BUDGET_BYTES:
            self.texts = self.items = None  # from here on, read back from the files
        else:
            self.texts.append(text)
            self.items.append(key)

    def rollback(self, mark: int) -> None:
        """Forget what a file yielded before it turned out unusable."""
        for column in (self.file_index, self.number, self.start, self.end, self.labels):
            del column[mark:]
        if self.texts is not None:
            del self.texts[mark:]
            del self.items[mark:]

    def store(self, sources: tuple[TextSource, ...]) -> _Store:
        return _Store(sources, np.frombuffer(self.file_index, np.int32),
                      np.frombuffer(self.number, np.int64), np.frombuffer(self.start, np.int64),
                      np.frombuffer(self.end, np.int64))


class _Store:
    """A large folder's documents as (file, record number, byte span): 28 bytes each, read back
    from the file when asked for."""

    def __init__(self, sources: tuple[TextSource, ...], file_index: np.ndarray, number: np.ndarray,
                 start: np.ndarray, end: np.ndarray) -> None:
        self.sources = sources
        self.file_index, self.number, self.start, self.end = file_index, number, start, end

    def __len__(self) -> int:
        return len(self.file_index)

    def files(self, indices: Iterable[int]) -> list[str]:
        return [self.sources[self.file_index[i]].relative for i in indices]

    def keys(self, indices: Iterable[int]) -> list[str]:
        keys = []
        for i in indices:
            relative, number = self.sources[self.file_index[i]].relative, int(self.number[i])
            keys.append(f"{relative}#{number}" if number else relative)
        return keys

    def texts(self, indices: Iterable[int]) -> list[str]:
        """The documents at `indices`; one open per run of documents from the same file, so
        ascending indices read each file once, front to back."""
        texts = []
        handle, current = None, -1
        try:
            for i in indices:
                file = int(self.file_index[i])
                if file != current:
                    if handle is not None:
                        handle.close()
                    handle, current = None, file
                    handle = self._open(self.sources[file])
                start, end = int(self.start[i]), int(self.end[i])
                handle.seek(start)
                texts.append(self._text(self.sources[file], handle.read(end - start)))
        finally:
            if handle is not None:
                handle.close()
        return texts

    @staticmethod
    def _open(source: TextSource):
        try:
            handle = text_files.open_text_file(source.path)  # the one seam for opening
        except OSError as error:
            reason = os_error_reason(error) or f"unreadable: {error.strerror or error}"
            raise DataError(f"{source.relative} can no longer be read ({reason}); "
                            "scan the folder again") from None
        try:
            info = os.fstat(handle.fileno())
        except BaseException:
            handle.close()
            raise
        if (info.st_size, info.st_mtime_ns) != (source.size, source.mtime_ns):
            handle.close()
            raise DataError(_changed(source))
        return handle

    @staticmethod
    def _text(source: TextSource, raw: bytes) -> str:
        try:
            if source.kind == "document":
                return document_text(raw, source.truncated)[0]
            lines = span_lines(raw, source.wide_codec)
            if source.kind == "jsonl":
                document = json.loads("".join(lines).strip())[source.text_field]
                return capped(document.strip())
            allow_large_csv_fields()
            pieces = [piece for line in lines for piece in csv_pieces(line)]
            row = next(csv.reader(pieces, delimiter=source.delimiter))
            return capped(csv_cell(row, source.column, source.columns, source.delimiter))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, StopIteration,
                csv.Error):
            # The same bytes parsed at the scan; a file edited in place within the same second
            # on a coarse-clock file system is the one way here.
            raise DataError(_changed(source)) from None


def _changed(source: TextSource) -> str:
    return f"{source.relative} changed after the folder was scanned; scan it again"


class _View(Sequence):
    """A read-only list of what `fetch` makes of each document index, made when asked for."""

    def __init__(self, store: _Store, fetch: Callable[[Iterable[int]], list]) -> None:
        self.store = store
        self._fetch = fetch

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._fetch(range(*index.indices(len(self))))
        index = operator.index(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("document index out of range")
        return self._fetch((index,))[0]

    def take(self, indices: Iterable[int]) -> list:
        """Many items at once, in the order asked; ascending indices read fastest."""
        indices = [operator.index(i) for i in indices]
        if any(not 0 <= i < len(self) for i in indices):
            raise IndexError("document index out of range")
        return self._fetch(indices)

    def __iter__(self) -> Iterator:
        for start in range(0, len(self), _VIEW_BLOCK):
            yield from self._fetch(range(start, min(len(self), start + _VIEW_BLOCK)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self) -> str:
        return f"<{len(self)} items read from their files on demand>"
