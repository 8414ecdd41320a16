"""How long the embedding map takes per frame at many points, for each thing a user does.

    QT_QPA_PLATFORM=offscreen python bench/map_frames.py [--points 30000 200000] [--rounds 10]

For each size: the map is filled with clustered synthetic points in ten classes (the labelling
map of a big folder), shown at 1000 x 700, and each action is timed to the end of a full
repaint of the plot (`repaint()` paints synchronously, so the time includes the painting):
a glide frame (points move), pan, zoom, hover (nearest point and its thumbnail), restyle
(another colouring), hiding a class in the legend, and a lasso over about a tenth of the points.
Medians of --rounds, in milliseconds. Goal (issue 14): every one under 50 ms at 200,000.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def clustered(points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, points)
    centres = rng.normal(size=(10, 2)) * 3
    return (centres[labels] + rng.normal(size=(points, 2)) * 0.6).astype(np.float32), labels


def measure(points: int, rounds: int) -> dict[str, float]:
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication

    from sslstudio.gui.widgets.embedding_map import GROUPS, FOLDER, EmbeddingMap

    app = QApplication.instance()
    view = EmbeddingMap()
    view.resize(1000, 700)
    view.show()
    thumb = QPixmap(64, 64)
    view.thumbnail_for = lambda index: thumb
    view.class_names = tuple(f"class {c}" for c in range(10))
    coords, labels = clustered(points)
    view.show_snapshot(np.arange(points), coords, labels)
    view._tick()
    app.processEvents()
    viewport = view.plot.viewport()
    box = view.view_box
    rng = np.random.default_rng(1)

    def timed(action) -> float:
        started = time.perf_counter()
        action()
        viewport.repaint()
        return (time.perf_counter() - started) * 1000

    times: dict[str, list[float]] = {k: [] for k in
                                     ("glide frame", "pan", "zoom", "hover", "restyle",
                                      "hide a class", "lasso")}
    scene_rect = view.plot.sceneBoundingRect()
    for round_ in range(rounds):
        moved = coords + rng.normal(size=coords.shape).astype(np.float32) * 0.05
        times["glide frame"].append(timed(lambda: view._move_points(moved)))
        times["pan"].append(timed(lambda: box.translateBy(x=0.1, y=0.05)))
        times["zoom"].append(timed(lambda: box.scaleBy((0.9, 0.9) if round_ % 2 else (1.11, 1.11))))
        where = QPointF(scene_rect.left() + scene_rect.width() * rng.uniform(0.3, 0.7),
                        scene_rect.top() + scene_rect.height() * rng.uniform(0.3, 0.7))
        times["hover"].append(timed(lambda: view._hover(where)))
        mode = GROUPS if round_ % 2 == 0 else FOLDER
        times["restyle"].append(timed(lambda: view.colour_by.setCurrentText(mode)))
        view.colour_by.setCurrentText(FOLDER)
        item = view.legend.item(round_ % 10)
        state = Qt.CheckState.Unchecked if item.checkState() == Qt.CheckState.Checked else Qt.CheckState.Checked
        times["hide a class"].append(timed(lambda: item.setCheckState(state)))
        centre = coords[rng.integers(points)]
        angles = np.linspace(0, 2 * np.pi, 200)
        polygon = centre + np.column_stack([np.cos(angles), np.sin(angles)]) * 1.5
        times["lasso"].append(timed(lambda: view.lasso(polygon)))
    view.hover_label.hide()
    view.stop()
    view.close()
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", type=int, default=[30_000, 200_000])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from sslstudio.gui.app import create_app

    app = create_app()
    results = {points: measure(points, args.rounds) for points in args.points}
    actions = list(next(iter(results.values())))
    print("| action | " + " | ".join(f"{p:,} points" for p in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for action in actions:
        print(f"| {action} | " + " | ".join(f"{results[p][action]:.1f} ms" for p in results) + " |")
    del app


if __name__ == "__main__":
    main()
