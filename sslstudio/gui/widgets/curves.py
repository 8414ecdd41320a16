"""Training curves, redrawn on a timer from the controller's growing buffers, never per event."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from sslstudio.gui.history import RunHistory

REDRAW_MS = 100  # 10 Hz


class CurvesView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history: RunHistory | None = None
        self._drawn_version = -1
        self.layout_widget = pg.GraphicsLayoutWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.layout_widget)
        self.plots = {}
        self.curves = {}
        specs = [
            ("loss", "Loss", [("loss", "loss", (80, 160, 255))]),
            ("lr", "Learning rate", [("lr", "lr", (255, 170, 60))]),
            ("speed", "Images / s", [("samples_per_s", "images/s", (120, 200, 120))]),
            ("collapse", "Collapse meter (1 = healthy)",
             [("std_ratio", "std × √d", (220, 90, 90))]),
            ("rank", "Effective rank", [("effective_rank", "rank", (170, 120, 220))]),
            ("knn", "kNN accuracy", [("knn_accuracy", "kNN", (60, 190, 190))]),
        ]
        for i, (key, title, series) in enumerate(specs):
            plot = self.layout_widget.addPlot(row=i // 2, col=i % 2, title=title)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("bottom", "step")
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            self.plots[key] = plot
            for column, name, colour in series:
                # Monitor columns are sparse: draw them as connected dots over their finite values.
                sparse = column in ("std_ratio", "effective_rank", "knn_accuracy")
                curve = plot.plot(pen=pg.mkPen(colour, width=2), name=name,
                                  symbol="o" if sparse else None, symbolSize=5,
                                  symbolBrush=colour, symbolPen=None, skipFiniteCheck=not sparse)
                self.curves[column] = curve
        healthy = pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen((150, 150, 150), style=pg.QtCore.Qt.PenStyle.DashLine))
        self.plots["collapse"].addItem(healthy)
        self.plots["lr"].getAxis("left").enableAutoSIPrefix(False)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def set_history(self, history: RunHistory) -> None:
        self.history = history
        self._drawn_version = -1
        for plot in self.plots.values():
            plot.enableAutoRange()
        self.redraw()

    def redraw(self) -> None:
        history = self.history
        if history is None or history.version == self._drawn_version:
            return
        self._drawn_version = history.version
        steps = history.column("step")
        for column, curve in self.curves.items():
            values = history.column(column)
            if column in ("std_ratio", "effective_rank", "knn_accuracy"):
                keep = np.isfinite(values)
                curve.setData(steps[keep], values[keep])
            else:
                curve.setData(steps, values)

    def stop(self) -> None:
        self.timer.stop()
