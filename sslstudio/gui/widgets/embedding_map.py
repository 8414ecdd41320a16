"""The 2-D embedding map: one scatter item with shared brushes, points that glide between
snapshots, hover thumbnails, zoom and pan, colour by folder label or by cluster."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

GLIDE_S = 0.4
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (57, 59, 121), (173, 73, 74), (99, 121, 57), (206, 109, 189), (82, 84, 163)]
UNKNOWN = (150, 150, 150)


def kmeans(points: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Lloyd's algorithm with k-means++ starts; cheap enough for 20,000 2-D points."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(points)))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        centres.append(points[rng.choice(len(points), p=d2 / total)] if total > 0 else points[0])
    centres = np.array(centres)
    labels = np.zeros(len(points), np.int64)
    for _ in range(iterations):
        distances = ((points[:, None, :] - centres[None]) ** 2).sum(2)
        labels = distances.argmin(1)
        for c in range(k):
            members = points[labels == c]
            if len(members):
                centres[c] = members.mean(0)
    return labels


class EmbeddingMap(QWidget):
    point_clicked = Signal(int)  # dataset index

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thumbnail_for = None  # callable(index) -> QPixmap, set by the window
        self.class_names: tuple[str, ...] = ()
        self.indices = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int64)
        self.coords = np.zeros((0, 2), np.float32)
        self._from = self._to = self.coords
        self._glide_started = 0.0
        self._dirty = False
        self._ranged = False
        self._colour_cache: dict[tuple, object] = {}
        self._brushes: list = []
        self._restyle = False  # colours changed: the next draw must restyle every point

        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(False)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.scatter = pg.ScatterPlotItem(size=6, pen=None, pxMode=True)
        self.plot.addItem(self.scatter)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.scatter.sigClicked.connect(self._clicked)

        self.colour_by = QComboBox()
        self.colour_by.addItems(["Colour by folder label", "Colour by cluster", "One colour"])
        self.colour_by.currentIndexChanged.connect(self._recolour)
        self.status = QLabel("The map appears when training starts.")
        bar = QHBoxLayout()
        bar.addWidget(self.colour_by)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)

        self.hover_label = QLabel(self, Qt.WindowType.ToolTip)
        self.hover_label.setStyleSheet("border: 1px solid palette(mid); padding: 2px;")
        self.hover_label.hide()

        self.timer = QTimer(self)
        self.timer.setInterval(33)  # only runs while points glide
        self.timer.timeout.connect(self._tick)

    # -- data ---------------------------------------------------------------------------------
    def show_snapshot(self, indices: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                      step: int | None = None) -> None:
        same_points = len(indices) == len(self.indices) and np.array_equal(indices, self.indices)
        current = self._current_coords() if same_points else coords
        self.indices, self.labels = np.asarray(indices), np.asarray(labels)
        self._from, self._to = current, np.asarray(coords, np.float32)
        self._glide_started = time.monotonic()
        if not same_points:
            self._recolour()
        self._dirty = True
        if not self.timer.isActive():
            self.timer.start()
        if step is not None:
            self.status.setText(f"{len(indices):,} items, step {step}")

    def clear(self) -> None:
        self.indices = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int64)
        self._from = self._to = self.coords = np.zeros((0, 2), np.float32)
        self._brushes = []
        self.timer.stop()
        self.scatter.clear()
        self._ranged = False
        self.status.setText("The map appears when training starts.")

    def _current_coords(self) -> np.ndarray:
        t = min(1.0, (time.monotonic() - self._glide_started) / GLIDE_S)
        eased = t * t * (3 - 2 * t)
        return self._from + (self._to - self._from) * eased

    def _tick(self) -> None:
        self.coords = self._current_coords()
        done = time.monotonic() - self._glide_started >= GLIDE_S
        self._move_points(self.coords)
        if not self._ranged and len(self.coords):
            self.plot.autoRange()  # once: after that the user's zoom is theirs
            self._ranged = True
        if done:
            self.timer.stop()

    def _move_points(self, coords: np.ndarray) -> None:
        """New positions for the points already drawn. Writing them into the scatter's own
        arrays skips pyqtgraph's per-point style lookup: 8 ms instead of 70 ms at 20,000."""
        data = self.scatter.data
        if len(data) == len(coords) and len(coords) and not self._restyle:
            data["x"] = coords[:, 0]
            data["y"] = coords[:, 1]
            self.scatter.prepareGeometryChange()
            self.scatter.bounds = [None, None]
            self.scatter.invalidate()
        else:
            if len(self._brushes) != len(coords):
                self._recolour()
            self.scatter.setData(pos=coords, brush=self._brushes)
            self._restyle = False

    # -- colours ------------------------------------------------------------------------------
    def _brush(self, rgb) -> object:
        brush = self._colour_cache.get(rgb)
        if brush is None:
            brush = pg.mkBrush(*rgb, 200)
            self._colour_cache[rgb] = brush
        return brush

    def _recolour(self) -> None:
        mode = self.colour_by.currentIndex()
        n = len(self.indices)
        if mode == 0 and n and (self.labels >= 0).any():
            groups = self.labels
        elif mode == 1 and n:
            k = int(np.clip(round(np.sqrt(n / 50)), 2, len(PALETTE)))
            groups = kmeans(self._to.astype(np.float64), k)
        else:
            groups = np.zeros(n, np.int64)
        # One shared brush object per colour: per-point brushes defeat pyqtgraph's cache.
        table = [self._brush(PALETTE[g % len(PALETTE)]) for g in range(int(groups.max(initial=0)) + 1)]
        unknown = self._brush(UNKNOWN)
        self._brushes = [table[g] if g >= 0 else unknown for g in groups]
        self._restyle = True
        if len(self.coords) == n and n:
            self.scatter.setData(pos=self.coords, brush=self._brushes)
            self._restyle = False

    # -- interaction --------------------------------------------------------------------------
    def _nearest(self, scene_pos) -> int | None:
        if not len(self.coords) or not self.plot.sceneBoundingRect().contains(scene_pos):
            return None
        view = self.plot.getViewBox()
        point = view.mapSceneToView(scene_pos)
        pixel = view.viewPixelSize()
        dx = (self.coords[:, 0] - point.x()) / max(pixel[0], 1e-12)
        dy = (self.coords[:, 1] - point.y()) / max(pixel[1], 1e-12)
        distance = dx * dx + dy * dy
        best = int(distance.argmin())
        return best if distance[best] <= 64 else None  # within 8 px

    def _hover(self, scene_pos) -> None:
        best = self._nearest(scene_pos)
        if best is None or self.thumbnail_for is None:
            self.hover_label.hide()
            return
        index = int(self.indices[best])
        pixmap = self.thumbnail_for(index)
        if pixmap is None:
            self.hover_label.hide()
            return
        self.hover_label.setPixmap(pixmap.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.FastTransformation))
        view_pos = self.plot.mapFromScene(scene_pos)
        global_pos = self.plot.mapToGlobal(QPoint(int(view_pos.x()), int(view_pos.y())))
        self.hover_label.move(global_pos + QPoint(14, 14))
        self.hover_label.adjustSize()
        self.hover_label.show()

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            position = points[0].pos()
            distance = (self.coords[:, 0] - position.x()) ** 2 + (self.coords[:, 1] - position.y()) ** 2
            self.point_clicked.emit(int(self.indices[int(distance.argmin())]))

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.hover_label.hide()
        super().leaveEvent(event)

    def stop(self) -> None:
        self.timer.stop()
        self.hover_label.hide()

