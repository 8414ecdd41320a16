"""How responsive the window is, measured on this machine.

    QT_QPA_PLATFORM=offscreen python bench/gui_responsiveness.py [--seconds 20]

1. Launch to window shown: a fresh process, from `python` starting to the window's first paint.
2. Event-loop stalls while a training run streams to the window, with the curves shown, then
   the map: a 5 ms timer records the gap between its ticks; a stall is how much later than 5 ms
   a tick came (max and 99th percentile). Then the time a tab switch takes to repaint.
3. The embedding map's redraw at 20,000 points: setData with new positions plus a full repaint.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LAUNCH = r"""
import time, sys
from sslstudio.gui.app import create_app
app = create_app()
from PySide6.QtCore import QSettings, QTimer
from sslstudio.gui.main_window import MainWindow
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
w.show()
def shown():
    print(f"SHOWN {time.time():.6f}", flush=True)
    w.skip_close_question = True
    w.close()
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def launch_time(tmp: Path, runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.time()
        out = subprocess.run([sys.executable, "-c", LAUNCH, str(tmp / "launch.ini")], capture_output=True,
                             text=True, env={**os.environ, "QT_QPA_PLATFORM": os.environ.get(
                                 "QT_QPA_PLATFORM", "offscreen")}, timeout=120).stdout
        line = next(line for line in out.splitlines() if line.startswith("SHOWN"))
        times.append(float(line.split()[1]) - started)
    return times


def stalls_while_training(tmp: Path, seconds: float):
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from sslstudio.gui.main_window import MainWindow

    app = QApplication.instance()
    window = MainWindow(settings=QSettings(str(tmp / "stall.ini"), QSettings.Format.IniFormat))
    window.skip_close_question = True
    window.show()

    def wait(condition, timeout=120.0):
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)

    wait(lambda: window.engine is not None)
    window.folders.open_sample()
    wait(lambda: window.session.data_set is not None)
    window.setup.by_minutes.setChecked(True)
    window.setup.minutes.setValue(seconds / 60 + 1)
    window.training.start()
    wait(lambda: window.controller.history.size > 0)
    def measure(tab, seconds_here):
        window.tabs.setCurrentWidget(tab)
        for _ in range(20):
            app.processEvents()
        gaps = []
        clock = QElapsedTimer()
        clock.start()
        last = [clock.elapsed()]

        def tick():
            now = clock.elapsed()
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        timer.start()
        end = time.monotonic() + seconds_here
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        return np.maximum(np.asarray(gaps[1:], float) - 5.0, 0.0)

    before = window.controller.history.size
    stalls = {"curves": measure(window.curves, seconds / 2), "map": measure(window.map, seconds / 2)}
    switches = []
    for _ in range(6):
        started = time.perf_counter()
        window.tabs.setCurrentIndex(1 - window.tabs.currentIndex())
        window.repaint()
        switches.append((time.perf_counter() - started) * 1000)
    steps = window.controller.history.size - before
    window.close()
    return stalls, steps, float(np.median(switches))


def map_redraw_ms(points: int = 20000, rounds: int = 20) -> float:
    from PySide6.QtWidgets import QApplication

    from sslstudio.gui.widgets.embedding_map import EmbeddingMap

    app = QApplication.instance()
    view = EmbeddingMap()
    view.resize(900, 700)
    view.show()
    rng = np.random.default_rng(0)
    indices = np.arange(points)
    labels = rng.integers(0, 10, points)
    view.show_snapshot(indices, rng.normal(size=(points, 2)).astype(np.float32), labels)
    view._tick()
    app.processEvents()
    moves, restyles = [], []
    for _ in range(rounds):
        coords = rng.normal(size=(points, 2)).astype(np.float32)
        started = time.perf_counter()
        view._move_points(coords)  # what each frame of a glide between snapshots does
        view.plot.viewport().repaint()
        moves.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        view._recolour()  # new points or new colours
        view.plot.viewport().repaint()
        restyles.append((time.perf_counter() - started) * 1000)
    view.stop()
    view.close()
    return float(np.median(moves)), float(np.median(restyles))


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QStandardPaths

    from sslstudio.gui.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        launches = launch_time(tmp)
        app = create_app()
        QStandardPaths.setTestModeEnabled(True)
        redraw = map_redraw_ms()
        stalls, steps, switch_ms = stalls_while_training(tmp, args.seconds)
        del app
    print(f"launch to window shown: {np.median(launches):.2f} s (runs: "
          f"{', '.join(f'{t:.2f}' for t in launches)})")
    print(f"map redraw at 20,000 points: {redraw[0]:.1f} ms per frame as points move, "
          f"{redraw[1]:.1f} ms to restyle all (medians of 20)")
    for tab, values in stalls.items():
        print(f"event-loop stalls, {tab} tab shown, {args.seconds / 2:.0f} s of training: max "
              f"{values.max():.1f} ms, 99th percentile {np.percentile(values, 99):.1f} ms, median "
              f"{np.median(values):.1f} ms")
    print(f"({steps} metric events in all; switching tabs mid-run repaints in {switch_ms:.0f} ms)")


if __name__ == "__main__":
    main()
