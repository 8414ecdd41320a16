"""The 2-D embedding map: points rasterised in numpy (so 200,000 of them pan and zoom like a
few thousand), points that glide between snapshots, hover thumbnails, zoom and pan, colour by
folder label, cluster, the user's labels or the classifier's predictions with a legend that
hides classes, and a label mode where a click or a lasso labels points."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QGraphicsPathItem, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QSizePolicy, QToolButton, QVBoxLayout, QWidget)

GLIDE_S = 0.4
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (57, 59, 121), (173, 73, 74), (99, 121, 57), (206, 109, 189), (82, 84, 163)]
UNKNOWN = (150, 150, 150)
# Groups found by k-means are not classes: drawn in the class palette, group 1 took class 1's
# blue and sat on another class's items. Their own colours, none of the first five classes'.
GROUP_PALETTE = [(204, 121, 167), (230, 190, 0), (0, 190, 190), (120, 70, 20), (90, 90, 90),
                 (170, 210, 120), (255, 160, 122), (0, 0, 128), (128, 128, 0), (160, 0, 80),
                 (120, 120, 200), (0, 90, 60), (255, 190, 230), (60, 40, 90), (200, 140, 60)]
FOLDER, GROUPS, ONE_COLOUR = "Colour by folder label", "Colour by group", "One colour"
MAX_LASSO_VERTICES = 400
POINT_RADIUS = 2  # pixels: a disc 5 px across
KMEANS_FIT_POINTS = 5000  # groups are fitted on a sample, then every point joins its nearest


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over the points: a loop over the polygon's edges only, over the
    points inside its bounding box only (a lasso around a tenth of 200,000 points: 1.2 s -> ms)."""
    inside = np.zeros(len(points), bool)
    low, high = polygon.min(0), polygon.max(0)
    candidates = np.flatnonzero((points[:, 0] >= low[0]) & (points[:, 0] <= high[0])
                                & (points[:, 1] >= low[1]) & (points[:, 1] <= high[1]))
    inside[candidates] = _even_odd(points[candidates], polygon)
    return inside


def _even_odd(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    px, py = polygon[:, 0], polygon[:, 1]
    j = len(polygon) - 1
    for i in range(len(polygon)):
        straddles = (py[i] > y) != (py[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]
        inside ^= straddles & (x < cross_x)
        j = i
    return inside


class LassoViewBox(pg.ViewBox):
    """A ViewBox whose left-drag draws a lasso instead of panning, while lasso mode is on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lasso_enabled = False
        self.on_lasso = None  # callable(polygon (n, 2) in view coordinates)
        self._vertices: list[tuple[float, float]] = []
        self._path_item: QGraphicsPathItem | None = None

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - pyqtgraph's name
        if not self.lasso_enabled or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        point = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            start = self.mapSceneToView(ev.buttonDownScenePos())
            self._vertices = [(start.x(), start.y())]
            self._path_item = QGraphicsPathItem()
            # The selection colour, 2 px wide whatever the zoom: visible on light and dark maps.
            pen = QPen(pg.mkColor(61, 133, 224), 2)
            pen.setCosmetic(True)
            self._path_item.setPen(pen)
            self.addItem(self._path_item, ignoreBounds=True)
        self._vertices.append((point.x(), point.y()))
        if self._path_item is not None:
            path = QPainterPath(QPointF(*self._vertices[0]))
            for vx, vy in self._vertices[1:]:
                path.lineTo(vx, vy)
            path.closeSubpath()
            self._path_item.setPath(path)
        if ev.isFinish():
            if self._path_item is not None:
                self.removeItem(self._path_item)
                self._path_item = None
            polygon = np.array(self._vertices, np.float64)
            if len(polygon) > MAX_LASSO_VERTICES:
                polygon = polygon[np.linspace(0, len(polygon) - 1, MAX_LASSO_VERTICES).astype(int)]
            self._vertices = []
            if len(polygon) >= 3 and self.on_lasso is not None:
                self.on_lasso(polygon)


def kmeans(points: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Lloyd's algorithm with k-means++ starts, fitted on at most KMEANS_FIT_POINTS of the
    points; then every point joins its nearest centre."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(points)))
    fit = points if len(points) <= KMEANS_FIT_POINTS else \
        points[rng.choice(len(points), KMEANS_FIT_POINTS, replace=False)]
    centres = [fit[rng.integers(len(fit))]]
    for _ in range(1, k):
        d2 = np.min([((fit - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        centres.append(fit[rng.choice(len(fit), p=d2 / total)] if total > 0 else fit[0])
    centres = np.array(centres)
    for _ in range(iterations):
        labels = _nearest_centre(fit, centres)
        counts = np.bincount(labels, minlength=k)
        kept = counts > 0  # an emptied centre stays where it was
        for axis in range(2):
            sums = np.bincount(labels, weights=fit[:, axis], minlength=k)
            centres[kept, axis] = sums[kept] / counts[kept]
    return _nearest_centre(points, centres)


def _nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # One centre at a time, keeping the running nearest: no (points x centres) array.
    x, y = points[:, 0].astype(np.float32), points[:, 1].astype(np.float32)
    best = np.full(len(points), np.inf, np.float32)
    nearest = np.zeros(len(points), np.int64)
    for index, (cx, cy) in enumerate(np.asarray(centres, np.float32)):
        distance = (x - cx) ** 2 + (y - cy) ** 2
        closer = distance < best
        best[closer] = distance[closer]
        nearest[closer] = index
    return nearest


def rgb_words(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours as opaque ARGB32 words, what a QImage of Format_ARGB32 holds."""
    rgb = np.asarray(rgb, np.uint32).reshape(-1, 3)
    return (0xFF000000 | (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype(np.uint32)


def _disc(radius: int) -> list[tuple[int, int]]:
    return [(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if dx * dx + dy * dy <= radius * radius + radius]


class PointCloud(pg.GraphicsObject):
    """Points painted by rasterising them in numpy into one image the size of the view: a frame
    costs a few array operations over the points whatever their number, and colours and
    visibility are arrays, not a brush object per point. At 200,000 points on two cores
    (bench/map_frames.py, idle): pan, zoom and hover about 25 ms a frame (pyqtgraph's scatter
    item 21 ms), but restyling 34 ms against 2.2 s and hiding a class 25 ms against 147 ms."""

    def __init__(self, radius: int = POINT_RADIUS):
        super().__init__()
        self.coords = np.zeros((0, 2), np.float32)
        self.colours = np.zeros(0, np.uint32)
        self.visible = np.zeros(0, bool)
        self._offsets = _disc(radius)
        self._radius = radius
        self._bounds = QRectF()

    def set_points(self, coords: np.ndarray, colours: np.ndarray | None = None,
                   visible: np.ndarray | None = None) -> None:
        coords = np.asarray(coords, np.float32)
        if colours is not None:
            self.colours = np.asarray(colours, np.uint32)
        if visible is not None:
            self.visible = np.asarray(visible, bool)
        if len(self.colours) != len(coords):
            self.colours = np.full(len(coords), rgb_words(np.array([UNKNOWN]))[0], np.uint32)
        if len(self.visible) != len(coords):
            self.visible = np.ones(len(coords), bool)
        self.coords = coords
        self.prepareGeometryChange()
        finite = coords[np.isfinite(coords).all(1)] if len(coords) else coords
        if len(finite):
            low, high = finite.min(0), finite.max(0)
            self._bounds = QRectF(float(low[0]), float(low[1]), float(high[0] - low[0]),
                                  float(high[1] - low[1]))
        else:
            self._bounds = QRectF()
        self.informViewBoundsChanged()
        self.update()

    def set_visible(self, visible: np.ndarray) -> None:
        self.visible = np.asarray(visible, bool)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return self._bounds

    def dataBounds(self, axis, frac=1.0, orthoRange=None):  # noqa: N802, N803 - pyqtgraph's names
        if not len(self.coords):
            return None, None
        values = self.coords[:, axis]
        return float(np.nanmin(values)), float(np.nanmax(values))

    def pixelPadding(self) -> int:  # noqa: N802 - pyqtgraph's name: keeps edge points in view
        return self._radius + 1

    def paint(self, painter, option, widget=None) -> None:
        view = self.getViewBox()
        if not len(self.coords) or view is None:
            return
        transform = painter.transform()
        area = transform.mapRect(view.viewRect()).toAlignedRect()
        width, height = area.width(), area.height()
        if width <= 0 or height <= 0 or width * height > 64_000_000:
            return
        x, y = self.coords[:, 0], self.coords[:, 1]
        column = (transform.m11() * x + transform.m21() * y + transform.dx() - area.left())
        row = (transform.m12() * x + transform.m22() * y + transform.dy() - area.top())
        margin = self._radius
        shown = self.visible & (column >= -margin) & (column < width + margin) \
            & (row >= -margin) & (row < height + margin)
        column = column[shown].astype(np.int64)
        row = row[shown].astype(np.int64)
        colours = self.colours[shown]
        image = np.zeros((height, width), np.uint32)
        for dx, dy in self._offsets:
            c, r = column + dx, row + dy
            inside = (c >= 0) & (c < width) & (r >= 0) & (r < height)
            image[r[inside], c[inside]] = colours[inside]
        qimage = QImage(image.data, width, height, 4 * width, QImage.Format.Format_ARGB32)
        painter.save()
        painter.resetTransform()
        painter.drawImage(area.left(), area.top(), qimage)
        painter.restore()


class EmbeddingMap(QWidget):
    point_clicked = Signal(int)  # dataset index
    points_lassoed = Signal(object)  # np.ndarray of dataset indices inside a lasso
    label_mode_changed = Signal(bool)

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
        self.colours = np.zeros(0, np.uint32)  # ARGB of each shown point
        self._groups_of: tuple[np.ndarray, np.ndarray] | None = None  # (positions, their k-means)
        self._stopped = False
        # Extra colourings by name: (group per dataset index, -1 for none; RGB per group; a name
        # per group for the legend).
        self.item_colourings: dict[str, tuple[np.ndarray, list, list]] = {}
        self.groups = np.zeros(0, np.int64)  # the colour group of each shown point, -1 for none
        self.hidden_groups: set[int] = set()  # switched off in the legend
        self.visible = np.zeros(0, bool)
        self._legend_mode = ""

        self.view_box = LassoViewBox()
        self.view_box.on_lasso = self.lasso
        # The view follows the points, with a margin, until the user pans or zooms: then their
        # framing is theirs until other points are shown.
        self._user_framed = False
        self.view_box.sigRangeChangedManually.connect(self._framed_by_user)
        self.plot = pg.PlotWidget(viewBox=self.view_box)
        self.plot.setAspectLocked(False)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.cloud = PointCloud()
        self.plot.addItem(self.cloud)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.plot.scene().sigMouseClicked.connect(self._scene_clicked)

        self.colour_by = QComboBox()
        self.colour_by.addItems([FOLDER, GROUPS, ONE_COLOUR])
        self.colour_by.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.colour_by.currentIndexChanged.connect(self._recolour)
        # The colouring the user chose: when a new run or another run takes it away for a while,
        # it comes back as soon as it is there again (the map fell back to "One colour").
        self.preferred_colouring = FOLDER
        self.colour_by.activated.connect(
            lambda _index: setattr(self, "preferred_colouring", self.colour_by.currentText()))
        self.label_mode = QToolButton()
        self.label_mode.setText("Label mode")
        self.label_mode.setCheckable(True)
        self.label_mode.setToolTip("On: a click labels a point and a drag draws a lasso that labels "
                                   "every point inside, with the class chosen in the Labels panel. "
                                   "Off: a click selects the item and a drag pans")
        self.label_mode.toggled.connect(self._label_mode_toggled)
        self.status = QLabel("The map appears when training starts.")
        # A long status must not widen the window's centre past the screen: it is cut instead.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar = QHBoxLayout()
        bar.addWidget(self.colour_by)
        bar.addWidget(self.label_mode)
        bar.addWidget(self.status, 1)
        # The legend names each colour; unticking an entry hides its points (and keeps them out
        # of hover, clicks and the lasso), as in FiftyOne's and the projector's legends.
        self.legend = QListWidget()
        self.legend.setMaximumWidth(190)
        # A long class name is cut short with "…" (its tooltip has it whole), never scrolled
        # sideways: at 1280 px a scroll bar took the legend's last line.
        self.legend.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.legend.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.legend.setToolTip("What each colour means; untick a class to hide its points")
        self.legend.itemChanged.connect(self._legend_toggled)
        self.legend.hide()
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.plot, 1)
        body.addWidget(self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addLayout(body, 1)

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
        if not same_points:
            self._user_framed = False
        if not self.timer.isActive() and not self._stopped:
            self.timer.start()
        if step is not None:
            self.status.setText(f"{len(indices):,} items, step {step}")

    def clear(self) -> None:
        self.indices = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int64)
        self._from = self._to = self.coords = np.zeros((0, 2), np.float32)
        self.colours = np.zeros(0, np.uint32)
        self.groups, self.visible, self.hidden_groups = np.zeros(0, np.int64), np.zeros(0, bool), set()
        self.legend.clear()
        self.legend.hide()
        self.timer.stop()
        self.cloud.set_points(self.coords, self.colours, self.visible)
        self.status.setText("The map appears when training starts.")

    def _framed_by_user(self, *_args) -> None:
        self._user_framed = True

    def _current_coords(self) -> np.ndarray:
        t = min(1.0, (time.monotonic() - self._glide_started) / GLIDE_S)
        eased = t * t * (3 - 2 * t)
        return self._from + (self._to - self._from) * eased

    def _tick(self) -> None:
        self.coords = self._current_coords()
        done = time.monotonic() - self._glide_started >= GLIDE_S
        self._move_points(self.coords)
        if not self._user_framed and len(self.coords):
            self.view_box.autoRange(padding=0.05)
        if done:
            self.timer.stop()

    def _move_points(self, coords: np.ndarray) -> None:
        """New positions for the points drawn, with their colours and visibility as they are."""
        if len(self.colours) != len(coords):
            self._recolour()
        self.cloud.set_points(coords, self.colours, self.visible)

    # -- colours ------------------------------------------------------------------------------
    def set_class_names(self, names) -> None:
        """The folder's class names, which the legend shows for "Colour by folder label"."""
        self.class_names = tuple(names)
        if len(self.indices):
            self._recolour()

    def set_item_colouring(self, name: str, groups: np.ndarray | None, colours: list | None = None,
                           show: bool = False, names: list[str] | None = None) -> None:
        """Add (or replace, or with `groups` None remove) a colouring by a value per dataset item;
        `names` name the groups in the legend."""
        if groups is None:
            self.item_colourings.pop(name, None)
        else:
            self.item_colourings[name] = (np.asarray(groups, np.int64), list(colours or PALETTE),
                                          list(names or []))
        present = [self.colour_by.itemText(i) for i in range(self.colour_by.count())]
        self.colour_by.blockSignals(True)
        if groups is None and name in present:
            self.colour_by.removeItem(present.index(name))
        elif groups is not None and name not in present:
            self.colour_by.insertItem(self.colour_by.count() - 1, name)
        if show:
            self.colour_by.setCurrentText(name)
            self.preferred_colouring = name
        elif groups is not None and name == self.preferred_colouring:
            self.colour_by.setCurrentText(name)
        elif groups is None and self.colour_by.currentText() != self.preferred_colouring:
            # What was shown went away: back to the user's choice where it is offered.
            if self.colour_by.findText(self.preferred_colouring) >= 0:
                self.colour_by.setCurrentText(self.preferred_colouring)
            else:
                self.colour_by.setCurrentText(FOLDER)
        self.colour_by.blockSignals(False)
        self._recolour()

    def _recolour(self) -> None:
        mode = self.colour_by.currentText()
        n = len(self.indices)
        palette, names = PALETTE, []
        if mode in self.item_colourings and n:
            by_item, palette, names = self.item_colourings[mode]
            inside = self.indices < len(by_item)
            groups = np.full(n, -1, np.int64)
            groups[inside] = by_item[self.indices[inside]]
        elif mode == FOLDER and n and (self.labels >= 0).any():
            groups, names = self.labels, list(self.class_names)
        elif mode == GROUPS and n:
            k = int(np.clip(round(np.sqrt(n / 50)), 2, len(PALETTE)))
            if self._groups_of is None or self._groups_of[0] is not self._to:
                self._groups_of = (self._to, kmeans(self._to, k))  # until the points move
            groups = self._groups_of[1]
            names = [f"group {g + 1}" for g in range(k)]
        else:
            groups = np.zeros(n, np.int64)
            mode = ONE_COLOUR
        table = rgb_words(np.array([palette[g % len(palette)]
                                    for g in range(int(groups.max(initial=0)) + 1)] + [UNKNOWN]))
        self.colours = table[np.where(groups >= 0, groups, len(table) - 1)] if n else table[:0]
        if mode != self._legend_mode:
            self.hidden_groups = set()  # another colouring: its classes all start shown
            self._legend_mode = mode
        self.groups = groups
        self.visible = ~np.isin(groups, list(self.hidden_groups)) if self.hidden_groups else np.ones(n, bool)
        self._fill_legend(mode, groups, palette, names)
        if len(self.coords) == n and n:
            self.cloud.set_points(self.coords, self.colours, self.visible)

    def _fill_legend(self, mode: str, groups: np.ndarray, palette: list, names: list[str]) -> None:
        self.legend.blockSignals(True)
        self.legend.clear()
        counts = np.bincount(groups[groups >= 0], minlength=int(groups.max(initial=-1)) + 1) \
            if len(groups) else np.zeros(0, np.int64)
        entries = [(g, names[g] if g < len(names) else f"{g}", palette[g % len(palette)], int(c))
                   for g, c in enumerate(counts) if c]
        unknown = int((groups < 0).sum())
        if unknown:
            entries.append((-1, "none", UNKNOWN, unknown))
        for group, name, rgb, count in entries:
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(*rgb))
            item = QListWidgetItem(QIcon(swatch), f"{name} ({count:,})")
            item.setToolTip(f"{name}: {count:,} points; untick to hide them")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if group in self.hidden_groups
                               else Qt.CheckState.Checked)
            item.setData(Qt.ItemDataRole.UserRole, group)
            self.legend.addItem(item)
        self.legend.blockSignals(False)
        self.legend.setVisible(mode != ONE_COLOUR and bool(entries))

    def _legend_toggled(self, item: QListWidgetItem) -> None:
        group = int(item.data(Qt.ItemDataRole.UserRole))
        if item.checkState() == Qt.CheckState.Checked:
            self.hidden_groups.discard(group)
        else:
            self.hidden_groups.add(group)
        self.visible = ~np.isin(self.groups, list(self.hidden_groups))
        if len(self.cloud.coords) == len(self.visible):
            self.cloud.set_visible(self.visible)
        self.hover_label.hide()

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
        if len(self.visible) == len(distance):
            distance[~self.visible] = np.inf
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
        if isinstance(pixmap, str):  # a text item: its opening words
            self.hover_label.setPixmap(QPixmap())
            self.hover_label.setWordWrap(True)
            self.hover_label.setMaximumWidth(360)
            self.hover_label.setText(pixmap)
        else:
            self.hover_label.setText("")
            self.hover_label.setPixmap(pixmap.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.FastTransformation))
        view_pos = self.plot.mapFromScene(scene_pos)
        global_pos = self.plot.mapToGlobal(QPoint(int(view_pos.x()), int(view_pos.y())))
        self.hover_label.move(global_pos + QPoint(14, 14))
        self.hover_label.adjustSize()
        self.hover_label.show()

    def _label_mode_toggled(self, on: bool) -> None:
        self.view_box.lasso_enabled = on
        if on:
            self._status_before_label_mode = self.status.text()
            self._show_label_target()
        else:
            self.status.setText(getattr(self, "_status_before_label_mode", ""))
        self.label_mode_changed.emit(on)

    def set_label_target(self, class_name: str) -> None:
        """The class a click or a lasso labels with, said on the map while label mode is on."""
        self.label_target = class_name
        if self.label_mode.isChecked():
            self._show_label_target()

    def _show_label_target(self) -> None:
        target = getattr(self, "label_target", "")
        self.status.setText(f"Label mode: a click or a lasso labels as \u201c{target}\u201d"
                            if target else "Label mode: add a class in the Labels panel first")

    def lasso(self, polygon: np.ndarray) -> None:
        """Emit the dataset indices of the points inside `polygon` (view coordinates)."""
        if not len(self.coords):
            return
        inside = points_in_polygon(self.coords, polygon)
        if len(self.visible) == len(inside):
            inside &= self.visible  # a hidden class is not labelled by a lasso drawn across it
        if inside.any():
            self.points_lassoed.emit(self.indices[inside].copy())

    def _scene_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        best = self._nearest(event.scenePos())
        if best is not None:
            self.point_clicked.emit(int(self.indices[best]))

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            position = points[0].pos()
            distance = (self.coords[:, 0] - position.x()) ** 2 + (self.coords[:, 1] - position.y()) ** 2
            if len(self.visible) == len(distance):
                distance[~self.visible] = np.inf
            self.point_clicked.emit(int(self.indices[int(distance.argmin())]))

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.hover_label.hide()
        super().leaveEvent(event)

    def stop(self) -> None:
        """For good (the window is closing): snapshots still in flight no longer animate."""
        self._stopped = True
        self.timer.stop()
        self.hover_label.hide()

