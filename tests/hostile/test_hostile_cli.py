"""Every command pointed at something precious, at broken run files and at odd names: the data
folder and anything the program did not make stay byte-identical, and every refusal is one line.

The faults here were each seen by a tester (issue 11); each test failed before its fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sslstudio.cli import main
from tests.conftest import make_image_folder

TRAIN_FAST = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--quiet",
              "--backbone", "small_cnn"]


def fingerprint(root: Path) -> dict:
    """Content, mode and mtime of everything below `root` (or of `root` itself, a file)."""
    root = Path(root)
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    out = {}
    for path in paths:
        stat = path.lstat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root) if path != root else ".")] = (content, stat.st_mode,
                                                                    stat.st_mtime_ns)
    return out


def one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("sslstudio: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def trained_and_labelled(root: Path, per_class: int) -> dict:
    """A data folder of two classes, a run trained on it, and a labels CSV of every item."""
    data = make_image_folder(root / "data", classes=2, per_class=per_class)
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TRAIN_FAST]) == 0
    labels = root / "labels.csv"
    labels.write_text("path,label\n" + "".join(
        f"{p.relative_to(data).as_posix()},{p.parent.name}\n" for p in sorted(data.rglob("*.png"))))
    return {"root": root, "data": data, "run": run, "labels": labels}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A data folder, a run trained on it, its labels and an adapted model, made once."""
    root = tmp_path_factory.mktemp("hostile")
    made = trained_and_labelled(root, per_class=10)
    data, run, labels = made["data"], made["run"], made["labels"]
    adapted = root / "adapted"
    assert main(["adapt", str(run), "--data", str(data), "--labels", str(labels),
                 "--out", str(adapted)]) == 0
    precious = root / "precious"
    shutil.copytree(data, precious)
    (precious / "NOTES.txt").write_text("the only copy")
    (precious / "sub").mkdir()
    return {"root": root, "data": data, "run": run, "labels": labels, "adapted": adapted,
            "precious": precious, "data_print": fingerprint(data)}


@pytest.fixture
def guard(made):
    """Asserts after the test that the data and the precious folder are untouched."""
    before = fingerprint(made["precious"])
    yield made
    assert fingerprint(made["precious"]) == before
    assert fingerprint(made["data"]) == made["data_print"]


# -- item 1: adapt --out never deletes what it did not make --------------------------------------
@pytest.mark.parametrize("where", ["precious", "dot", "dotdot", "inside_data", "file"])
def test_adapt_out_refuses_anything_that_is_not_its_own(guard, capsys, monkeypatch, where):
    made = guard
    base = ["adapt", str(made["run"]), "--data", str(made["data"]), "--labels", str(made["labels"])]
    precious_file = made["root"] / "precious.csv"
    precious_file.write_text("keep")
    targets = {"precious": str(made["precious"]), "dot": ".", "dotdot": "..",
               "inside_data": str(made["data"] / "class_0" / "model"), "file": str(precious_file)}
    monkeypatch.chdir(made["precious"] / "sub" if where == "dotdot" else made["precious"])
    code = main(base + ["--out", targets[where]])
    one_line_error(capsys, code, "--out")
    assert precious_file.read_text() == "keep"
    # --overwrite changes nothing for what is not ours.
    code = main(base + ["--out", targets[where], "--overwrite"])
    one_line_error(capsys, code)


def test_adapt_replaces_its_own_model_only_with_overwrite_and_keeps_foreign_partials(guard, capsys):
    made = guard
    target = made["root"] / "model-again"
    base = ["adapt", str(made["run"]), "--data", str(made["data"]), "--labels", str(made["labels"]),
            "--out", str(target)]
    # Someone's folder that happens to carry the name the old code used for its scratch copy.
    foreign_partial = made["root"] / "model-again.partial"
    foreign_partial.mkdir()
    (foreign_partial / "mine.txt").write_text("not yours")
    assert main(base) == 0
    first = (target / "adapted.toml").stat().st_ino
    one_line_error(capsys, main(base), "already holds an adapted model", "--overwrite")
    assert (target / "adapted.toml").stat().st_ino == first
    assert main(base + ["--overwrite"]) == 0
    assert (target / "adapted.toml").stat().st_ino != first  # a new model took its place
    assert (foreign_partial / "mine.txt").read_text() == "not yours"
    leftovers = [p.name for p in made["root"].iterdir() if p.name.startswith(".model-again")]
    assert not leftovers, leftovers


# -- items 1 and 8: every output path is checked first ------------------------------------------
def test_embed_predict_export_never_overwrite_or_write_into_the_data(guard, capsys):
    made = guard
    root, data = made["root"], made["data"]
    existing = root / "kept.npy"
    existing.write_bytes(b"precious")
    kept_paths = root / "kept2.paths.txt"
    kept_paths.write_text("precious")
    kept_csv = root / "kept.csv"
    kept_csv.write_text("precious")
    kept_json = root / "kept3.json"
    kept_json.write_text("precious")
    calls = [
        (["embed", str(made["run"]), "--data", str(data), "--out", str(existing)], "already exists"),
        (["embed", str(made["run"]), "--data", str(data), "--out", str(root / "kept2.npy")],
         "kept2.paths.txt already exists"),
        (["embed", str(made["run"]), "--data", str(data), "--out", str(data / "feats.npy")],
         "inside the data folder"),
        (["predict", str(made["adapted"]), "--data", str(data), "--out", str(kept_csv)], "already exists"),
        (["predict", str(made["adapted"]), "--data", str(data), "--out", str(root)], "is a folder"),
        (["predict", str(made["adapted"]), "--data", str(data), "--out", str(data / "p.csv")],
         "inside the data folder"),
        (["export", str(made["adapted"]), "--out", str(root / "kept3.onnx")], "kept3.json already exists"),
        (["export", str(made["adapted"]), "--out", str(data / "model.onnx")], "inside the data folder"),
        (["train", "--data", str(data), "--out", str(kept_csv), *TRAIN_FAST], "not a folder"),
        (["train", "--data", str(data), "--out", str(kept_csv / "run"), *TRAIN_FAST], "is a file"),
        (["train", "--data", str(data), "--out", str(made["precious"]), *TRAIN_FAST], "not a run"),
        (["train", "--data", str(data), "--out", str(data / "run"), *TRAIN_FAST], "inside the data folder"),
        (["train", "--data", str(data), "--out", str(made["run"]), *TRAIN_FAST], "--resume"),
    ]
    for args, needle in calls:
        one_line_error(capsys, main(args), needle)
    assert existing.read_bytes() == b"precious" and kept_csv.read_text() == "precious"
    assert kept_paths.read_text() == "precious" and kept_json.read_text() == "precious"
    assert not (root / "kept3.onnx").exists()
    # With --overwrite an existing output file of the user's choosing is replaced.
    assert main(["predict", str(made["adapted"]), "--data", str(data), "--out", str(kept_csv),
                 "--overwrite"]) == 0
    assert kept_csv.read_text().startswith("path,label,confidence")


def test_an_unwritable_place_is_refused_before_any_work(guard, capsys, monkeypatch):
    made = guard
    target = made["root"] / "locked" / "run"
    (made["root"] / "locked").mkdir(exist_ok=True)
    real_access = os.access
    # Root writes anywhere, so a read-only place is simulated where the check asks.
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).endswith("locked")
                        else real_access(p, mode, **k))
    code = main(["train", "--data", str(made["data"]), "--out", str(target), *TRAIN_FAST])
    err = one_line_error(capsys, code, "not writable")
    assert "scanned" not in err and not target.exists()


def test_bad_weights_fail_before_the_scan_and_never_suggest_unsafe_loading(guard, capsys, tmp_path):
    made = guard
    random_bytes = tmp_path / "weights.pth"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "run"
    code = main(["train", "--data", str(made["data"]), "--out", str(out), "--weights",
                 str(random_bytes), "--epochs", "1", "--image-size", "16", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and "not a weights file" in captured.err
    assert "weights_only" not in captured.err and "pickled" not in captured.err
    assert "scanned" not in captured.out and not out.exists()
    # A pickle that would build a module is refused without torch's advice to trust it.
    evil = tmp_path / "evil.pth"
    torch.save({"layer": torch.nn.Linear(2, 2)}, evil)
    code = main(["train", "--data", str(made["data"]), "--out", str(out), "--weights", str(evil),
                 "--epochs", "1", "--image-size", "16", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "could run code" in err and "weights_only" not in err
    assert "allowlist" not in err and "Please" not in err


# -- item 2: a loop that cannot progress ends ----------------------------------------------------
def test_resume_on_a_folder_smaller_than_the_batch_trains_and_ends(guard, capsys, tmp_path):
    made = guard
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(made["data"].rglob("*.png"))[:4]:
        shutil.copy(path, small / path.name)
    code = main(["train", "--resume", str(run), "--data", str(small), "--other-data", "--epochs", "2",
                 "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "batch size 8 is larger than the 4 images per process; using 4" in out.err
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


@pytest.mark.timeout(120)
def test_a_loop_that_can_make_no_step_ends_with_a_reason(image_folder, tmp_path, monkeypatch):
    from sslstudio.core.events import RunFinished, StepMetrics
    from sslstudio.core.run import loop
    from sslstudio.core.run import train as train_module
    from sslstudio.core.run.config import TrainConfig

    # An epoch order with no room for a batch (as a shrunken folder or a lost rank gives).
    monkeypatch.setattr(loop, "epoch_order", lambda count, *a: np.arange(min(count, 3)))
    config = TrainConfig(data=str(image_folder), out=str(tmp_path / "run"), objective="simclr",
                         minutes=0.05, batch_size=8, image_size=16, backbone="small_cnn")
    events = list(train_module.train(config))
    finished = [e for e in events if isinstance(e, RunFinished)][0]
    assert finished.status == "failed" and "no training step can run" in finished.message
    assert not [e for e in events if isinstance(e, StepMetrics)]
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


# -- item 9: nothing left behind by a run that never started ---------------------------------------
def test_a_run_that_fails_before_its_first_step_leaves_no_folder(capsys, tmp_path):
    data = make_image_folder(tmp_path / "one", classes=1, per_class=1)
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), *TRAIN_FAST])
    one_line_error(capsys, code, "too few")
    assert not out.exists()
    # An empty folder the user made stays, and stays empty.
    out.mkdir()
    main(["train", "--data", str(data), "--out", str(out), *TRAIN_FAST])
    capsys.readouterr()
    assert out.is_dir() and not any(out.iterdir())


# -- item 6: damaged checkpoints --------------------------------------------------------------------
def _two_checkpoints(made, tmp_path) -> Path:
    """A copy of the run, trained on so that last and previous checkpoints both exist."""
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert (run / "checkpoints" / "previous.safetensors").exists()
    return run


def _rewrite_tensor(path: Path, name: str, value: float) -> None:
    """Overwrite one tensor's bytes in place, leaving the header (and its checksums) as is."""
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    start, end = header[name]["data_offsets"]
    fill = np.full((end - start) // 4, value, np.float32).tobytes()
    raw[8 + header_len + start:8 + header_len + end] = fill
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncated", "bit_flip", "nan_tensor", "garbage_header"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(guard, capsys, tmp_path, damage):
    from safetensors import safe_open

    made = guard
    run = _two_checkpoints(made, tmp_path)
    last = run / "checkpoints" / "last.safetensors"
    raw = last.read_bytes()
    if damage == "truncated":
        last.write_bytes(raw[: len(raw) // 2])
    elif damage == "bit_flip":
        flipped = bytearray(raw)
        flipped[-100] ^= 0x10
        last.write_bytes(bytes(flipped))
    elif damage == "nan_tensor":
        with safe_open(str(last), "pt") as handle:
            name = next(k for k in handle.keys() if k.startswith("model.encoder") and "weight" in k)
        _rewrite_tensor(last, name, float("nan"))
    else:
        last.write_bytes(b"\xff" * 64 + raw[64:])
    capsys.readouterr()
    assert main(["embed", str(run), "--data", str(made["data"]), "--out", str(tmp_path / "f")]) == 0
    assert "using the previous checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "unusable" in out.err and "previous checkpoint instead, from step" in out.err
    assert "Traceback" not in out.err


def test_a_tensor_replaced_with_nan_in_an_old_unchecksummed_file_is_caught(guard, tmp_path):
    from safetensors.torch import load_file, save_file

    from sslstudio.core.run.checkpoint import CheckpointError, read_checkpoint

    made = guard
    path = tmp_path / "checkpoints" / "last.safetensors"
    path.parent.mkdir()
    source = made["run"] / "checkpoints" / "last.safetensors"
    tensors = load_file(str(source))
    metadata = dict(read_checkpoint(source).metadata)
    metadata.pop("checksums")  # as files written before checksums were
    save_file(tensors, str(path), metadata=metadata)
    assert read_checkpoint(path).fallback_note == ""  # an old, healthy file still loads
    name = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="NaN"):
        read_checkpoint(path)


def test_no_usable_checkpoint_is_one_clear_line(guard, capsys, tmp_path):
    made = guard
    run = _two_checkpoints(made, tmp_path)
    for name in ("last.safetensors", "previous.safetensors"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    for args in (["train", "--resume", str(run), "--epochs", "3", "--quiet"],
                 ["export", str(run), "--out", str(tmp_path / "m.onnx")],
                 ["embed", str(run), "--data", str(made["data"]), "--out", str(tmp_path / "f")]):
        one_line_error(capsys, main(args), "no usable checkpoint", "truncated or corrupt")


def test_a_checkpoint_that_does_not_read_back_never_replaces_the_good_one(tmp_path, monkeypatch):
    from sslstudio.core.run import checkpoint as ckpt

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "checkpoints" / "last.safetensors"
    ckpt.save_checkpoint(path, model, optimizer, ckpt.LoopState(step=1), {})
    good = path.read_bytes()
    real_read = ckpt.read_checkpoint_file

    def failing_disk(p):
        if p.name.endswith(".partial"):
            raise ckpt.CheckpointError("it is truncated or corrupt (simulated)")
        return real_read(p)

    monkeypatch.setattr(ckpt, "read_checkpoint_file", failing_disk)
    with pytest.raises(OSError, match="does not read back intact"):
        ckpt.save_checkpoint(path, model, optimizer, ckpt.LoopState(step=2), {})
    assert path.read_bytes() == good


# -- item 4: names that are not UTF-8 --------------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="POSIX file names are bytes")
def test_names_that_are_not_utf8_round_trip_through_every_file_we_write(capsys, tmp_path):
    from sslstudio.core.fileio import read_path_lines
    from sslstudio.core.labels import LabelStore, read_label_csv

    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    odd = {"bad\udcff.png": b"bad\xff.png", "new\nline.png": b"new\nline.png",
           "-dash.png": b"-dash.png", "x" * 200 + ".png": b"x" * 200 + b".png"}
    source = sorted((data / "class_0").glob("*.png"))[0].read_bytes()
    for raw in odd.values():
        with open(os.fsencode(data / "class_1") + b"/" + raw, "wb") as handle:
            handle.write(source)
    (data / "class_0" / "broken\udcfe.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TRAIN_FAST]) == 0
    skipped = (run / "skipped.csv").read_bytes()
    assert b"broken\xfe.png" in skipped
    feats = tmp_path / "feats.npy"
    assert main(["embed", str(run), "--data", str(data), "--out", str(feats)]) == 0
    paths = read_path_lines(tmp_path / "feats.paths.txt")
    assert len(paths) == len(np.load(feats))
    for name in odd:
        assert str(data / "class_1" / name) in paths
        assert Path(str(data / "class_1" / name)).exists()
    labels = tmp_path / "labels.csv"
    rows = [f"{Path(p).relative_to(data).as_posix()},{Path(p).parent.name}" for p in paths
            if "\n" not in p]
    labels.write_bytes(("path,label\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogateescape"))
    assert {r[0] for _, r in read_label_csv(labels)} >= {"class_1/bad\udcff.png"}
    adapted = tmp_path / "adapted"
    assert main(["adapt", str(run), "--data", str(data), "--labels", str(labels), "--out", str(adapted)]) == 0
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(adapted), "--data", str(data), "--out", str(predictions)]) == 0
    assert b"bad\xff.png" in predictions.read_bytes()
    assert b"bad\xff.png" in (adapted / "labels.csv").read_bytes()
    store = LabelStore(tmp_path / "labels.sqlite")
    cls = store.add_class("odd")
    store.assign(["class_1/bad\udcff.png", "class_1/new\nline.png"], cls.id)
    store.close()
    again = LabelStore(tmp_path / "labels.sqlite")
    assert set(again.labels()) == {"class_1/bad\udcff.png", "class_1/new\nline.png"}
    again.export_csv(tmp_path / "out.csv")
    assert {r[0] for _, r in read_label_csv(tmp_path / "out.csv")} == set(again.labels())
    again.close()


# -- item 9: a path labelled twice --------------------------------------------------------------------
def test_a_path_labelled_twice_with_different_classes_is_left_out_and_said(guard, capsys, tmp_path):
    from sslstudio.core.labels import LabelStore

    made = guard
    rows = made["labels"].read_text().splitlines()
    twice = rows[1].split(",")[0]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows + [f"{twice},class_1", f"{rows[2]}"]) + "\n")
    from sslstudio.cli import read_labels_csv

    read = read_labels_csv(labels, made["data"])
    assert twice not in read and rows[2].split(",")[0] in read  # the same label twice is fine
    assert "labelled twice with different classes" in capsys.readouterr().err
    store = LabelStore(tmp_path / "labels.sqlite")
    items = [r.split(",")[0] for r in rows[1:]]
    report = store.import_csv(labels, made["data"], items)
    assert report.conflicts and twice in report.conflicts[0]
    assert twice not in store.label_names()
    assert "labelled twice" in report.summary()
    store.close()


# -- found by bench/faults.py: kills before the first checkpoint, resuming a finished run ----------
def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_started_again(guard, capsys, tmp_path):
    made = guard
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    shutil.rmtree(run / "checkpoints")  # as a kill before the first save leaves it
    (run / "status.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "stopped before its first checkpoint; starting it again" in capsys.readouterr().err
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    # Killed during the scan: only the scan's files. Starting it again is allowed, resuming is not.
    early = tmp_path / "early"
    early.mkdir()
    for name in ("skipped.csv", "scan_report.json"):
        shutil.copy(made["run"] / name, early / name)
    one_line_error(capsys, main(["train", "--resume", str(early)]), "nothing to resume")
    assert main(["train", "--data", str(made["data"]), "--out", str(early), *TRAIN_FAST]) == 0


def test_resuming_a_finished_run_changes_nothing(guard, capsys, tmp_path):
    from safetensors.torch import load_file

    made = guard
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    before = load_file(str(run / "checkpoints" / "last.safetensors"))
    step = json.loads((run / "status.json").read_text())["step"]
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    after = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert json.loads((run / "status.json").read_text())["step"] == step
    # BatchNorm statistics and counters too: not one batch went through the model.
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("model."))


def test_taking_back_a_failed_run_leaves_what_someone_else_put_in_its_folder(image_folder, tmp_path,
                                                                            monkeypatch):
    from sslstudio.core.run import train as train_module
    from sslstudio.core.data.scan import DataError
    from sslstudio.core.run.config import TrainConfig

    out = tmp_path / "run"
    out.mkdir()

    def failing_plan(config, setup, data, preprocess, weights, prepared=None):
        (out / "notes.txt").write_text("written by the user while the folder was scanned")
        raise DataError("too few")

    monkeypatch.setattr(train_module, "make_plan", failing_plan)
    config = TrainConfig(data=str(image_folder), out=str(out), objective="simclr", epochs=1,
                         batch_size=8, image_size=16, backbone="small_cnn")
    with pytest.raises(DataError):
        list(train_module.train(config))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # skipped.csv etc. taken back
