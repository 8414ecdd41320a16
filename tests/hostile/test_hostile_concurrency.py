"""Two writers on one project, and kill -9 in the middle of adapt and export: nothing
half-written is ever taken for whole, and a second writer is told who holds the project."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sslstudio.cli import main
from sslstudio.core.labels import LabelError, LabelStore
from sslstudio.core.locks import ProjectLock, ProjectLocked
from tests.conftest import make_image_folder


def test_a_locked_label_file_says_so_instead_of_a_rollback_error(tmp_path, monkeypatch):
    monkeypatch.setattr("sslstudio.core.labels.BUSY_TIMEOUT_MS", 100)
    store = LabelStore(tmp_path / "labels.sqlite")
    cls = store.add_class("cat")
    other = sqlite3.connect(str(tmp_path / "labels.sqlite"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    store._db.execute("PRAGMA busy_timeout=100")
    with pytest.raises(LabelError, match="being changed by another"):
        store.assign(["a.png"], cls.id)
    with pytest.raises(LabelError, match="being changed by another"):
        store.add_class("dog")
    assert store.can_undo()  # the refused change left the history as it was
    other.execute("ROLLBACK")
    other.close()
    assert store.assign(["a.png"], cls.id) == 1
    assert store.undo() and store.labels() == {}
    store.close()


def test_add_class_never_overwrites_a_class_another_writer_just_added(tmp_path):
    first = LabelStore(tmp_path / "labels.sqlite")
    second = LabelStore(tmp_path / "labels.sqlite")
    first.classes()  # both have looked at the (empty) table
    second.classes()
    a = first.add_class("cat")
    b = second.add_class("dog")
    assert a.id != b.id
    assert {c.name for c in first.classes()} == {"cat", "dog"}
    with pytest.raises(LabelError, match="already a class"):
        second.add_class("cat")
    first.close()
    second.close()


def test_a_read_only_store_shows_labels_and_refuses_changes(tmp_path):
    writer = LabelStore(tmp_path / "labels.sqlite")
    cls = writer.add_class("cat")
    writer.assign(["a.png"], cls.id)
    reader = LabelStore(tmp_path / "labels.sqlite", read_only=True,
                        read_only_reason="p is open in SSL Studio (process 1)")
    assert reader.label_names() == {"a.png": "cat"}
    with pytest.raises(LabelError, match="read-only.*process 1"):
        reader.assign(["b.png"], cls.id)
    writer.close()
    reader.close()
    empty = LabelStore(tmp_path / "none" / "labels.sqlite", read_only=True)
    assert empty.labels() == {} and not (tmp_path / "none").exists()


def test_a_project_has_one_writer_and_a_killed_holder_frees_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    lock = ProjectLock.acquire(project)
    with pytest.raises(ProjectLocked, match=f"process {os.getpid()}"):
        ProjectLock.acquire(project)  # a second window of this process
    lock.release()
    script = textwrap.dedent(f"""
        import sys, time
        from sslstudio.core.locks import ProjectLock
        lock = ProjectLock.acquire({str(project)!r}, holder="sslstudio adapt")
        print("held", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectLocked, match=f"sslstudio adapt \\(process {holder.pid}"):
            ProjectLock.acquire(project)
    finally:
        holder.kill()
        holder.wait()
    ProjectLock.acquire(project).release()  # the OS dropped the dead holder's lock


def test_the_data_folder_never_becomes_a_project(tmp_path):
    from sslstudio.core.project import Project, ProjectError

    data = make_image_folder(tmp_path / "data", classes=1, per_class=2)
    project = Project.create(tmp_path / "elsewhere")
    inside = Project.create(data / "class_0" / "project")
    project.set_data_dir(str(data))
    with pytest.raises(ProjectError, match="inside the data folder"):
        inside.set_data_dir(str(data))


# -- kill -9 at random moments of adapt and export ----------------------------------------------------
def _cli(*args):
    return [sys.executable, "-m", "sslstudio", *args]


def _kill_at(args, delay: float) -> None:
    process = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    data = make_image_folder(root / "data", classes=2, per_class=8)
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--image-size",
                 "16", "--batch-size", "8", "--quiet", "--backbone", "small_cnn"]) == 0
    labels = root / "labels.csv"
    labels.write_text("".join(f"{p.relative_to(data).as_posix()},{p.parent.name}\n"
                              for p in sorted(data.rglob("*.png"))))
    return root, data, run, labels


def test_adapt_killed_at_random_moments_leaves_a_whole_model_or_none(trained):
    from sslstudio.core.adapt.job import load_adapted
    import torch

    root, data, run, labels = trained
    rng = np.random.default_rng(11)
    outcomes = []
    for trial in range(4):
        out = root / f"adapted-{trial}"
        _kill_at(["adapt", str(run), "--data", str(data), "--labels", str(labels), "--out", str(out),
                  "--method", "finetune", "--set", "epochs=3"], float(rng.uniform(2.0, 9.0)))
        if out.exists():
            load_adapted(out, torch.device("cpu"))  # whole: loads and has every file
            assert {"adapted.toml", "model.safetensors", "estimate.json", "predictions.csv"} <= {
                p.name for p in out.iterdir()}
        outcomes.append(out.exists())
        # The next attempt at the same place works; a scratch folder of the killed one stays hidden.
        assert main(["adapt", str(run), "--data", str(data), "--labels", str(labels), "--out",
                     str(out), "--overwrite"]) == 0
        load_adapted(out, torch.device("cpu"))


def test_export_killed_at_random_moments_never_leaves_a_model_that_fails_its_check(trained):
    import onnx

    root, data, run, _ = trained
    rng = np.random.default_rng(5)
    for trial in range(4):
        out = root / f"model-{trial}.onnx"
        _kill_at(["export", str(run), "--out", str(out)], float(rng.uniform(2.0, 10.0)))
        if out.exists():
            onnx.checker.check_model(onnx.load(str(out)))  # complete: renamed in only when verified
        assert not (root / f"model-{trial}.json").exists() or out.exists()
        assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
        assert json.loads((root / f"model-{trial}.json").read_text())["parity"]["float"]["passed"]
