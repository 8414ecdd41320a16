"""A folder of text documents read into memory as strings.

A .txt or .md file is one document; a .jsonl or .csv file holds one document per record. Every
way a real folder can be awkward (legacy encodings, binary files named .txt, records without the
text field) ends either as a usable document or as a skipped entry with a reason a person can act
on. Tokenising is left to the trainer.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslstudio.core.control import RunControl
from sslstudio.core.data.images import IMAGE_EXTENSIONS, SkipItem
from sslstudio.core.data.scan import DataError, ScanReport, list_folder
from sslstudio.core.events import ScanFinished, ScanProgress

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".jsonl", ".csv"})
RECORD_EXTENSIONS = frozenset({".jsonl", ".csv"})

CHUNK = 256
MAX_FILE_BYTES = 50 * 2**20
BINARY_PROBE_BYTES = 8192
MAX_CONTROL_SHARE = 0.30
CSV_DELIMITERS = ",;\t|"
CSV_SNIFF_CHARS = 16384
# Below this share the minority kind is most likely stray files (a README, a few thumbnails).
MIXED_MINORITY_SHARE = 0.05
MAX_NAMES_IN_REASON = 12

# UTF-32 LE must be tried before UTF-16 LE: its BOM starts with the UTF-16 LE one.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROL_BYTES = np.array([9, 10, 12, 13], np.uint8)  # \t \n \f \r


@dataclass
class TextFolderData:
    root: Path
    items: list[str]  # relative posix path, plus "#n" for the n-th record of a .jsonl or .csv
    texts: list[str]
    labels: np.ndarray  # int64, -1 where unlabelled
    class_names: tuple[str, ...]
    report: ScanReport
    encodings: dict[str, str] = field(default_factory=dict)  # relative path -> fallback encoding
    modality: str = "text"

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    @property
    def paths(self) -> list[Path]:
        """The file each document came from, one per document (records share their file's)."""
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
    if not listing.paths:
        raise DataError(_nothing_to_read(listing.root, listing.ignored, text_field))
    total = len(listing.paths)
    items: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    encodings: dict[str, str] = {}
    usable_files = 0
    for index, (path, label) in enumerate(zip(listing.paths, listing.labels)):
        relative = path.relative_to(listing.root).as_posix()
        try:
            documents, encoding, partly_unusable = _read_documents(path, relative, text_field)
        except SkipItem as reason:
            skipped.append((relative, str(reason)))
        except MemoryError:
            skipped.append((relative, "not enough memory to read"))
        else:
            usable_files += 1
            for key, text in documents:
                items.append(key)
                texts.append(text)
                labels.append(label)
            if encoding is not None:
                encodings[relative] = encoding
            if partly_unusable is not None:
                skipped.append((relative, partly_unusable))
        done = index + 1
        if done % CHUNK == 0 or done == total:
            yield ScanProgress(done, total, len(skipped), path.name)
            if control is not None:
                control.checkpoint()

    report = ScanReport(str(listing.root), total, usable_files, listing.ignored, skipped)
    yield ScanFinished(total, usable_files, len(skipped), report.skipped_by_reason(),
                       time.monotonic() - started)
    if control is not None:
        control.checkpoint()
    if not texts:
        raise DataError(f"none of the {total} text files in {listing.root} held a usable document "
                        f"({_expected(text_field)}): {report.summary()}")
    return TextFolderData(listing.root, items, texts, np.asarray(labels, dtype=np.int64),
                          listing.class_names, report, encodings)


def detect_modality(root: Path, probe: int = 5000) -> str:
    """What `root` holds, from the names of its first `probe` data files: "image", "text",
    "mixed", or "empty" when it has neither kind."""
    images = texts = 0
    for directory, subdirs, files in os.walk(Path(root).expanduser()):
        # Sorted so that a folder larger than the probe always gets the same verdict.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_EXTENSIONS:
                images += 1
            elif suffix in TEXT_EXTENSIONS:
                texts += 1
            else:
                continue
            if images + texts >= probe:
                return _modality_verdict(images, texts)
    return _modality_verdict(images, texts)


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


def _modality_verdict(images: int, texts: int) -> str:
    if not images and not texts:
        return "empty"
    if min(images, texts) > 0 and min(images, texts) >= MIXED_MINORITY_SHARE * (images + texts):
        return "mixed"
    return "image" if images >= texts else "text"


def _expected(text_field: str) -> str:
    return f"expected .txt, .md, .jsonl or .csv files (.jsonl and .csv with a '{text_field}' field)"


def _nothing_to_read(root: Path, ignored: int, text_field: str) -> str:
    if detect_modality(root) == "image":
        return (f"no text documents in {root}: it holds images, so open it as an image folder; "
                f"{_expected(text_field)}")
    hint = " (it holds other files only)" if ignored else ""
    return f"no text documents in {root}{hint}; {_expected(text_field)}"


def _open_file(path: Path):
    return open(path, "rb")


def _read_documents(path: Path, relative: str, text_field: str
                    ) -> tuple[list[tuple[str, str]], str | None, str | None]:
    """(key, text) pairs, the fallback encoding if one was needed, and a partly-unusable reason."""
    text, encoding = _decode(_read_bytes(path))
    if not text.strip():
        raise SkipItem("empty file (whitespace only)")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records, partly_unusable = _jsonl_records(text, text_field)
    elif suffix == ".csv":
        records, partly_unusable = _csv_records(text, text_field)
    else:
        # Windows and Unix line endings should give the same document.
        return [(relative, text.replace("\r\n", "\n").strip())], encoding, None
    documents = [(f"{relative}#{number}", record) for number, record in records]
    return documents, encoding, partly_unusable


def _read_bytes(path: Path) -> bytes:
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise SkipItem("empty file (0 bytes)")
        if size > MAX_FILE_BYTES:
            raise SkipItem(_too_large(size))
        with _open_file(path) as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except SkipItem:
        raise
    except PermissionError:
        raise SkipItem("unreadable: permission denied") from None
    except FileNotFoundError:
        raise SkipItem("file vanished or is a broken link") from None
    except IsADirectoryError:
        raise SkipItem("is a folder, not a file") from None
    except OSError as error:
        raise SkipItem(f"unreadable: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew after the size check
        raise SkipItem(_too_large(len(raw)))
    if _looks_binary(raw):
        raise SkipItem("binary file, not text")
    return raw


def _too_large(size: int) -> str:
    megabytes = math.ceil(size / 2**20)
    return f"too large ({megabytes} MB; at most {MAX_FILE_BYTES // 2**20} MB per file)"


def _looks_binary(raw: bytes) -> bool:
    # UTF-16 and UTF-32 text is full of NUL bytes; its BOM is what tells it apart from binary.
    if raw.startswith(tuple(bom for bom, _ in _WIDE_BOMS)):
        return False
    head = raw[:BINARY_PROBE_BYTES]
    if b"\0" in head:
        return True
    codes = np.frombuffer(head, dtype=np.uint8)
    control = ((codes < 32) & ~np.isin(codes, _ALLOWED_CONTROL_BYTES)) | (codes == 127)
    return bool(control.mean() > MAX_CONTROL_SHARE)


def _decode(raw: bytes) -> tuple[str, str | None]:
    """The text, and the encoding used when it was not UTF-8."""
    for bom, codec in _WIDE_BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec), codec
            except UnicodeDecodeError:
                break
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    # cp1252 is what most non-UTF-8 text files from Windows are; it leaves five bytes undefined,
    # and latin-1, which defines all 256, takes those files.
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _jsonl_records(text: str, text_field: str) -> tuple[list[tuple[int, str]], str | None]:
    records: list[tuple[int, str]] = []
    problems: dict[str, None] = {}  # an ordered set: the reason lists them as first met
    attempted = 0
    first_object: dict | None = None
    # Not splitlines(): JSON strings may hold U+2028 and other characters it would split on.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        attempted += 1
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            problems["not JSON"] = None
            continue
        if not isinstance(value, dict):
            problems["not a JSON object"] = None
            continue
        if first_object is None:
            first_object = value
        document = value.get(text_field)
        if text_field not in value:
            problems[f"no '{text_field}' field"] = None
        elif not isinstance(document, str) or not document.strip():
            problems[f"'{text_field}' empty or not text"] = None
        else:
            records.append((number, document.strip()))
    if not records:
        if first_object is None:
            raise SkipItem("not JSON Lines (no line holds a JSON object)")
        if text_field not in first_object:
            raise SkipItem(f"no '{text_field}' field ({_names('fields', list(first_object))})")
        raise SkipItem(f"no usable '{text_field}' values ({', '.join(problems)})")
    return records, _partly_unusable(len(records), attempted, problems)


def _csv_records(text: str, text_field: str) -> tuple[list[tuple[int, str]], str | None]:
    _allow_large_csv_fields()
    delimiter = _csv_delimiter(text, text_field)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, str]] = []
    header: list[str] | None = None
    column = -1
    number = attempted = 0
    try:
        for row in reader:
            if header is None:
                if _is_blank(row):
                    continue
                header = row
                column = _column_index(header, text_field)
                if column < 0:
                    raise SkipItem(f"no '{text_field}' column ({_names('columns', header)})")
                continue
            # Blank rows still count, so that row n stays the n-th line under the header.
            number += 1
            if _is_blank(row):
                continue
            attempted += 1
            if column == len(header) - 1:
                # Extra cells past a last text column are its own unquoted delimiters
                # ("id,text" over "1,Well, fine"): the writer meant them as text.
                cell = delimiter.join(row[column:]).strip()
            else:
                cell = row[column].strip() if column < len(row) else ""
            if cell:
                records.append((number, cell))
    except csv.Error as error:
        raise SkipItem(f"malformed CSV: {error}") from None
    if header is None:
        raise SkipItem("empty file (no header row)")
    if not attempted:
        raise SkipItem("no rows under the header")
    if not records:
        raise SkipItem(f"'{text_field}' column is empty in every row")
    problems = {f"empty '{text_field}' cell": None}
    return records, _partly_unusable(len(records), attempted, problems)


def _csv_delimiter(text: str, text_field: str) -> str:
    sample = text[:CSV_SNIFF_CHARS]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        sniffed = ","
    # The sniffer judges by consistency alone and can pick a character that merely recurs in
    # the text; a delimiter that puts the wanted column in the header is the better evidence.
    for candidate in [sniffed] + [d for d in CSV_DELIMITERS if d != sniffed]:
        rows = csv.reader(io.StringIO(sample, newline=""), delimiter=candidate)
        try:
            header = next((row for row in rows if not _is_blank(row)), [])
        except csv.Error:
            continue
        if _column_index(header, text_field) >= 0:
            return candidate
    return sniffed


def _allow_large_csv_fields() -> None:
    # A whole article in one cell is normal here; the default limit (128 KiB) would reject it.
    # The limit is a C long, 32 bits on Windows, hence the halving.
    limit = 2**31 - 1
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _column_index(header: list[str], name: str) -> int:
    wanted = name.strip().lower()
    for index, cell in enumerate(header):
        if cell.strip().lower() == wanted:
            return index
    return -1


def _is_blank(row: list[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _partly_unusable(usable: int, attempted: int, problems: dict[str, None]) -> str | None:
    if usable == attempted:
        return None
    # "partly unusable" comes first so that ScanReport.skipped_by_reason groups these files.
    return (f"partly unusable: {attempted - usable} of {attempted} records "
            f"({', '.join(problems)})")


def _names(kind: str, names: list[str]) -> str:
    if not names:
        return f"{kind}: none"
    shown = ", ".join(str(name) for name in names[:MAX_NAMES_IN_REASON])
    hidden = len(names) - MAX_NAMES_IN_REASON
    return f"{kind}: {shown}, and {hidden} more" if hidden > 0 else f"{kind}: {shown}"
