"""How long a big folder takes to open again, and a second run to start, with the project's scan
kept (issue 14) against decoding everything each time (before).

    python bench/reopen.py --data ~/data/fashion-mnist --work /tmp/reopen

Seconds, on this machine, for the folder given (70,000 images for Fashion-MNIST):
  1. scan at the gallery's thumbnail size with no cache: what opening the folder cost every time
     before (a folder that fits in RAM was never cached);
  2. the same scan into a fresh project cache (the first open of a new project);
  3. the same scan with the cache warm (reopening the project);
  4. the window: a fresh process opens the project, to the gallery filled and Start enabled;
  5. a run's start, from train() called to its first step, with the training-size scan in the
     project's cache already (a second run), and without a cache (before);
  6. the same from the command line: a new `sslstudio train --project` process to its progress
     line showing the first step (on a pseudo-terminal, where the line updates at once), the
     median of --launches.
Nothing is written outside --work; the data folder is only read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WINDOW = r"""
import sys, time
started = time.monotonic()
from PySide6.QtCore import QSettings, QTimer
from sslstudio.gui.app import create_app
app = create_app()
from sslstudio.gui.main_window import MainWindow
w = MainWindow(sys.argv[1], settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
w.skip_close_question = True
w.show()
def check():
    if (w.session.data_set is not None and not w.controller.busy() and w.gallery.model.rowCount()
            and w.engine is not None):
        print(f"USABLE {time.monotonic() - started:.2f} {w.gallery.model.rowCount()}", flush=True)
        w.close()
        app.quit()
    else:
        QTimer.singleShot(20, check)
QTimer.singleShot(0, check)
app.exec()
"""


def timed_scan(data: Path, size: int, cache: Path | None) -> tuple[float, str]:
    from sslstudio.core.control import run_to_end
    from sslstudio.core.data import load_image_folder
    from sslstudio.core.describe import describe
    from sslstudio.core.events import ScanFinished

    started = time.monotonic()
    finished = []
    generator = load_image_folder(data, size, labels_from_folders=True, cache_dir=cache)

    def keep(events):
        for event in events:
            if isinstance(event, ScanFinished):
                finished.append(describe(event).text)
            yield event

    run_to_end(keep(generator))
    return time.monotonic() - started, finished[-1] if finished else ""


def run_start(data: Path, out: Path) -> tuple[float, float]:
    """Seconds from train() called to RunStarted (scanned, planned, steps timed) and to its first
    logged step (a 1-minute budget, stopped there)."""
    from sslstudio.core.control import RunControl
    from sslstudio.core.events import RunStarted, StepMetrics
    from sslstudio.core.run.train import train
    from sslstudio.core.run.config import TrainConfig

    control = RunControl()
    started = time.monotonic()
    began = first = float("nan")
    for event in train(TrainConfig(data=str(data), out=str(out), minutes=1.0), control=control):
        if isinstance(event, RunStarted):
            began = time.monotonic() - started
        if isinstance(event, StepMetrics) and first != first:
            first = time.monotonic() - started
            control.cancel()
    return began, first


def cli_start(project: Path) -> tuple[float, float]:
    """Seconds from launching `sslstudio train --project` to its run line and to its first step
    on the progress line. The CLI is given a terminal (a pty): to a file it prints progress
    every 10 s only."""
    import pty
    import select

    leader, follower = pty.openpty()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "sslstudio", "train", "--project", str(project),
                                "--minutes", "1"], stdout=follower, stderr=follower,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    os.close(follower)
    seen, began, first = b"", float("nan"), float("nan")
    try:
        while time.monotonic() - started < 120 and first != first:
            ready, _, _ = select.select([leader], [], [], 0.05)
            if not ready:
                continue
            try:
                seen += os.read(leader, 65536)
            except OSError:
                break
            now = time.monotonic() - started
            if began != began and b"training " in seen:
                began = now
            if b"step " in seen:
                first = now
    finally:
        process.terminate()
        process.wait(timeout=60)
        os.close(leader)
    return began, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data" / "fashion-mnist")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reopen"))
    parser.add_argument("--size", type=int, default=64, help="the gallery's thumbnail size")
    parser.add_argument("--launches", type=int, default=5, help="CLI launches timed")
    args = parser.parse_args()
    from sslstudio.core.project import Project

    if args.work.exists():
        shutil.rmtree(args.work)  # only ever a folder this benchmark made under --work
    args.work.mkdir(parents=True)
    project = Project.create(args.work / "project")
    project.set_data_dir(str(args.data.resolve()))

    rows = []
    seconds, _ = timed_scan(args.data, args.size, None)
    rows.append(("scan, no cache (every open before)", seconds))
    seconds, _ = timed_scan(args.data, args.size, project.cache_dir)
    rows.append(("scan into a new project's cache (first open)", seconds))
    seconds, text = timed_scan(args.data, args.size, project.cache_dir)
    rows.append((f"scan, cache warm (reopen): {text}", seconds))
    result = subprocess.run([sys.executable, "-c", WINDOW, str(project.path), str(args.work / "s.ini")],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen",
                                 "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    usable = [line for line in result.stdout.splitlines() if line.startswith("USABLE")]
    rows.append(("window: new process to the gallery filled and Start enabled (reopen)",
                 float(usable[0].split()[1]) if usable else float("nan")))
    began, first = run_start(args.data, args.work / "alone-run")
    rows += [("run start: train() to RunStarted, no cache (before)", began),
             ("run start: train() to its first step, no cache (before)", first)]
    run_start(args.data, project.new_run_dir("first"))  # fills the training-size cache
    began, first = run_start(args.data, project.new_run_dir("second"))
    rows += [("second run in the project: train() to RunStarted", began),
             ("second run in the project: train() to its first step", first)]
    # A new process's start varies by a few tenths on a shared machine: the median of a few.
    launches = [cli_start(project.path) for _ in range(args.launches)]
    for column, what in ((0, "its run line"), (1, "its first step")):
        times = sorted(launch[column] for launch in launches)
        rows.append((f"CLI, another run in the project: launch to {what} (median of {len(times)}; "
                     f"{times[0]:.2f}-{times[-1]:.2f})", float(np.median(times))))
    print(f"| {args.data.name}: what | seconds |")
    print("| --- | --- |")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
