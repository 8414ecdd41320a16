"""The label store: durable, undoable, importable."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from sslstudio.core.labels import LabelError, LabelStore


def test_classes_and_labels_round_trip_with_undo_and_redo(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    cat = store.add_class("cat")
    dog = store.add_class("dog")
    assert [c.name for c in store.classes()] == ["cat", "dog"]
    assert cat.colour != dog.colour
    assert store.assign(["a.png", "b.png"], cat.id) == 2
    assert store.assign(["b.png"], dog.id) == 1
    assert store.assign(["b.png"], dog.id) == 0  # no change, nothing to undo
    assert store.label_names() == {"a.png": "cat", "b.png": "dog"}
    assert store.undo() == "label 1 item dog"
    assert store.label_names() == {"a.png": "cat", "b.png": "cat"}
    assert store.redo() == "label 1 item dog"
    assert store.label_names() == {"a.png": "cat", "b.png": "dog"}

    store.rename_class(cat.id, "kitten")
    assert store.delete_class(dog.id) == 1
    assert store.label_names() == {"a.png": "kitten"}
    store.undo()  # the class and its label come back together
    assert store.label_names() == {"a.png": "kitten", "b.png": "dog"}
    store.undo()
    assert store.label_names()["a.png"] == "cat"
    store.assign(["c.png"], None)
    assert store.can_redo()  # nothing changed, so the redo history stays
    store.assign(["c.png"], cat.id)
    assert not store.can_redo()  # a new change ends the redo history
    labels, classes = store.label_array(["b.png", "zzz.png", "a.png"])
    assert labels.tolist() == [1, -1, 0] and [c.name for c in classes] == ["cat", "dog"]


@pytest.mark.parametrize("name, message", [("", "needs a name"), ("a,b", "comma"),
                                           ("cat", "already a class")])
def test_bad_class_names_are_refused_with_a_reason(tmp_path, name, message):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.add_class("cat")
    with pytest.raises(LabelError, match=message):
        store.add_class(name)


def test_a_label_survives_a_killed_process(tmp_path):
    path = tmp_path / "labels.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        from sslstudio.core.labels import LabelStore
        store = LabelStore({str(path)!r})
        cls = store.add_class("tumour")
        store.assign(["slide_1.png"], cls.id)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flush
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert LabelStore(path).label_names() == {"slide_1.png": "tumour"}


def test_csv_import_takes_relative_and_absolute_paths_and_reports_the_rest(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"path,label\nsub/a.png,cat\n{data / 'b.png'},dog\n"
                        f"elsewhere.png,cat\n{tmp_path / 'outside.png'},cat\njust-one-column\n")
    store = LabelStore(tmp_path / "labels.sqlite")
    report = store.import_csv(csv_file, data, ["sub/a.png", "b.png"])
    assert report.labelled == 2 and report.new_classes == ("cat", "dog")
    assert len(report.unknown_paths) == 2 and len(report.bad_rows) == 1
    assert store.label_names() == {"sub/a.png": "cat", "b.png": "dog"}
    assert store.undo().startswith("import 2 labels")  # the whole file is one undo step
    assert store.labels() == {} and store.classes() == []
    store.redo()
    out = tmp_path / "out.csv"
    assert store.export_csv(out) == 2
    assert out.read_text().splitlines() == ["path,label", "b.png,dog", "sub/a.png,cat"]
    store.export_csv(out, data_root=data)
    assert f"{data / 'b.png'},dog" in out.read_text()


def test_unreadable_csv_is_a_label_error(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(LabelError, match="not a UTF-8"):
        store.import_csv(bad, tmp_path, [])
    with pytest.raises(LabelError, match="cannot read"):
        store.import_csv(tmp_path / "missing.csv", tmp_path, [])
