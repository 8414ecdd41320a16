"""Memory of the app on a 200,000-image project at 64 px, through open, train, label and map.

    python bench/project_rss.py [--items 200000] [--minutes 2] [--work /tmp/project-rss]

A synthetic folder of --items distinct 64 px PNGs in ten classes (a shape, a colour and a
texture each, at random places and sizes, on noise; made once under --work) is opened in the
app's window (offscreen) as a project; then, as a user would: the gallery is scrolled, a run
trains at 64 px for --minutes, the app maps the run, and the labelling step embeds every item
and draws its t-SNE map. The window's process is sampled every 0.2 s from /proc: resident
memory (VmRSS) and its parts, anonymous (the process's own) and file pages (mapped files).

Printed: a row per stage with its seconds and the largest resident, anonymous and file-backed
figures seen in it, and the process's peak resident size (VmHWM). Also the t-SNE's own seconds
for all the items. Nothing is written outside --work; the data folder is only read.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIDE = 64


def _make_chunk(args: tuple[str, int, int]) -> None:
    from PIL import Image, ImageDraw

    root, first, count = args
    rng = np.random.default_rng(first)
    for index in range(first, first + count):
        kind = index % 10
        noise = rng.integers(0, 60, (SIDE, SIDE, 3), dtype=np.uint8)
        image = Image.fromarray(noise + np.uint8(40 + 12 * kind))
        draw = ImageDraw.Draw(image)
        size = int(rng.integers(14, 40))
        x, y = (int(v) for v in rng.integers(0, SIDE - size, 2))
        colour = tuple(int(c) for c in (np.array([(kind * 83) % 256, (kind * 151) % 256,
                                                  (kind * 37 + 90) % 256]) + rng.integers(-20, 20, 3)).clip(0, 255))
        box = [x, y, x + size, y + size]
        shape = kind % 5
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        elif shape == 2:
            draw.polygon([(x, y + size), (x + size // 2, y), (x + size, y + size)], fill=colour)
        elif shape == 3:
            for line in range(x, x + size, 4):
                draw.line([(line, y), (line, y + size)], fill=colour, width=2)
        else:
            draw.ellipse(box, outline=colour, width=4)
        folder = Path(root) / f"class_{kind}"
        image.save(folder / f"{index:07d}.png", compress_level=1)


def make_folder(root: Path, items: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    for kind in range(10):
        (root / f"class_{kind}").mkdir(parents=True, exist_ok=True)
    chunk = 2000
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_make_chunk, [(str(root), first, min(chunk, items - first))
                                     for first in range(0, items, chunk)]))


WINDOW = r"""
import sys, threading, time
from pathlib import Path
started = time.monotonic()
stage = ["open"]
peaks = {}
def memory():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields
done = threading.Event()
def sample():
    while not done.is_set():
        now = memory()
        mine = peaks.setdefault(stage[0], {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "from": time.monotonic()})
        for key in ("VmRSS", "RssAnon", "RssFile"):
            mine[key] = max(mine[key], now[key])
        mine["to"] = time.monotonic()
        done.wait(0.2)
threading.Thread(target=sample, daemon=True).start()

from PySide6.QtCore import QSettings, QTimer
from sslstudio.gui.app import create_app
app = create_app()
from sslstudio.gui.main_window import MainWindow
w = MainWindow(sys.argv[1], settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
w.skip_close_question = True
w.resize(1600, 1000)
w.show()
minutes = float(sys.argv[3])
map_seconds = []
w.controller.map_ready.connect(lambda event: map_seconds.append((len(event.items), event.elapsed_s)))
steps = iter(["usable", "gallery", "train", "run map", "label", "end"])
def wait_for(condition, then):
    def check():
        if condition():
            then()
        else:
            QTimer.singleShot(50, check)
    QTimer.singleShot(50, check)
def idle():
    return not w.controller.busy()
def next_stage():
    name = next(steps)
    stage[0] = name
    print(f"STAGE {name} {time.monotonic() - started:.1f}", flush=True)
    if name == "usable":
        wait_for(lambda: w.session.data_set is not None and idle() and w.engine is not None, next_stage)
    elif name == "gallery":
        bar = w.gallery.list.verticalScrollBar()
        for position in range(0, 40):
            bar.setValue(int(bar.maximum() * position / 40))
            w.gallery.list.viewport().repaint()
        next_stage()
    elif name == "train":
        from sslstudio.core.run.config import TrainConfig
        from sslstudio.core.objectives import OBJECTIVES
        config = TrainConfig(data=w.session.project.data_dir, out=str(w.session.project.new_run_dir("simclr")),
                             objective="simclr", backbone="small_cnn", image_size=64,
                             minutes=minutes, labels_from_folders=True)
        w.controller.start_training(config, OBJECTIVES.get("simclr").config_cls())
        wait_for(idle, next_stage)
    elif name == "run map":
        wait_for(lambda: idle() and w._map_after_run is None, next_stage)
    elif name == "label":
        w.runs.refresh(select_latest=True)
        maps_before = len(map_seconds)
        w.labelling.prepare_labelling()
        wait_for(lambda: idle() and len(map_seconds) > maps_before, next_stage)
    else:
        done.set()
        print(f"HWM {memory()['VmHWM']:.0f}", flush=True)
        for name, p in peaks.items():
            print(f"PEAK {name} {p['to'] - p['from']:.0f} {p['VmRSS']:.0f} {p['RssAnon']:.0f} {p['RssFile']:.0f}", flush=True)
        for items, seconds in map_seconds:
            print(f"MAP {items} {seconds:.1f}", flush=True)
        w.close()
        app.quit()
QTimer.singleShot(0, next_stage)
app.exec()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/project-rss"))
    args = parser.parse_args()
    from sslstudio.core.project import Project

    folder = args.work / f"folder-{args.items}"
    if not (args.work / f"made-{args.items}").exists():
        started = time.monotonic()
        make_folder(folder, args.items)
        (args.work / f"made-{args.items}").write_text("made\n")
        print(f"made {args.items} images in {time.monotonic() - started:.0f} s", flush=True)
    project_path = args.work / f"project-{time.strftime('%Y%m%d-%H%M%S')}"
    project = Project.create(project_path)
    project.set_data_dir(str(folder.resolve()))
    result = subprocess.run(
        [sys.executable, "-c", WINDOW, str(project_path), str(args.work / "settings.ini"), str(args.minutes)],
        capture_output=True, text=True, timeout=7200,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    lines = result.stdout.splitlines()
    if result.returncode or not any(line.startswith("HWM") for line in lines):
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"the window's run failed ({result.returncode})")
    print(f"| {args.items:,} images at {SIDE} px: stage | seconds | peak resident MiB | of which "
          "anonymous | of which mapped files |")
    print("| --- | --- | --- | --- | --- |")
    for line in lines:
        if line.startswith("PEAK"):
            _, name, seconds, rss, anon, file = line.split()
            print(f"| {name} | {seconds} | {rss} | {anon} | {file} |")
    for line in lines:
        if line.startswith("HWM"):
            print(f"\npeak resident size of the process (VmHWM): {line.split()[1]} MiB")
        if line.startswith("MAP"):
            _, items, seconds = line.split()
            print(f"t-SNE map of {int(items):,} points: {seconds} s")


if __name__ == "__main__":
    main()
