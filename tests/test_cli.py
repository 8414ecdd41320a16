from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslstudio.cli import main


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "sslstudio", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_objectives_lists_names_and_knobs(capsys):
    assert main(["objectives"]) == 0
    out = capsys.readouterr().out
    for name in ("simclr", "moco", "byol", "simsiam", "rotation", "jigsaw"):
        assert f"\n{name}" in "\n" + out
    assert "temperature=0.2" in out and "queue_size=4096" in out and "num_permutations=100" in out


def test_devices_lists_the_cpu(capsys):
    assert main(["devices"]) == 0
    assert capsys.readouterr().out.startswith("cpu ")


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}", "--out", "{out}"], "not found"),
    (["--data", "{empty}", "--out", "{out}"], "no images"),
    (["--data", "{texts}", "--out", "{out}"], "1 usable texts is too few to train on"),
    (["--data", "{texts}", "--out", "{out}", "--objective", "simclr"],
     "holds texts, and simclr trains on images; choose distill, infill, mlm, nsp, simcse"),
    (["--data", "{images}", "--out", "{out}", "--objective", "nope"], "unknown objective 'nope'"),
    (["--data", "{images}", "--out", "{out}", "--set", "warp=9"], "unknown knob 'warp'"),
    (["--data", "{images}", "--out", "{out}", "--objective", "simclr", "--set", "temperature=9"],
     "out of range"),
    (["--data", "{images}", "--out", "{out}", "--set", "lr=fast"], "not a valid float"),
    (["--data", "{images}", "--out", "{out}", "--device", "cuda:7"], "not available"),
    (["--data", "{images}", "--out", "{out}", "--backbone", "alexnet"], "unknown backbone"),
    (["--resume", "{missing}"], "nothing to resume"),
])
def test_usage_errors_are_one_line_with_exit_code_2(image_folder, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("words")
    paths = {"missing": tmp_path / "missing", "out": tmp_path / "run", "empty": tmp_path / "empty",
             "texts": tmp_path / "texts", "images": image_folder}
    code = main(["train", *[a.format(**paths) for a in args], "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("sslstudio: error:") and message in err


def test_train_resume_and_embed_end_to_end(image_folder, tmp_path):
    run = tmp_path / "run"
    first = run_cli("train", "--data", str(image_folder), "--out", str(run), "--objective", "byol",
                    "--epochs", "1", "--batch-size", "8", "--image-size", "16",
                    "--labels-from-folders")
    assert first.returncode == 0, first.stderr
    assert "scanned 24 files" in first.stdout and "run completed at step 3" in first.stdout
    again = run_cli("train", "--data", str(image_folder), "--out", str(run))
    assert again.returncode == 2 and "--resume" in again.stderr
    more = run_cli("train", "--resume", str(run), "--epochs", "2")
    assert more.returncode == 0, more.stderr
    assert "resuming at step 3" in more.stdout and "run completed at step 6" in more.stdout

    feats = tmp_path / "feats.npy"
    embedded = run_cli("embed", str(run), "--data", str(image_folder), "--out", str(feats))
    assert embedded.returncode == 0, embedded.stderr
    features = np.load(feats)
    paths = (tmp_path / "feats.paths.txt").read_text().splitlines()
    # small_cnn's last stage (128 wide) on a 2x2 grid: what a probe reads best.
    assert features.shape == (24, 4 * 128) and np.isfinite(features).all()
    assert paths == sorted(paths, key=lambda p: Path(p).relative_to(image_folder).as_posix())
    assert len(paths) == 24 and Path(paths[0]).exists()


def test_batch_larger_than_data_warns(image_folder, tmp_path):
    result = run_cli("train", "--data", str(image_folder), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--batch-size", "500", "--image-size", "16", "--objective",
                     "rotation")
    assert result.returncode == 0, result.stderr
    assert "batch size 500 is larger than the 24 images" in result.stderr


def test_python_dash_m_and_help():
    result = run_cli("--help")
    assert result.returncode == 0 and "train" in result.stdout and "embed" in result.stdout


def test_train_in_a_project_shares_one_scan_between_runs(image_folder, tmp_path, capsys):
    from sslstudio.core.project import Project

    project = tmp_path / "project"
    common = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--quiet"]
    assert main(["train", "--project", str(project), "--data", str(image_folder), *common]) == 0
    first = capsys.readouterr().out
    assert "scanned 24 files" in first and "since the last scan" not in first
    # The second run needs no --data: the project knows its folder, and its scan is reused.
    assert main(["train", "--project", str(project), "--objective", "byol", *common]) == 0
    second = capsys.readouterr().out
    assert "all 24 items as at the last scan" in second
    runs = Project.open(project).runs()
    assert len(runs) == 2 and {r.objective for r in runs} == {"simclr", "byol"}
    assert Project.open(project).data_dir == str(image_folder.resolve())


def test_a_project_is_never_made_in_a_folder_of_other_files(image_folder, tmp_path, capsys):
    code = main(["train", "--project", str(image_folder), "--data", str(image_folder), "--epochs", "1"])
    assert code == 2 and "neither an SSL Studio project nor an empty folder" in capsys.readouterr().err
    assert not list(image_folder.rglob("sslstudio-project.toml"))
    code = main(["train", "--project", str(image_folder / "new"), "--data", str(image_folder),
                 "--epochs", "1"])
    assert code == 2 and "inside the data folder" in capsys.readouterr().err
    assert not (image_folder / "new").exists()
    code = main(["train", "--project", str(tmp_path / "empty-project"), "--epochs", "1"])
    assert code == 2 and "has no data folder yet: give --data" in capsys.readouterr().err


def test_self_test_runs_the_loop_on_the_sample_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    from sslstudio.cli import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    for step in ("ok window", "ok train", "ok map where groups stand apart", "ok label and fit the probe",
                 "ok export ONNX and check parity", "self-test passed"):
        assert step in out, out
    assert "onnxruntime matches PyTorch" in out
    assert not list(tmp_path.glob("sslstudio-selftest-*"))  # its temporary folder is gone
