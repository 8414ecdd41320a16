"""Training curves, redrawn on a timer from the controller's growing buffers, never per event."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QStackedLayout, QWidget

from sslstudio.core.history import RunHistory

REDRAW_MS = 100  # 10 Hz
TEACHER = "teacher_probe_accuracy"
SPARSE = ("std_ratio", "effective_rank", "knn_accuracy", "probe_accuracy", TEACHER)


def _let_title_shrink(plot: pg.PlotItem) -> None:
    """pyqtgraph holds a plot at least as wide as its title's text (the title label sets its
    minimum at every text change and resize), and a plot wider than its place in the grid is
    cut on the right: the collapse meter was, at 1280 x 800. The title may be clipped instead;
    the plot keeps its place."""
    label = plot.titleLabel
    measure = label.updateMin

    def update_min() -> None:
        measure()
        label.setMinimumWidth(0)
        height = label._sizeHint[Qt.SizeHint.MinimumSize][1]
        label._sizeHint[Qt.SizeHint.MinimumSize] = (0, height)

    label.updateMin = update_min
    update_min()


class CurvesView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history: RunHistory | None = None
        self._drawn_version = -1
        # One view per plot, not one layout of six: a new point then repaints only the plots
        # whose data changed (the monitor's three change every few seconds, not every step),
        # and axis text, the costliest thing to paint, is redrawn for those alone.
        # Until a run has logged a step, a line on what will appear instead of empty axes.
        self.hint = QLabel("The curves appear here once a run starts: loss, learning rate, "
                           "images per second, the collapse meter and, when there are labels "
                           "to judge by, few-label accuracy.")
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setMargin(24)
        self.plots_widget = QWidget()
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self.hint)
        self._stack.addWidget(self.plots_widget)
        grid = QGridLayout(self.plots_widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        self.plots = {}
        self.curves = {}
        self._drawn_counts: dict[str, int] = {}
        self._user_zoomed: set[str] = set()
        self._plot_of: dict[str, str] = {}
        specs = [
            ("loss", "Loss", [("loss", "loss", (80, 160, 255))]),
            ("lr", "Learning rate", [("lr", "lr", (255, 170, 60))]),
            ("speed", "Images / s", [("samples_per_s", "images/s", (120, 200, 120))]),
            ("collapse", "Collapse (1 = healthy)",
             [("std_ratio", "std × √d", (220, 90, 90))]),
            ("rank", "Effective rank", [("effective_rank", "rank", (170, 120, 220))]),
            ("knn", "Accuracy", [("knn_accuracy", "kNN", (60, 190, 190)),
                                 ("probe_accuracy", "10-shot probe", (230, 160, 40)),
                                 (TEACHER, "teacher's 10-shot probe", (150, 150, 150))]),
        ]
        self._titles: dict[str, tuple[str, list]] = {}
        for i, (key, title, series) in enumerate(specs):
            self._titles[key] = (title, series)
            view = pg.PlotWidget(title=self._title(key, shown=set()))
            view.setMinimumSize(140, 110)  # the grid shrinks with the window instead of being cut
            grid.addWidget(view, i // 2, i % 2)
            plot = view.getPlotItem()
            _let_title_shrink(plot)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("bottom", "step")
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            # A fixed axis width: otherwise each new tick label re-lays out the whole grid of
            # plots, which costs the event loop ~40 ms per redraw.
            plot.getAxis("left").setWidth(56)
            # Ranges are ours, and sticky (see _fit): continuous auto-range would move the axes,
            # and so repaint their text, on every new point. A user's zoom is left alone.
            plot.disableAutoRange()
            plot.getViewBox().sigRangeChangedManually.connect(
                lambda *_args, k=key: self._user_zoomed.add(k))
            self.plots[key] = plot
            for column, name, colour in series:
                # Monitor columns are sparse: draw them as connected dots over their finite values.
                sparse = column in SPARSE
                # The teacher's score is one figure, a dashed level to reach, not a trajectory.
                pen = (pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine) if column == TEACHER
                       else pg.mkPen(colour, width=2))
                curve = plot.plot(pen=pen, name=name,
                                  symbol="o" if sparse and column != TEACHER else None,
                                  symbolSize=5, symbolBrush=colour, symbolPen=None,
                                  skipFiniteCheck=not sparse)
                self.curves[column] = curve
                self._plot_of[column] = key
        healthy = pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen((150, 150, 150), style=pg.QtCore.Qt.PenStyle.DashLine))
        self.plots["collapse"].addItem(healthy)
        self.plots["lr"].getAxis("left").enableAutoSIPrefix(False)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def set_item_noun(self, noun: str) -> None:
        """What the speed plot counts ("images", "texts"), from the folder the window shows."""
        title = f"{noun.capitalize()} / s"
        if self._titles["speed"][0] == title:
            return
        series = [(column, f"{noun}/s", colour) for column, _, colour in self._titles["speed"][1]]
        self._titles["speed"] = (title, series)
        self.curves["samples_per_s"].opts["name"] = f"{noun}/s"
        self.plots["speed"].setTitle(self._title("speed", shown=set()))

    def set_history(self, history: RunHistory) -> None:
        self.history = history
        self._drawn_version = -1
        self._drawn_counts.clear()
        self._user_zoomed.clear()
        self.redraw()

    def redraw(self) -> None:
        history = self.history
        shown = self.plots_widget if history is not None and history.size else self.hint
        if self._stack.currentWidget() is not shown:
            self._stack.setCurrentWidget(shown)
        if history is None or history.version == self._drawn_version:
            return
        self._drawn_version = history.version
        steps = history.column("step")
        for column, curve in self.curves.items():
            values = history.column(column)
            if column in SPARSE:
                keep = np.isfinite(values)
                x, y = steps[keep], values[keep]
                if column == TEACHER and len(x):
                    # Across the whole run so far, from its first step.
                    x, y = np.array([steps[0], steps[-1]]), np.array([y[-1], y[-1]])
            else:
                x, y = steps, values
            # The teacher's level stretches with every step, its value does not change.
            count = len(steps) if column == TEACHER and len(x) else len(x)
            if self._drawn_counts.get(column) == count:
                continue  # nothing new for this series: leave its plot unpainted
            self._drawn_counts[column] = count
            curve.setData(x, y)
            if column == TEACHER:
                plot = self._plot_of[column]
                self.plots[plot].setTitle(self._title(plot, shown={TEACHER} if len(x) else set()))
            key = self._plot_of[column]
            if key not in self._user_zoomed:
                # On every line of the plot: fitted to the probe alone, the kNN line fell out
                # of the accuracy plot.
                shown = [c.getData() for k, c in self.curves.items() if self._plot_of[k] == key]
                shown = [(dx, dy) for dx, dy in shown if dx is not None and len(dx)]
                if shown:
                    self._fit(self.plots[key], np.concatenate([d[0] for d in shown]),
                              np.concatenate([d[1] for d in shown]))

    def _title(self, key: str, shown: set[str]) -> str:
        """The plot's title; a plot of several lines names them in their colours (a legend
        inside the plot covered the curves it named), the teacher's only in a run that has one."""
        title, series = self._titles[key]
        named = [(name, colour) for column, name, colour in series
                 if column != TEACHER or column in shown]
        if len(named) < 2:
            return title
        return title + ": " + " ".join(
            f'<span style="color: rgb{colour}">\u2501 {name}</span>' for name, colour in named)

    @staticmethod
    def _fit(plot, x: np.ndarray, y: np.ndarray) -> None:
        """Grow the view to hold the data, with headroom, and shrink it only when the data
        fills less than a third of it: the axes change a few times per run, not every step."""
        finite = np.isfinite(y)
        if not finite.any():
            return
        x, y = x[finite], y[finite]
        (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
        low, high = float(y.min()), float(y.max())
        span = max(high - low, abs(high) * 1e-3, 1e-12)
        if low < y0 or high > y1 or (high - low) < (y1 - y0) / 3:
            plot.setYRange(low - 0.1 * span, high + 0.1 * span, padding=0)
        left, right = float(x.min()), float(x.max())
        if right >= x1 or left <= x0 or right < x0 + (x1 - x0) / 3:
            width = max(1.0, (right - left) * 1.5)
            # A margin on the left too: a first point drawn on the axis was hard to see.
            plot.setXRange(left - 0.05 * width, left + width, padding=0)

    def stop(self) -> None:
        self.timer.stop()
