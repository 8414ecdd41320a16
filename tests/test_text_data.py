from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data import text_files
from sslstudio.core.data.scan import DataError, detect_modality
from sslstudio.core.data.text_folder import (
    TEXT_EXTENSIONS,
    TextFolderData,
    item_file,
    load_text_folder,
    snippet,
)
from sslstudio.core.events import ScanFinished, ScanProgress
from tests.conftest import run_to_end


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def jsonl(*lines) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def make_messy_text_folder(root: Path) -> None:
    write(root / "notes.txt", "  Hello world.\r\nSecond line.\r\n\r\n")
    write(root / "readme.md", "# Title\n\nBody text.\n")
    write(root / "reviews.jsonl", jsonl(
        {"text": " good one "}, "", "not json at all", {"text": ""}, [1, 2], {"other": 1},
        {"text": "second good", "stars": 4}))
    write(root / "table.csv", 'id;Text\n1;first row\n2;\n3;"third; with a semicolon"\n')
    write(root / "legacy.txt", "café – naïve".encode("cp1252"))
    write(root / "bom.txt", b"\xef\xbb\xbfwith a bom")
    write(root / "blob.txt", b"GIF89a\x00\x01\x02binary")
    write(root / "controls.txt", bytes(range(1, 9)) * 100)
    write(root / "empty.txt", b"")
    write(root / "blank.md", "  \n\t\n")
    write(root / "noisy.jsonl", jsonl({"review": "nice", "stars": 5}, {"review": "bad", "stars": 1}))
    write(root / "nocol.csv", "id,body\n1,hello\n")
    write(root / "picture.png", b"not looked at")
    write(root / ".hidden.txt", "never listed")


def test_messy_folder_yields_documents_and_every_skip_has_its_reason(tmp_path):
    root = tmp_path / "texts"
    make_messy_text_folder(root)
    data, events = run_to_end(load_text_folder(root))

    assert isinstance(data, TextFolderData) and data.modality == "text"
    assert data.items == ["bom.txt", "legacy.txt", "notes.txt", "readme.md", "reviews.jsonl#1",
                          "reviews.jsonl#7", "table.csv#1", "table.csv#3"]
    assert data.texts == ["with a bom", "café – naïve", "Hello world.\nSecond line.",
                          "# Title\n\nBody text.", "good one", "second good", "first row",
                          "third; with a semicolon"]
    assert len(data) == 8 and data.labels.dtype == np.int64 and (data.labels == -1).all()
    assert not data.has_labels and data.class_names == ()
    assert data.encodings == {"legacy.txt": "cp1252"}
    assert data.paths[4] == root / "reviews.jsonl" and data.paths[0] == root / "bom.txt"
    assert len(data.paths) == len(data)

    skipped = dict(data.report.skipped)
    assert skipped == {
        "blank.md": "empty file (whitespace only)",
        "blob.txt": "binary file, not text",
        "controls.txt": "binary file, not text",
        "empty.txt": "empty file (0 bytes)",
        "nocol.csv": "no 'text' column (columns: id, body)",
        "noisy.jsonl": "no 'text' field (fields: review, stars)",
        "reviews.jsonl": "partly unusable: 4 of 6 records (not JSON, 'text' empty or not text, "
                         "not a JSON object, no 'text' field)",
        "table.csv": "partly unusable: 1 of 3 records (empty 'text' cell)",
    }
    report = data.report
    assert (report.total_files, report.usable, report.ignored) == (12, 6, 1)
    assert report.skipped_by_reason()["partly unusable"] == 2
    assert report.skipped_by_reason()["empty file"] == 2

    assert isinstance(events[0], ScanProgress) and events[0].done == events[0].total == 12
    finished = events[-1]
    assert isinstance(finished, ScanFinished)
    assert (finished.total_files, finished.usable, finished.skipped) == (12, 6, 8)
    assert finished.skipped_by_reason == report.skipped_by_reason()


def test_csv_delimiters_header_case_and_huge_cells(tmp_path):
    long_text = "word " * 40_000  # 200 KB: over csv's default 128 KiB field limit
    write(tmp_path / "comma.csv", f'TEXT,label\n"a, b",1\n"{long_text}",2\n')
    write(tmp_path / "tab.csv", "n\t Text \nx\ttabbed\n")
    write(tmp_path / "pipe.csv", "text|n\npiped|1\n")
    write(tmp_path / "lone.csv", "text\njust one column, with a comma\n")
    write(tmp_path / "last.csv", "id,text\n7,Well, fine\n")
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.items == ["comma.csv#1", "comma.csv#2", "last.csv#1", "lone.csv#1", "pipe.csv#1",
                          "tab.csv#1"]
    assert data.texts[0] == "a, b" and data.texts[1] == long_text.strip()
    assert data.texts[2:] == ["Well, fine", "just one column, with a comma", "piped", "tabbed"]
    assert data.report.skipped == []


def test_custom_text_field(tmp_path):
    write(tmp_path / "reviews.jsonl", jsonl({"review": "nice", "stars": 5}))
    write(tmp_path / "reviews.csv", "Review,stars\nfine,3\n")
    data, _ = run_to_end(load_text_folder(tmp_path, text_field="review"))
    assert data.items == ["reviews.csv#1", "reviews.jsonl#1"] and data.texts == ["fine", "nice"]


def test_other_encodings_are_decoded_and_recorded(tmp_path):
    write(tmp_path / "utf16.txt", "Grüße aus Köln".encode("utf-16"))
    write(tmp_path / "latin.txt", b"caf\xe9 \x81")  # 0x81 is undefined in cp1252
    write(tmp_path / "plain.txt", "naïve but UTF-8")
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.texts == ["café \x81", "naïve but UTF-8", "Grüße aus Köln"]
    assert data.encodings == {"latin.txt": "latin-1", "utf16.txt": "utf-16"}
    assert data.report.skipped == []


def test_unreadable_vanished_and_too_large_files(tmp_path, monkeypatch):
    write(tmp_path / "good.txt", "fine")
    write(tmp_path / "unreadable.txt", "locked")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "no-such-file.txt")
    with open(tmp_path / "huge.txt", "wb") as handle:
        handle.truncate(51 * 2**20)  # sparse: the size check rejects it before any read
    real_open = text_files.open_text_file

    def fake_open(path):
        # chmod alone does not stop root, which the tests may run as.
        if Path(path).stem == "unreadable":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(text_files, "open_text_file", fake_open)
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert data.items == ["good.txt"]
    assert dict(data.report.skipped) == {
        "gone.txt": "file vanished or is a broken link",
        "huge.txt": "too large (51 MB; at most 50 MB per file)",
        "unreadable.txt": "unreadable: permission denied",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_for_real(tmp_path):
    write(tmp_path / "good.txt", "fine")
    write(tmp_path / "locked.txt", "secret").chmod(0)
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert dict(data.report.skipped) == {"locked.txt": "unreadable: permission denied"}


def test_jsonl_that_is_not_json_lines(tmp_path):
    write(tmp_path / "good.txt", "fine")
    write(tmp_path / "array.jsonl", '[{"text": "a JSON array"},\n {"text": "not JSON Lines"}]\n')
    write(tmp_path / "nulls.jsonl", jsonl({"text": None}, {"text": 3}))
    write(tmp_path / "header_only.csv", "text,label\n")
    data, _ = run_to_end(load_text_folder(tmp_path))
    assert dict(data.report.skipped) == {
        "array.jsonl": "not JSON Lines (no line holds a JSON object)",
        "header_only.csv": "no rows under the header",
        "nulls.jsonl": "no usable 'text' values ('text' empty or not text)",
    }


def test_labels_come_from_first_level_folders_only_when_asked(tmp_path):
    write(tmp_path / "pos" / "a.txt", "great")
    write(tmp_path / "pos" / "deep" / "b.jsonl", jsonl({"text": "one"}, {"text": "two"}))
    write(tmp_path / "neg" / "c.txt", "awful")
    write(tmp_path / "top.txt", "no class")
    data, _ = run_to_end(load_text_folder(tmp_path, labels_from_folders=True))
    assert data.class_names == ("neg", "pos")
    assert data.items == ["neg/c.txt", "pos/a.txt", "pos/deep/b.jsonl#1", "pos/deep/b.jsonl#2",
                          "top.txt"]
    assert data.labels.tolist() == [0, 1, 1, 1, -1] and data.has_labels
    assert data.paths[2] == tmp_path / "pos" / "deep" / "b.jsonl"
    unlabelled, _ = run_to_end(load_text_folder(tmp_path))
    assert unlabelled.class_names == () and not unlabelled.has_labels


def test_item_keys_are_stable_across_scans_and_new_files(tmp_path):
    write(tmp_path / "b.jsonl", jsonl({"text": "first"}, "", {"text": "third line"}))
    write(tmp_path / "notes#2.txt", "a hash in the name")
    first, _ = run_to_end(load_text_folder(tmp_path))
    assert first.items == ["b.jsonl#1", "b.jsonl#3", "notes#2.txt"]
    assert first.paths[2] == tmp_path / "notes#2.txt"
    write(tmp_path / "a.txt", "a new file sorts first")
    second, _ = run_to_end(load_text_folder(tmp_path))
    assert second.items[1:] == first.items and second.texts[1:] == first.texts
    assert item_file("x.csv#12") == "x.csv" and item_file("x.txt") == "x.txt"


def test_progress_every_chunk_then_finished(tmp_path):
    for i in range(300):
        write(tmp_path / f"{i:03d}.txt", f"document {i}")
    data, events = run_to_end(load_text_folder(tmp_path))
    progress = [e for e in events if isinstance(e, ScanProgress)]
    assert [(e.done, e.total) for e in progress] == [(256, 300), (300, 300)]
    assert progress[-1].current == "299.txt"
    assert isinstance(events[-1], ScanFinished) and events[-1].usable == 300 and len(data) == 300


def test_cancel_is_noticed_at_the_first_checkpoint(tmp_path):
    write(tmp_path / "a.txt", "hello")
    control = RunControl()
    control.cancel()
    scan = load_text_folder(tmp_path, control=control)
    assert isinstance(next(scan), ScanProgress)
    with pytest.raises(Cancelled):
        next(scan)


def test_folders_without_text_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="not found"):
        run_to_end(load_text_folder(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no text documents .*expected \.txt, \.md, \.jsonl or \.csv"):
        run_to_end(load_text_folder(tmp_path / "empty"))
    png(tmp_path / "pictures" / "a.png")
    with pytest.raises(DataError, match="it holds images"):
        run_to_end(load_text_folder(tmp_path / "pictures"))
    write(tmp_path / "other" / "data.bin", b"\x00\x01")
    with pytest.raises(DataError, match="other files only"):
        run_to_end(load_text_folder(tmp_path / "other"))
    write(tmp_path / "broken" / "a.txt", b"")
    write(tmp_path / "broken" / "b.jsonl", jsonl({"body": "x"}))
    with pytest.raises(DataError, match=r"none of the 2 text files .*'text' field"):
        run_to_end(load_text_folder(tmp_path / "broken"))


def test_detect_modality(tmp_path, image_folder):
    assert detect_modality(image_folder) == "image"
    texts = tmp_path / "texts"
    for i in range(5):
        write(texts / f"{i}.txt", "words")
    write(texts / ".hidden" / "x.png", b"")
    write(texts / ".thumb.png", b"")
    assert detect_modality(texts) == "text"
    mixed = tmp_path / "mixed"
    for i in range(4):
        png(mixed / f"{i}.png")
        write(mixed / f"{i}.txt", "a caption")
    assert detect_modality(mixed) == "mixed"
    mostly_images = tmp_path / "mostly_images"
    for i in range(30):
        png(mostly_images / "pics" / f"{i:02d}.png")
    write(mostly_images / "README.md", "about these pictures")
    assert detect_modality(mostly_images) == "image"
    assert detect_modality(mostly_images, probe=1) == "text"  # README.md is met first
    write(tmp_path / "others" / "a.bin", b"\x00")
    assert detect_modality(tmp_path / "others") == "empty"
    assert detect_modality(tmp_path / "missing") == "empty"
    assert ".jsonl" in TEXT_EXTENSIONS and ".csv" in TEXT_EXTENSIONS


def test_snippet():
    assert snippet("  short\n\ttext  ") == "short text"
    long = "alpha beta gamma delta " * 20
    preview = snippet(long, 40)
    assert len(preview) <= 40 and preview == "alpha beta gamma delta alpha beta gamma…"
    assert snippet("x" * 100, 10) == "x" * 9 + "…"
    exact = snippet("one two three four", 8)  # the 8th character is a space: no word is lost
    assert exact == "one two…"
