"""Reading text files as documents: a .txt or .md file is one document, a .jsonl or .csv file
one per record. Legacy encodings, byte-order marks, binary files named .txt, records without the
text field and oversized lines end either as a document or as a reason a person can act on; a
document is read back from where it lies (`TextSource`, a byte span) when a folder is too large
to keep in memory. The folder around them is `text_folder.py`'s."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sslstudio.core.data.images import SkipItem
from sslstudio.core.data.scan import not_regular_reason, os_error_reason

RECORD_EXTENSIONS = frozenset({".jsonl", ".csv"})
# Training reads at most a document's first max_length tokens, and max_length is at most 4096
# (the knob's ceiling), so a document is cut to 256 Ki characters as it is read: 64 characters a
# token at that ceiling, where prose takes 4 to 6, so the cut never shows in what is trained on.
# Uncut, a 43 MB single-line .txt went whole through the tokenizer and peaked at 10 GB.
MAX_DOCUMENT_CHARS = 256 * 1024
# Bytes enough for that many characters in any encoding read here (4 a character at most, in
# UTF-8 and UTF-32), and a byte-order mark.
MAX_DOCUMENT_BYTES = 4 * MAX_DOCUMENT_CHARS + 4
# A record is parsed whole before its text is cut, so one JSON line or CSV row is bounded on its
# own: a line past this is left out without being held in memory.
MAX_RECORD_BYTES = 16 * 2**20
# A .txt or .md this large is a dump rather than a document, and only its first page would be
# read; it is skipped with a reason saying so. Record files have no such limit: they are streamed.
MAX_FILE_BYTES = 50 * 2**20
BINARY_PROBE_BYTES = 8192
MAX_CONTROL_SHARE = 0.30
CSV_DELIMITERS = ",;\t|"
CSV_SNIFF_CHARS = 16384
MAX_NAMES_IN_REASON = 12
# UTF-32 LE must be tried before UTF-16 LE: its BOM starts with the UTF-16 LE one. The last name
# decodes what follows the mark, which is what reading a record back from its offset needs.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
_ALLOWED_CONTROL_BYTES = np.array([9, 10, 12, 13], np.uint8)  # \t \n \f \r
_FALLBACK_RANK = {None: 0, "cp1252": 1, "latin-1": 2}
# A lone \r ends a CSV row, as it did when the file was read through io.StringIO(newline="").
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
# O_NONBLOCK: a file swapped for a named pipe after it was listed must not block the open waiting
# for a writer; regular files ignore the flag.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


@dataclass(frozen=True)
class TextSource:
    """Enough about one usable file to read any of its documents back from its byte span."""

    path: Path
    relative: str
    kind: str  # "document" (.txt, .md), "jsonl" or "csv"
    text_field: str
    size: int
    mtime_ns: int
    wide_codec: str | None = None  # "utf-16-le" and the like, where a byte-order mark said so
    truncated: bool = False  # a document file read only up to MAX_DOCUMENT_BYTES
    delimiter: str = ","
    column: int = -1
    columns: int = 0



def open_text_file(path: Path):
    """The one place a text file is opened (never blocking on a pipe or a device): what tests
    replace to play a failing disk."""
    return os.fdopen(os.open(path, _OPEN_FLAGS), "rb")


def file_documents(path: Path, relative: str, text_field: str
                    ) -> Generator[tuple[int, int, int, str], None,
                                   tuple[TextSource, str | None, str | None, bool]]:
    """Yields (record number, start byte, end byte, text) for each document of one file, the
    text cut to MAX_DOCUMENT_CHARS; returns the file's source, the fallback encoding if one was
    needed, a partly-unusable reason and whether a document was cut. Raises SkipItem, possibly
    after yielding: the caller forgets what it had."""
    suffix = path.suffix.lower()
    kind = suffix[1:] if suffix in RECORD_EXTENSIONS else "document"
    try:
        with open_text_file(path) as handle:
            info = os.fstat(handle.fileno())
            problem = not_regular_reason(info.st_mode)
            if problem is not None:
                raise SkipItem(problem)
            if info.st_size == 0:
                raise SkipItem("empty file (0 bytes)")
            if kind == "document" and info.st_size > MAX_FILE_BYTES:
                raise SkipItem(_too_large(info.st_size))
            head = handle.read(BINARY_PROBE_BYTES)
            if _looks_binary(head):
                raise SkipItem("binary file, not text")
            source = TextSource(path, relative, kind, text_field, info.st_size, info.st_mtime_ns)
            if kind == "document":
                handle.seek(0)
                raw = handle.read(MAX_DOCUMENT_BYTES + 1)
                truncated = len(raw) > MAX_DOCUMENT_BYTES
                raw = raw[:MAX_DOCUMENT_BYTES]
                text, encoding, cut = document_text(raw, truncated)
                if not text:
                    raise SkipItem(f"no text in its first {MAX_DOCUMENT_BYTES // 2**20} MB"
                                   if truncated else "empty file (whitespace only)")
                yield 0, 0, len(raw), text
                return replace(source, truncated=truncated), encoding, None, cut
            wide = next(((name, codec) for bom, name, codec in _WIDE_BOMS if head.startswith(bom)),
                        None)
            source = replace(source, wide_codec=wide[1] if wide else None)
            lines = _file_lines(handle, head, source.wide_codec)
            try:
                if kind == "jsonl":
                    encoding, partly_unusable, cut = yield from _jsonl_documents(lines, text_field)
                else:
                    (delimiter, column, columns), encoding, partly_unusable, cut = yield from \
                        _csv_documents(lines, text_field, source.wide_codec)
                    source = replace(source, delimiter=delimiter, column=column, columns=columns)
            except UnicodeDecodeError:
                if wide is None:
                    raise
                raise SkipItem(f"not {wide[0].upper()} text, though it starts like it") from None
            return source, wide[0] if wide else encoding, partly_unusable, cut
    except SkipItem:
        raise
    except OSError as error:
        raise SkipItem(os_error_reason(error) or f"unreadable: {error.strerror or error}") from None


def _too_large(size: int) -> str:
    megabytes = math.ceil(size / 2**20)
    return f"too large ({megabytes} MB; at most {MAX_FILE_BYTES // 2**20} MB per file)"


def _looks_binary(raw: bytes) -> bool:
    # UTF-16 and UTF-32 text is full of NUL bytes; its BOM is what tells it apart from binary.
    if raw.startswith(tuple(bom for bom, _, _ in _WIDE_BOMS)):
        return False
    head = raw[:BINARY_PROBE_BYTES]
    if b"\0" in head:
        return True
    codes = np.frombuffer(head, dtype=np.uint8)
    control = ((codes < 32) & ~np.isin(codes, _ALLOWED_CONTROL_BYTES)) | (codes == 127)
    return bool(control.mean() > MAX_CONTROL_SHARE)


def document_text(raw: bytes, truncated: bool) -> tuple[str, str | None, bool]:
    """A .txt or .md document from its first bytes: the text (cut to MAX_DOCUMENT_CHARS), the
    fallback encoding if one was needed, and whether it was cut."""
    text, encoding = _decode(raw, final=not truncated)
    # Windows and Unix line endings should give the same document.
    text = text.replace("\r\n", "\n").strip()
    return capped(text), encoding, truncated or len(text) > MAX_DOCUMENT_CHARS


def capped(text: str) -> str:
    return text[:MAX_DOCUMENT_CHARS]


def _decode(raw: bytes, final: bool = True) -> tuple[str, str | None]:
    """The text, and the encoding used when it was not UTF-8. `final` is False for the first
    bytes of a longer file, which may end inside a character."""
    for bom, name, _ in _WIDE_BOMS:
        if raw.startswith(bom):
            try:
                return _decode_part(raw, name, final), name
            except UnicodeDecodeError:
                break
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return _decode_part(raw, "utf-8", final), None
    except UnicodeDecodeError:
        pass
    return _decode_legacy(raw)


def _decode_part(raw: bytes, codec: str, final: bool) -> str:
    # Incremental, so that a character cut by the end of the bytes read is left out rather than
    # making the whole file undecodable.
    return codecs.getincrementaldecoder(codec)("strict").decode(raw, final)


def _decode_line(raw: bytes) -> tuple[str, str | None]:
    """One line of a record file: UTF-8, else cp1252, else latin-1. Decided line by line, as the
    file is streamed; a stray legacy byte also no longer turns a whole UTF-8 file to mojibake."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return _decode_legacy(raw)


def _decode_legacy(raw: bytes) -> tuple[str, str]:
    # cp1252 is what most non-UTF-8 text files from Windows are; it leaves five bytes undefined,
    # and latin-1, which defines all 256, takes those files.
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _worse(a: str | None, b: str | None) -> str | None:
    return a if _FALLBACK_RANK[a] >= _FALLBACK_RANK[b] else b


def _file_lines(handle, head: bytes, wide_codec: str | None
                ) -> Iterator[tuple[int, int, str | None, str | None]]:
    """(start byte, end byte, text, fallback encoding) for each line, newline kept, split on
    "\\n" only (JSON strings may hold U+2028 and others that splitlines() would split on). The
    text is None for a line over MAX_RECORD_BYTES, which is passed over without being held."""
    if wide_codec is not None:
        yield from _wide_lines(handle, wide_codec)
        return
    offset = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    handle.seek(offset)
    while True:
        line = handle.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        start, offset = offset, offset + len(line)
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            del line
            offset += _skip_line(handle.readline, b"\n", len)
            yield start, offset, None, None
        else:
            text, fallback = _decode_line(line)
            yield start, offset, text, fallback


def _wide_lines(handle, codec: str) -> Iterator[tuple[int, int, str | None, str | None]]:
    bom = next(bom for bom, _, name in _WIDE_BOMS if name == codec)
    handle.seek(len(bom))
    stream = io.TextIOWrapper(handle, encoding=codec, errors="strict", newline="\n")
    limit = MAX_RECORD_BYTES // (4 if "32" in codec else 2)
    offset = len(bom)
    try:
        while True:
            line = stream.readline(limit + 1)
            if not line:
                return
            start, offset = offset, offset + len(line.encode(codec))
            if len(line) > limit and not line.endswith("\n"):
                del line
                offset += _skip_line(stream.readline, "\n", lambda part: len(part.encode(codec)))
                yield start, offset, None, None
            else:
                yield start, offset, line, None
    finally:
        stream.detach()  # the handle belongs to the caller's `with`


def _skip_line(readline: Callable[[int], bytes | str], newline: bytes | str,
               size_of: Callable[[bytes | str], int]) -> int:
    """Reads to the end of an overlong line a megabyte at a time; returns how many bytes."""
    skipped = 0
    while True:
        part = readline(2**20)
        skipped += size_of(part)
        if not part or part.endswith(newline):
            return skipped


def span_lines(raw: bytes, wide_codec: str | None) -> list[str]:
    """A record's bytes as lines again, decoded as the scan decoded them."""
    if wide_codec is not None:
        return _split_keeping(raw.decode(wide_codec), "\n")
    return [_decode_line(line)[0] for line in _split_keeping(raw, b"\n")]


def _split_keeping(text, newline):
    parts = text.split(newline)
    lines = [part + newline for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _jsonl_documents(lines: Iterator, text_field: str
                     ) -> Generator[tuple[int, int, int, str], None, tuple[str | None, str | None, bool]]:
    problems: dict[str, None] = {}  # an ordered set: the reason lists them as first met
    attempted = usable = 0
    first_fields: list[str] | None = None
    fallback: str | None = None
    cut = False
    for number, (start, end, line, line_fallback) in enumerate(lines, start=1):
        if line is None:
            attempted += 1
            problems[f"line over {_record_limit()}"] = None
            continue
        line = line.strip()
        if not line:
            continue
        attempted += 1
        fallback = _worse(fallback, line_fallback)
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            problems["not JSON"] = None
            continue
        if not isinstance(value, dict):
            problems["not a JSON object"] = None
            continue
        if first_fields is None:
            first_fields = list(value)
        document = value.get(text_field)
        if text_field not in value:
            problems[f"no '{text_field}' field"] = None
        elif not isinstance(document, str) or not document.strip():
            problems[f"'{text_field}' empty or not text"] = None
        else:
            document = document.strip()
            cut = cut or len(document) > MAX_DOCUMENT_CHARS
            usable += 1
            yield number, start, end, capped(document)
    if not usable:
        if not attempted:
            raise SkipItem("empty file (whitespace only)")
        if first_fields is None:
            if len(problems) == 1 and not problems.keys() & {"not JSON", "not a JSON object"}:
                raise SkipItem(f"no usable records (every {next(iter(problems))})")
            raise SkipItem("not JSON Lines (no line holds a JSON object)")
        if text_field not in first_fields:
            raise SkipItem(f"no '{text_field}' field ({_names('fields', first_fields)})")
        raise SkipItem(f"no usable '{text_field}' values ({', '.join(problems)})")
    return fallback, _partly_unusable(usable, attempted, problems), cut


class _Cursor:
    """Where the CSV reader has got to in the file; csv.reader pulls one line at a time and
    never reads ahead, so the end of its last line is the end of the row it returns."""

    def __init__(self, offset: int, wide_codec: str | None) -> None:
        self.row_start = self.end = offset
        self.wide_codec = wide_codec
        self.fallback: str | None = None
        self.any_text = False
        # The lines of the row being read (bounded by MAX_RECORD_BYTES), and whether the file
        # ran out while reading it: csv.reader only asks past a row's last line when a quote
        # is still open, so a row it returns after that is one a quote left open swallowed.
        self.row_lines: list = []
        self.exhausted = False


def _csv_documents(lines: Iterator, text_field: str, wide_codec: str | None
                   ) -> Generator[tuple[int, int, int, str], None,
                                  tuple[tuple[str, int, int], str | None, str | None, bool]]:
    allow_large_csv_fields()
    head = []
    chars = 0
    for entry in lines:
        head.append(entry)
        if entry[2] is None:
            break
        chars += len(entry[2])
        if chars >= CSV_SNIFF_CHARS:
            break
    if not head:
        raise SkipItem("empty file (whitespace only)")
    delimiter = _csv_delimiter("".join(e[2] for e in head if e[2] is not None)[:CSV_SNIFF_CHARS],
                               text_field)
    cursor = _Cursor(head[0][0], wide_codec)
    pending: Iterator = itertools.chain(head, lines)
    header: list[str] | None = None
    column = -1
    number = attempted = usable = 0
    cut = False
    problems: dict[str, None] = {}
    try:
        while pending is not None:
            reader = csv.reader(_csv_feed(pending, cursor), delimiter=delimiter)
            pending = None
            for row in reader:
                start, cursor.row_start = cursor.row_start, cursor.end
                if cursor.exhausted and len(cursor.row_lines) > 1:
                    row_lines, cursor.row_lines = cursor.row_lines, []
                    if header is None:
                        raise SkipItem("malformed CSV: a quote left open in the header row")
                    # A quote left open swallowed the lines after this row's first: the row is
                    # unusable, and those lines are read again as rows of their own.
                    number += 1
                    attempted += 1
                    problems[f"a quote left open in row {number}"] = None
                    cursor.exhausted = False
                    cursor.row_start = row_lines[1][0]
                    pending = iter(row_lines[1:])
                    break
                cursor.row_lines.clear()  # csv.reader reads no further than the row it returns
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
                cell = csv_cell(row, column, len(header), delimiter)
                if cell:
                    cut = cut or len(cell) > MAX_DOCUMENT_CHARS
                    usable += 1
                    yield number, start, cursor.row_start, capped(cell)
                else:
                    problems[f"empty '{text_field}' cell"] = None
    except csv.Error as error:
        raise SkipItem(f"malformed CSV: {error}") from None
    if header is None:
        raise SkipItem("empty file (no header row)" if cursor.any_text
                       else "empty file (whitespace only)")
    if not attempted:
        raise SkipItem("no rows under the header")
    if not usable:
        raise SkipItem(f"'{text_field}' column is empty in every row"
                       if list(problems) == [f"empty '{text_field}' cell"]
                       else f"no usable '{text_field}' values ({', '.join(problems)})")
    return ((delimiter, column, len(header)), cursor.fallback,
            _partly_unusable(usable, attempted, problems), cut)


def _csv_feed(lines: Iterable, cursor: _Cursor) -> Iterator[str]:
    limit = _record_limit()
    for entry in lines:
        start, end, text, fallback = entry
        if text is None:
            raise SkipItem(f"malformed CSV: a line over {limit}")
        cursor.row_lines.append(entry)
        cursor.fallback = _worse(cursor.fallback, fallback)
        cursor.any_text = cursor.any_text or bool(text.strip())
        pieces = csv_pieces(text)
        ends = [end]
        if len(pieces) > 1:
            codec = cursor.wide_codec or fallback or "utf-8"
            ends = list(itertools.accumulate((len(p.encode(codec)) for p in pieces), initial=start))[1:]
        for piece, piece_end in zip(pieces, ends):
            cursor.end = piece_end
            if cursor.end - cursor.row_start > MAX_RECORD_BYTES:
                # A quote left open swallows the rest of the file into one cell.
                raise SkipItem(f"malformed CSV: a row over {limit} (a quote left open?)")
            yield piece
    cursor.exhausted = True


def _record_limit() -> str:
    if MAX_RECORD_BYTES >= 2**20:
        return f"{MAX_RECORD_BYTES // 2**20} MB"
    return f"{MAX_RECORD_BYTES // 1024} KB"


def csv_pieces(line: str) -> list[str]:
    if "\r" not in line:
        return [line]
    return [piece for piece in _LONE_CR.split(line) if piece]


def csv_cell(row: list[str], column: int, columns: int, delimiter: str) -> str:
    if column == columns - 1:
        # Extra cells past a last text column are its own unquoted delimiters
        # ("id,text" over "1,Well, fine"): the writer meant them as text.
        return delimiter.join(row[column:]).strip()
    return row[column].strip() if column < len(row) else ""


def _csv_delimiter(sample: str, text_field: str) -> str:
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


def allow_large_csv_fields() -> None:
    # A whole article in one cell is normal here; the default limit (128 KiB) would reject it.
    # Set on every read: the limit is global to the process.
    csv.field_size_limit(MAX_RECORD_BYTES)


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
