"""One writer, no silent mix-ups (issue 28): every output lands whole, in the place it names, or
not at all. Each test reproduces what a tester found on main before the fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sslstudio.cli import main
from sslstudio.core.adapt.job import AdaptRequest, adapt
from sslstudio.core.config import read_toml
from sslstudio.core.events import AdaptFinished, RunFinished, RunStarted
from sslstudio.core.locks import lock_path_for
from sslstudio.core.run.folder import RunFolder
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig
from tests.conftest import make_image_folder
from tests.hostile.test_hostile_cli import TRAIN_FAST, one_line_error, trained_and_labelled


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return trained_and_labelled(tmp_path_factory.mktemp("writers"), per_class=8)


def _holder(lock_line: str, tmp_path: Path) -> subprocess.Popen:
    """Another process that holds a lock until killed; returns once it holds it."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from sslstudio.core.locks import OutputLock, ProjectLock
        lock = {lock_line}
        Path({str(ready)!r}).write_text("held")
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _config(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), objective="simclr", backbone="small_cnn",
                       image_size=16, batch_size=8, epochs=1, device="cpu")


# 1. Two writers in one run folder ----------------------------------------------------------------
def test_a_second_writer_of_a_run_folder_is_refused_and_told_who_holds_it(made, tmp_path, capsys):
    twin = tmp_path / "runs" / "twin"
    first = train(_config(made["data"], twin))
    for event in first:  # the first run is under way: it has started and holds its folder
        if isinstance(event, RunStarted):
            break
    try:
        one_line_error(capsys, main(["train", "--data", str(made["data"]), "--out", str(twin),
                                     *TRAIN_FAST]), "being written by", f"process {os.getpid()}")
        one_line_error(capsys, main(["train", "--resume", str(twin), "--quiet"]), "being written by")
        # The same folder spelled another way is the same folder.
        os.chdir(tmp_path)
        one_line_error(capsys, main(["train", "--resume", "runs/../runs/twin", "--quiet"]),
                       "being written by")
    finally:
        finished = [e for e in first if isinstance(e, RunFinished)]
        first.close()
    assert finished and finished[0].status == "completed"
    assert not lock_path_for(twin).exists()  # the lock goes with its holder
    # The folder holds one run's files: its config and checkpoint agree on the step.
    assert RunFolder(twin).status().step == int(RunFolder(twin).metrics()["step"][-1])


def test_a_lock_left_by_a_killed_writer_is_taken_over_with_a_message(made, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    holder = _holder(f"OutputLock.acquire(Path({str(run)!r}), 'the run folder', holder='sslstudio train')",
                     tmp_path)
    one_line_error(capsys, main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]),
                   f"sslstudio train (process {holder.pid}")
    _stop(holder)  # killed: its description stays in the lock file, the OS lock is gone
    assert lock_path_for(run).exists()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"took over from sslstudio train (process {holder.pid}" in err, err
    assert not lock_path_for(run).exists()


# 2. --resume and embed name the folder the run was trained on --------------------------------------
def test_resume_and_embed_from_another_directory_use_the_runs_own_folder(tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    make_image_folder(first / "imgs", classes=2, per_class=6)
    make_image_folder(second / "imgs", classes=1, per_class=4, size=20)
    monkeypatch.chdir(first)
    assert main(["train", "--data", "imgs", "--out", str(tmp_path / "run"), *TRAIN_FAST]) == 0
    identity = read_toml(tmp_path / "run" / "config.toml")["data"]
    assert identity["path"] == str(first / "imgs") and identity["items"] == 12
    assert read_toml(tmp_path / "run" / "config.toml")["train"]["data"] == str(first / "imgs")
    capsys.readouterr()
    monkeypatch.chdir(second)
    # Without --data the run's own folder is used, wherever the command is typed.
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 0
    assert "imgs" not in capsys.readouterr().err
    # Another folder of the same name is refused, naming both; --other-data says yes.
    one_line_error(capsys, main(["train", "--resume", str(tmp_path / "run"), "--data", "imgs",
                                 "--epochs", "3", "--quiet"]),
                   f"trained on {first / 'imgs'}, not on {second / 'imgs'}", "--other-data")
    one_line_error(capsys, main(["embed", str(tmp_path / "run"), "--data", "imgs", "--out",
                                 str(tmp_path / "f.npy")]), "--other-data")
    assert not (tmp_path / "f.npy").exists()
    assert main(["embed", str(tmp_path / "run"), "--data", "imgs", "--out", str(tmp_path / "f.npy"),
                 "--other-data"]) == 0
    assert "not " in capsys.readouterr().err and (tmp_path / "f.npy").exists()
    # A moved folder with the same items is recognised by its listing, and said.
    shutil.move(str(first / "imgs"), str(tmp_path / "moved"))
    assert main(["embed", str(tmp_path / "run"), "--data", str(tmp_path / "moved"), "--out",
                 str(tmp_path / "g.npy")]) == 0
    assert "moved" in capsys.readouterr().err


# 3. Two adapts with the default name ---------------------------------------------------------------
def test_two_adapts_started_together_get_two_folders(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    labels = {p.relative_to(made["data"]).as_posix(): p.parent.name
              for p in sorted(made["data"].rglob("*.png"))}
    jobs = [adapt(AdaptRequest(run, made["data"], dict(labels), "linear", device="cpu"))
            for _ in range(2)]
    for job in jobs:  # both under way before either saves
        next(job)
    finished = [[e for e in job if isinstance(e, AdaptFinished)][-1] for job in jobs]
    assert [f.status for f in finished] == ["completed", "completed"]
    assert finished[0].path != finished[1].path
    assert len(RunFolder(run).adapted_models()) == 2
    assert not list((run / "adapted").glob(".*"))  # no locks or partial folders left


# 4. adapt --overwrite leaves what the user added ----------------------------------------------------
def test_overwrite_replaces_only_the_files_adapt_wrote(made, tmp_path, capsys):
    out = tmp_path / "model"
    common = ["adapt", str(made["run"]), "--data", str(made["data"]), "--labels", str(made["labels"]),
              "--out", str(out)]
    assert main(common) == 0
    (out / "NOTES.txt").write_text("my notes")
    (out / "plots").mkdir()
    (out / "plots" / "fig1.png").write_bytes(b"png")
    before = read_toml(out / "adapted.toml")["adapt"]["created"]
    written = set(read_toml(out / "adapted.toml")["files"]["written"])
    assert {"adapted.toml", "model.safetensors", "predictions.csv"} <= written
    time.sleep(1.1)
    capsys.readouterr()
    assert main([*common, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "NOTES.txt" in err and "plots" in err, err
    assert (out / "NOTES.txt").read_text() == "my notes"
    assert (out / "plots" / "fig1.png").read_bytes() == b"png"
    assert read_toml(out / "adapted.toml")["adapt"]["created"] != before
    assert not list(tmp_path.glob(".*"))  # nothing set aside or half-built is left


# 5. A full disk --------------------------------------------------------------------------------------
def test_a_full_disk_names_the_folder_and_leaves_no_partial_file(made, tmp_path, monkeypatch):
    import sslstudio.core.fileio as fileio

    fsync = os.fsync

    def no_space(fd):
        if os.fstat(fd).st_size > 200_000:  # checkpoints; the small files before them fit
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", no_space)
    run = tmp_path / "run"
    events = list(train(_config(made["data"], run)))
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "failed"
    assert f"no space left on the disk that holds {run / 'checkpoints'}" in finished.message
    assert "MB needed" in finished.message and "--resume" in finished.message
    assert not [p for p in run.rglob("*") if p.name.startswith(".")], list(run.rglob("*"))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs")
def test_a_really_full_disk_keeps_room_for_the_resume(made, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        config = _config(made["data"], disk / "run")
        config.backbone = "resnet18"  # a checkpoint of ~130 MB cannot fit in 600 KB
        finished = list(train(config))[-1]
        assert finished.status == "failed" and "no space left" in finished.message
        assert not [p for p in disk.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]
    finally:
        import gc

        gc.collect()  # the scan's memory-mapped cache lies on the disk until its data is freed
        subprocess.run(["umount", "-l", str(disk)])


# 6. The CLI and the project lock ----------------------------------------------------------------------
def test_train_into_a_project_open_in_the_app_is_refused(made, tmp_path, capsys):
    project = tmp_path / "project"
    assert main(["train", "--project", str(project), "--data", str(made["data"]), *TRAIN_FAST]) == 0
    runs_before = sorted(p.name for p in (project / "runs").iterdir())
    holder = _holder(f"ProjectLock.acquire(Path({str(project)!r}), holder='SSL Studio')", tmp_path)
    try:
        one_line_error(capsys, main(["train", "--project", str(project), *TRAIN_FAST]),
                       f"is open in SSL Studio (process {holder.pid}", "close the project")
        one_line_error(capsys, main(["train", "--data", str(made["data"]), "--out",
                                     str(project / "runs" / "mine"), *TRAIN_FAST]), "is open in SSL Studio")
    finally:
        _stop(holder)
    assert sorted(p.name for p in (project / "runs").iterdir()) == runs_before


# 7. install.sh on a folder whose path holds the characters a desktop entry must escape --------------
def _exec_argument(line: str) -> str:
    """The first argument of an Exec= value, read as the desktop-entry spec says: the string
    escapes first, then the quoting rules."""
    value = line.removeprefix("Exec=")
    unescaped, i = "", 0
    while i < len(value):  # string level: \\ -> \, \s \n \t \r
        if value[i] == "\\" and i + 1 < len(value):
            unescaped += {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(value[i + 1], "\\" + value[i + 1])
            i += 2
        else:
            unescaped += value[i]
            i += 1
    assert unescaped.startswith('"'), line
    argument, i = "", 1
    while unescaped[i] != '"':  # quoting level: \" \` \$ \\ inside double quotes
        if unescaped[i] == "\\":
            assert unescaped[i + 1] in '"`$\\', line
            i += 1
        argument += unescaped[i]
        i += 1
    return argument.replace("%%", "%")


@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("awk") is None, reason="no POSIX shell")
def test_install_script_quotes_any_folder_path_as_the_spec_says(tmp_path):
    from tests.test_packaging import _run, _unpacked_bundle

    home = tmp_path / "home"
    bundle = _unpacked_bundle(tmp_path / 'R&D | 100% "best" $HOME `x` back\\slash')
    _run(bundle / "install.sh", home)
    entry = home / ".local/share/applications/io.github.sslstudio.SSLStudio.desktop"
    line = next(line for line in entry.read_text().splitlines() if line.startswith("Exec="))
    assert _exec_argument(line) == str(bundle / "SSLStudio")
    assert line.endswith(" gui %f")
    assert not list(entry.parent.glob("*.tmp*"))
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert result.returncode == 0 and "error" not in result.stdout, result.stdout


# 8. Plain user mistakes are one-line errors, exit 2 ----------------------------------------------------
def test_user_mistakes_are_errors_not_crashes(made, tmp_path, capsys):
    from tests.test_pretrained import make_bert_folder
    from tests.test_zeroshot import make_clip_folder

    clip = tmp_path / "clip"
    make_clip_folder(clip)
    (clip / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    one_line_error(capsys, main(["zeroshot", str(clip), "--data", str(made["data"]), "--classes",
                                 "a", "b", "--out", str(tmp_path / "z.csv")]), "cannot be read")
    bert = tmp_path / "bert"
    make_bert_folder(bert, ["some words here", "and more words"] * 4)
    config = json.loads((bert / "config.json").read_text())
    del config["hidden_size"]
    (bert / "config.json").write_text(json.dumps(config))
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("some words")
    one_line_error(capsys, main(["zeroshot", str(bert), "--data", str(texts), "--classes", "a", "b",
                                 "--out", str(tmp_path / "y.csv")]), "hidden_size")
    one_line_error(capsys, main(["export", str(made["run"]), "--out", ""]), "--out is empty")
    one_line_error(capsys, main(["embed", str(made["run"]), "--data", str(made["data"]), "--out", ""]),
                   "--out is empty")
    project = tmp_path / "project"
    project.mkdir()
    (project / "sslstudio-project.toml").write_bytes(bytes(range(256)))
    one_line_error(capsys, main(["train", "--project", str(project), *TRAIN_FAST]),
                   "cannot be read as an SSL Studio project")
    (project / "sslstudio-project.toml").write_text('name = "p"\ndata_dir = 12\n')
    one_line_error(capsys, main(["train", "--project", str(project), *TRAIN_FAST]),
                   "data_dir = 12 should be text")


# 9. The output place is checked before the work --------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_an_output_where_nothing_can_be_written_fails_before_the_scan(made, capsys, monkeypatch):
    import sslstudio.core.modalities.image as preprocess

    def no_scan(*args, **kwargs):
        raise AssertionError("the folder was scanned before the output place was checked")

    monkeypatch.setattr(preprocess.ImagePreprocess, "load_training_data", classmethod(no_scan))
    monkeypatch.setattr(preprocess.ImagePreprocess, "load", no_scan)
    one_line_error(capsys, main(["train", "--data", str(made["data"]), "--out", "/proc/x", *TRAIN_FAST]),
                   "/proc")
    err = one_line_error(capsys, main(["embed", str(made["run"]), "--data", str(made["data"]),
                                       "--out", "/proc/x.npy"]), "/proc")
    assert ".tmp" not in err


# 10. The smaller ones ----------------------------------------------------------------------------------
def test_outputs_have_ordinary_permissions(made, tmp_path):
    old = os.umask(0o022)
    try:
        adapted = tmp_path / "adapted"
        assert main(["adapt", str(made["run"]), "--data", str(made["data"]), "--labels",
                     str(made["labels"]), "--out", str(adapted)]) == 0
        assert main(["export", str(adapted), "--out", str(tmp_path / "model.onnx")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(adapted.stat().st_mode) == 0o755
    for path in [*adapted.iterdir(), tmp_path / "model.onnx", tmp_path / "model.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_the_collapse_advice_never_suggests_the_method_in_use():
    from sslstudio.core.objectives import OBJECTIVES

    for name in OBJECTIVES.names():
        hint = OBJECTIVES.get(name).collapse_hint
        assert f"use {name}" not in hint and f"or {name}," not in hint, (name, hint)


def test_a_resolution_under_the_smallest_image_is_refused(made, capsys):
    one_line_error(capsys, main(["train", "--data", str(made["data"]), "--out", "/tmp/never",
                                 "--image-size", "1"]), "image_size=1", "0 (auto) or 8..1024")
    assert not Path("/tmp/never").exists()


def test_the_app_without_a_display_says_so_in_one_line(capsys, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux")
    one_line_error(capsys, main(["gui"]), "no display")


def test_a_csv_quote_left_open_loses_one_record_and_says_so(tmp_path):
    from sslstudio.core.data.text_folder import load_text_folder
    from tests.conftest import run_to_end

    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.csv").write_text('id,text\n1,"hello there\n2,next row\n3,another\n')
    data, _ = run_to_end(load_text_folder(folder))
    assert list(data.items) == ["a.csv#2", "a.csv#3"]
    assert list(data.texts) == ["next row", "another"]
    assert data.report.skipped == [("a.csv", "partly unusable: 1 of 3 records (a quote left open in row 1)")]
