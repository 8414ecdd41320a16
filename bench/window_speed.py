"""Training in the window against training headless, on a big folder, with the window busy.

    QT_QPA_PLATFORM=offscreen python bench/window_speed.py --data ~/data/fashion-mnist \
        [--seconds 60] [--work /tmp/window-speed]

Both train the same run (SimCLR, small_cnn, batch 256, the folder's own size, a minutes budget
long enough not to end) for --seconds after their first logged step:
  headless: `sslstudio.core.run.train.train` iterated in a process of its own;
  window:   the app's window on a project of the folder, its gallery filled with every item and
            scrolled now and then, the map showing a snapshot the size of the folder (up to
            200,000 points) as labelling would, while it trains through its worker.
Printed: images per second of each (the steps' own samples_per_s, median), their ratio, and the
share of one core the window's GUI thread used meanwhile (its thread CPU time over wall time).
Goal (issue 14): ratio at least 0.9, GUI thread under 15% of a core.
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

HEADLESS = r"""
import sys, time
import numpy as np
from sslstudio.core.control import RunControl
from sslstudio.core.events import StepMetrics
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig
data, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
control = RunControl()
speeds, first = [], None
config = TrainConfig(data=data, out=out, objective="simclr", backbone="small_cnn", batch_size=256,
                     minutes=60.0, log_every_steps=1)
for event in train(config, control=control):
    if isinstance(event, StepMetrics):
        first = first or time.monotonic()
        if time.monotonic() - first > 3.0:  # past the first steps' one-time costs
            speeds.append(event.samples_per_s)
        if time.monotonic() - first > seconds:
            control.cancel()
print("SPEED", float(np.median(speeds)))
"""


def headless(data: Path, out: Path, seconds: float) -> float:
    result = subprocess.run([sys.executable, "-c", HEADLESS, str(data), str(out), str(seconds)],
                            capture_output=True, text=True, timeout=seconds + 900,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    line = [line for line in result.stdout.splitlines() if line.startswith("SPEED")]
    if not line:
        raise RuntimeError(result.stderr[-3000:])
    return float(line[0].split()[1])


def in_window(data: Path, work: Path, seconds: float) -> tuple[float, float, int]:
    from PySide6.QtCore import QSettings

    from sslstudio.core.project import Project
    from sslstudio.gui.app import create_app
    from sslstudio.gui.main_window import MainWindow

    app = create_app()
    project = Project.create(work / "project")
    project.set_data_dir(str(data.resolve()))
    window = MainWindow(project.path, settings=QSettings(str(work / "s.ini"), QSettings.Format.IniFormat))
    window.skip_close_question = True
    window.resize(1600, 1000)
    window.show()

    def wait(condition, timeout=900.0):
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)

    wait(lambda: window.engine is not None and window.session.data_set is not None
         and not window.controller.busy())
    items = len(window.session.data_set)
    shown = min(items, 200_000)
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(shown, 2)).astype(np.float32)
    labels = np.asarray(window.session.data_set.labels)[:shown]
    setup = window.setup
    setup.objective.setCurrentText("simclr")
    setup.batch_size.setValue(256)
    setup.by_minutes.setChecked(True)
    setup.minutes.setValue(60)
    window.training.start()
    wait(lambda: window.controller.history.size > 0)
    # As in labelling: the map keeps its own points and the run's snapshots do not replace them.
    window.labelling.session.item_map.features = np.zeros((items, 1), np.float32)
    window.map.show_snapshot(np.arange(shown), coords, labels, step=0)
    window.tabs.setCurrentWidget(window.map)
    end_warmup = time.monotonic() + 3.0
    wait(lambda: time.monotonic() > end_warmup, 10)
    history = window.controller.history
    start_row = history.size
    cpu_start, wall_start = time.thread_time(), time.monotonic()
    scroll = window.gallery.list.verticalScrollBar()
    last_scroll = time.monotonic()
    while time.monotonic() - wall_start < seconds:
        app.processEvents()
        if time.monotonic() - last_scroll > 1.0:  # someone browsing the gallery while it trains
            scroll.setValue(int(rng.integers(0, max(1, scroll.maximum()))))
            last_scroll = time.monotonic()
        time.sleep(0.002)
    gui_share = (time.thread_time() - cpu_start) / (time.monotonic() - wall_start)
    speeds = history.column("samples_per_s")[start_row:history.size]
    window.labelling.session.item_map.features = None
    window.close()
    app.processEvents()
    return float(np.median(speeds)), gui_share, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data" / "fashion-mnist")
    parser.add_argument("--work", type=Path, default=Path("/tmp/window-speed"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.work.exists():
        shutil.rmtree(args.work)  # only ever a folder this benchmark made under --work
    args.work.mkdir(parents=True)
    alone = headless(args.data, args.work / "headless-run", args.seconds)
    windowed, share, items = in_window(args.data, args.work, args.seconds)
    print("| folder | items | headless images/s | window images/s | ratio | GUI thread, share of a core |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {args.data.name} | {items:,} | {alone:.0f} | {windowed:.0f} | {windowed / alone:.2f} "
          f"| {100 * share:.1f}% |")


if __name__ == "__main__":
    main()
