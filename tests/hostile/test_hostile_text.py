"""Hostile text folders: a document of tens of megabytes on one line, a record file larger than
memory should have to hold, lines and rows without end. Memory must follow the number of items
and the sequence length, never the size of a file; what is read must not change because of it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sslstudio.core.data import text_files, text_folder
from sslstudio.core.data.scan import DataError
from sslstudio.core.data.text_folder import load_text_folder
from sslstudio.core.tokenizer import configure, encode_all, train_tokenizer
from tests.conftest import run_to_end

REPO = Path(__file__).resolve().parents[2]
MB = 2**20
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
         "wizards", "box", "jumping", "quails", "and", "amazingly", "few", "discotheques",
         "provide", "jukeboxes"]


def prose(words: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), words))


def write_single_line(path: Path, size: int) -> None:
    block = (prose(20_000) + " ").encode()
    with open(path, "wb") as handle:
        handle.writelines(block for _ in range(size // len(block) + 1))


def record(n: int, words: int) -> str:
    return f"record {n} {prose(words)}"


def write_jsonl(path: Path, records: int, words: int) -> None:
    base = prose(words)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"id": n, "text": f"record {n} {base}"}) + "\n"
                          for n in range(records))


def fresh_process(code: str, timeout: float = 120) -> dict:
    """Runs `code` in a new interpreter (so its peak RSS means something) and returns the JSON
    object it prints last."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# Loads a folder the way `train` does (load_text_data, on the CPU), and reports the peak RSS
# before and after, in MiB. The imports and a first tokenizer come before the first reading, so
# that what grows is what the folder costs. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
# exec, so a child would start from its parent's (pytest's) peak and hide its own.
LOAD_AND_MEASURE = """
    import json
    from pathlib import Path
    from sslstudio.core.data import text_folder, text_tokens
    from sslstudio.core.tokenizer import train_tokenizer

    def peak():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))

    train_tokenizer(["warm up the library"] * 10, "wordpiece", 100)
    {patches}
    before = peak()
    loading = text_tokens.load_text_data(Path({folder!r}), "text", False, Path({run!r}),
                                         max_length={max_length})
    while True:
        try:
            next(loading)
        except StopIteration as stop:
            data, tokenizer, vocab = stop.value
            break
    print(json.dumps({{"before": before, "after": peak(), "n": len(data), "ids": data.ids.nbytes,
                      "shape": list(data.ids.shape), "dtype": str(data.ids.dtype),
                      "items": list(data.items[:3]), "first": len(data.texts[0]),
                      "truncated": data.folder.truncated, "lazy": not isinstance(data.texts, list)}}))
"""


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="peak RSS read from /proc/self/status (Linux)")


@needs_proc
def test_a_40_mb_single_line_txt_costs_what_one_document_does(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    write_single_line(folder / "big.txt", 40 * MB)
    for i in range(5):
        (folder / f"small{i}.txt").write_text(prose(60, seed=i))
    measured = fresh_process(LOAD_AND_MEASURE.format(patches="", folder=str(folder),
                                                     run=str(tmp_path / "run"), max_length=0))
    # Before the fix this grew by gigabytes (10.1 GB for a 43 MB file during `train`).
    assert measured["after"] - measured["before"] < 100, measured
    assert measured["after"] < 500, measured
    assert measured["n"] == 6 and measured["items"][0] == "big.txt"
    assert measured["first"] == text_files.MAX_DOCUMENT_CHARS
    assert measured["truncated"] == ["big.txt"] and measured["dtype"] == "uint16"


@needs_proc
def test_a_large_jsonl_is_streamed_and_only_the_id_array_grows(tmp_path):
    """20 MB and 80 MB of records through the training path, with the in-memory budget lowered
    so that test-sized files take the path a gigabyte-sized one does: the peak must not follow."""
    patches = ("text_folder.INLINE_BUDGET_BYTES = 4 * 2**20; "
               "text_tokens.TOKENIZER_SAMPLE_CHARS = 2 * 2**20")
    growth = {}
    for records in (2_500, 10_000):  # of ~8 KB each
        folder = tmp_path / f"records{records}"
        folder.mkdir()
        write_jsonl(folder / "big.jsonl", records, 1400)
        measured = fresh_process(LOAD_AND_MEASURE.format(
            patches=patches, folder=str(folder), run=str(tmp_path / f"run{records}"), max_length=16))
        (folder / "big.jsonl").unlink()
        assert measured["n"] == records and measured["lazy"], measured
        assert measured["shape"] == [records, 16] and measured["dtype"] == "uint16"
        assert measured["items"] == ["big.jsonl#1", "big.jsonl#2", "big.jsonl#3"]
        assert measured["first"] == len(record(0, 1400))
        growth[records] = measured["after"] - measured["before"]
    # 60 MB more of file; read whole, it would be that in bytes and as much again in strings.
    assert growth[10_000] < growth[2_500] + 15, growth


def test_scanning_many_records_holds_their_places_not_their_texts(tmp_path, monkeypatch):
    monkeypatch.setattr(text_folder, "INLINE_BUDGET_BYTES", 2 * MB)
    write_jsonl(tmp_path / "many.jsonl", 120_000, 30)  # ~25 MB
    size = (tmp_path / "many.jsonl").stat().st_size
    tracemalloc.start()
    try:
        data, events = run_to_end(load_text_folder(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == 120_000 and not isinstance(data.texts, list)
    # A few dozen bytes a record, and the in-memory budget before it was given up.
    assert peak < 2 * MB + 120_000 * 80, (peak, size)
    assert peak < size / 4
    # Progress came from within the file, not only after it.
    assert sum(1 for e in events if getattr(e, "current", None) == "many.jsonl") >= 3
    picks = [0, 1, 59_999, 119_999]
    assert [data.texts[i] for i in picks] == [record(i, 30) for i in picks]
    assert data.items[-1] == "many.jsonl#120000" and data.paths[5] == tmp_path / "many.jsonl"
    assert data.texts[10:13] == [record(i, 30) for i in range(10, 13)]


def hostile_folder(root: Path) -> None:
    """Every reading path: wide encodings, byte-order marks, legacy bytes, CSV rows over several
    lines and ended by a lone CR, a long document and a long record."""
    (root / "sub").mkdir(parents=True)
    lines = [{"text": "utf sixteen ✓"}, {"text": "two\u2028lines"}, "not json"]
    (root / "w16.jsonl").write_bytes("\n".join(json.dumps(x) if isinstance(x, dict) else x
                                               for x in lines).encode("utf-16"))
    (root / "w32.csv").write_bytes('id,text\r\n1,"multi\nline\r\ncell"\r\n2,plain\r3,lone cr\r\n'
                                   .encode("utf-32"))
    (root / "cr.csv").write_bytes(b'id;text\r1;first\r2;"quoted\r\nnewline"\r3;third')
    (root / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "bom first"}\n'
                                     b'{"text": "legacy \x93quote\x94"}\n\n{"text": "  spaced  "}\x0c\n')
    (root / "sub" / "notes.txt").write_text("  Hello world.\r\nSecond line.\r\n")
    (root / "sub" / "legacy.txt").write_bytes("café – naïve".encode("cp1252"))
    (root / "long.txt").write_text("word " * 300_000)
    (root / "u16.txt").write_bytes(("Grüße " * 200_000).encode("utf-16"))
    (root / "longrec.jsonl").write_text(json.dumps({"text": "x" * 300_000}) + "\n"
                                        + json.dumps({"text": "short"}) + "\n")


def test_documents_read_back_from_their_files_match_those_kept_in_memory(tmp_path, monkeypatch):
    hostile_folder(tmp_path)
    kept, _ = run_to_end(load_text_folder(tmp_path))
    assert isinstance(kept.texts, list)
    monkeypatch.setattr(text_folder, "INLINE_BUDGET_BYTES", 0)
    streamed, _ = run_to_end(load_text_folder(tmp_path))
    assert not isinstance(streamed.texts, list)
    assert list(streamed.items) == kept.items and list(streamed.texts) == kept.texts
    assert streamed.texts == kept.texts and kept.items == streamed.items
    assert list(streamed.paths) == kept.paths
    assert streamed.report == kept.report and streamed.encodings == kept.encodings
    assert streamed.texts.take([3, 0]) == [kept.texts[3], kept.texts[0]]
    assert streamed.texts[-1] == kept.texts[-1] and streamed.items[-2:] == kept.items[-2:]

    by_key = dict(zip(kept.items, kept.texts))
    assert by_key["w16.jsonl#2"] == "two\u2028lines" and kept.encodings["w16.jsonl"] == "utf-16"
    assert [by_key[f"w32.csv#{n}"] for n in (1, 2, 3)] == ["multi\nline\r\ncell", "plain", "lone cr"]
    assert [by_key[f"cr.csv#{n}"] for n in (1, 2, 3)] == ["first", "quoted\r\nnewline", "third"]
    assert [by_key[f"bom.jsonl#{n}"] for n in (1, 2, 4)] == ["bom first", "legacy “quote”", "spaced"]
    assert by_key["sub/notes.txt"] == "Hello world.\nSecond line."
    assert by_key["sub/legacy.txt"] == "café – naïve"
    cap = text_files.MAX_DOCUMENT_CHARS
    assert len(by_key["long.txt"]) == len(by_key["u16.txt"]) == len(by_key["longrec.jsonl#1"]) == cap
    assert by_key["u16.txt"].startswith("Grüße Grüße") and by_key["longrec.jsonl#2"] == "short"
    assert kept.truncated == ["long.txt", "longrec.jsonl", "u16.txt"]
    assert kept.report.skipped == [("w16.jsonl", "partly unusable: 1 of 3 records (not JSON)")]


def test_a_file_changed_after_the_scan_is_not_read_as_something_else(tmp_path, monkeypatch):
    monkeypatch.setattr(text_folder, "INLINE_BUDGET_BYTES", 0)
    write_jsonl(tmp_path / "a.jsonl", 3, 5)
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.texts[2].startswith("record 2")
    write_jsonl(tmp_path / "a.jsonl", 3, 6)
    with pytest.raises(DataError, match="a.jsonl changed after the folder was scanned"):
        data.texts[2]
    (tmp_path / "a.jsonl").unlink()
    with pytest.raises(DataError, match="a.jsonl can no longer be read"):
        list(data.texts)


@pytest.fixture
def small_records(monkeypatch):
    """MAX_RECORD_BYTES at 1 KiB; csv's global field limit back as it was afterwards."""
    monkeypatch.setattr(text_files, "MAX_RECORD_BYTES", 1024)
    limit = csv.field_size_limit()
    yield
    csv.field_size_limit(limit)


def test_endless_lines_and_rows_are_passed_over_not_held(tmp_path, small_records):
    (tmp_path / "long.jsonl").write_text(json.dumps({"text": "fine"}) + "\n"
                                         + json.dumps({"text": "y" * 5000}) + "\n"
                                         + json.dumps({"text": "after"}) + "\n")
    (tmp_path / "oneline.jsonl").write_text(json.dumps({"text": "z" * 5000}))
    (tmp_path / "quote.csv").write_text('id,text\n1,fine\n2,"never closed\n' + "more\n" * 500)
    (tmp_path / "wide.csv").write_text("id,text\n1," + "w" * 5000 + "\n")
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.items == ["long.jsonl#1", "long.jsonl#3"] and data.texts == ["fine", "after"]
    assert dict(data.report.skipped) == {
        "long.jsonl": "partly unusable: 1 of 3 records (line over 1 KB)",
        "oneline.jsonl": "no usable records (every line over 1 KB)",
        "quote.csv": "malformed CSV: a row over 1 KB (a quote left open?)",
        "wide.csv": "malformed CSV: a line over 1 KB",
    }


def test_a_cut_inside_a_character_keeps_the_encoding(tmp_path, monkeypatch):
    # 9 bytes read: four "é" and half of the fifth; a byte-order mark, "ab" and three bytes of
    # a surrogate pair. Decoded as if complete, both would have been taken for cp1252.
    monkeypatch.setattr(text_files, "MAX_DOCUMENT_CHARS", 3)
    monkeypatch.setattr(text_files, "MAX_DOCUMENT_BYTES", 9)
    (tmp_path / "utf8.txt").write_text("ééééé", encoding="utf-8")
    (tmp_path / "utf16.txt").write_bytes("ab\U0001F600cd".encode("utf-16"))
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.texts == ["ab", "ééé"] and data.encodings == {"utf16.txt": "utf-16"}
    assert data.truncated == ["utf16.txt", "utf8.txt"]


def test_encoding_cuts_long_texts_to_what_max_length_can_use():
    texts = ["a short one", prose(5000), "x" * 40 + " " + prose(100)]
    tokenizer = configure(train_tokenizer(texts * 3, "wordpiece", 300), 16)
    encoding = encode_all(tokenizer, texts, chunk=2)
    progress = []
    while True:
        try:
            progress.append(next(encoding))
        except StopIteration as stop:
            ids = stop.value
            break
    assert progress == [(2, 3), (3, 3)]
    assert ids.dtype == np.uint16 and ids.shape == (3, 16)
    assert ids.tolist() == [e.ids for e in tokenizer.encode_batch(texts)]
