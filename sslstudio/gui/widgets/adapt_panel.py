"""The Classifier panel: pick an adaptation method and its knobs, train or compare, and read
the honest estimate (interval, per-class table, confusion matrix)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QListWidget, QListWidgetItem, QPushButton, QScrollArea,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from sslstudio.gui.widgets.wheel_guard import guard_wheel
from sslstudio.gui.widgets.run_setup import KnobForm, let_combos_shrink


NO_RESULT_TEXT = "Label at least two classes, then train a classifier."


class AdaptPanel(QWidget):
    train_requested = Signal(str, dict)  # method, knob values
    compare_requested = Signal(dict)  # method -> knob values
    classifier_chosen = Signal(str)  # an adapted model's folder: make it the current classifier

    def __init__(self, parent=None):
        super().__init__(parent)
        self.adapters: dict[str, type] = {}
        self.unfit: dict[str, str] = {}  # methods the selected run's encoder cannot take, and why
        self.knob_form: KnobForm | None = None
        self.saved_knobs: dict[str, dict] = {}  # method name -> knob values set in this panel
        self.knob_method = ""
        self.estimates: dict[str, object] = {}
        self.comparing = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # The panel follows the dock's width, as Run setup does: no sideways scroll bar at 1280
        # or 1400 px (the classifiers' list needed one).
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        scroll.setWidget(body)
        outer.addWidget(scroll)
        layout = QVBoxLayout(body)

        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        self.method = QComboBox()
        self.method.currentTextChanged.connect(self._method_changed)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.knob_holder = QVBoxLayout()
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train classifier")
        self.train_button.setToolTip("Estimate by cross-validation, fit on every label, predict every item")
        self.compare_button = QPushButton("Compare methods")
        self.compare_button.setToolTip("Estimate every method that fits the run's encoder on the same folds")
        self.train_button.clicked.connect(lambda: self.train_requested.emit(self.method.currentText(),
                                                                            self.knob_values()))
        self.compare_button.clicked.connect(self._compare)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.compare_button)
        method_layout.addWidget(self.method)
        method_layout.addWidget(self.explanation)
        method_layout.addLayout(self.knob_holder)
        method_layout.addLayout(buttons)

        result_box = QGroupBox("Estimate")
        result_layout = QVBoxLayout(result_box)
        self.headline = QLabel(NO_RESULT_TEXT)
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.comparison = QTableWidget(0, 4)
        self.comparison.setHorizontalHeaderLabels(["method", "accuracy", "95% interval", "balanced"])
        self.per_class = QTableWidget(0, 4)
        self.per_class.setHorizontalHeaderLabels(["class", "labels", "recall", "precision"])
        self.confusion = QTableWidget(0, 0)
        self.confusion.setToolTip("Rows: true class; columns: predicted. Each cell is the share of "
                                  "the row's labelled items (their mean count per repeat in its tooltip)")
        for table in (self.comparison, self.per_class, self.confusion):
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.verticalHeader().setVisible(table is self.confusion)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.comparison.hide()
        result_layout.addWidget(self.headline)
        result_layout.addWidget(self.comparison)
        self.per_class_title = QLabel("Per class")
        self.confusion_title = QLabel("Confusion matrix (rows true, columns predicted)")
        for title in (self.per_class_title, self.confusion_title):
            title.setWordWrap(True)  # one long line held the panel wider than its dock
        result_layout.addWidget(self.per_class_title)
        result_layout.addWidget(self.per_class)
        result_layout.addWidget(self.confusion_title)
        result_layout.addWidget(self.confusion)

        # Every classifier trained from this run, the current one in bold: what the gallery and
        # the map show and what export offers first. A click makes another one current.
        trained_box = QGroupBox("Your classifiers")
        trained_layout = QVBoxLayout(trained_box)
        self.trained = QListWidget()
        # An entry wraps rather than scroll sideways: "linear · 16 labels · 93.8% (72%-99%) ·
        # 06 Dec 05:35" was wider than the dock at 1280 and 1400 px.
        self.trained.setWordWrap(True)
        self.trained.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.trained.setMaximumHeight(120)
        self.trained.setToolTip("Every classifier trained from the selected run: method, labels "
                                "used, estimated accuracy, when. Click one to show its predictions")
        self.trained.itemActivated.connect(self._chosen)
        self.trained.itemClicked.connect(self._chosen)
        self.trained_hint = QLabel("None yet: Train classifier fits one on every label.")
        self.trained_hint.setWordWrap(True)
        trained_layout.addWidget(self.trained)
        trained_layout.addWidget(self.trained_hint)

        layout.addWidget(method_box)
        layout.addWidget(trained_box)
        layout.addWidget(result_box, 1)
        guard_wheel(self)
        let_combos_shrink(self)
        self.set_ready(False, "")

    def set_classifiers(self, entries: list[tuple[str, str]], current: str) -> None:
        """`entries`: (folder, line to show) each, oldest first; `current`: the folder shown."""
        self.trained.blockSignals(True)
        self.trained.clear()
        for folder, text in reversed(entries):  # newest first
            item = QListWidgetItem(("\u25b6 " if folder == current else "   ") + text)
            item.setData(Qt.ItemDataRole.UserRole, folder)
            if folder == current:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            self.trained.addItem(item)
        self.trained.blockSignals(False)
        self.trained_hint.setVisible(not entries)

    def _chosen(self, item: QListWidgetItem) -> None:
        self.classifier_chosen.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def populate(self, adapters: dict[str, type]) -> None:
        self.adapters = adapters
        self.method.blockSignals(True)
        self.method.clear()
        self.method.addItems(list(adapters))
        self.method.blockSignals(False)
        self._method_changed(self.method.currentText())

    def set_unfit(self, unfit: dict[str, str]) -> None:
        """Grey out the methods the selected run's encoder cannot take, saying why on each."""
        self.unfit = dict(unfit)
        model = self.method.model()
        for row in range(self.method.count()):
            name = self.method.itemText(row)
            item = model.item(row)
            item.setEnabled(name not in unfit)
            item.setToolTip(f"Does not apply to this run's encoder: {unfit[name]}" if name in unfit else "")
        if self.method.currentText() in unfit:
            self.method.setCurrentText("linear")

    def _method_changed(self, name: str) -> None:
        if self.knob_form is not None:
            self.saved_knobs[self.knob_method] = self.knob_form.values()
            # Hidden and deleted in place: unparenting would flash it up as a top-level window.
            self.knob_holder.removeWidget(self.knob_form)
            self.knob_form.hide()
            self.knob_form.deleteLater()
            self.knob_form = None
        adapter = self.adapters.get(name)
        if adapter is None:
            return
        self.explanation.setText((adapter.__doc__ or "").strip())
        self.knob_form = KnobForm(adapter.config_cls, self.saved_knobs.get(name))
        self.knob_method = name  # knobs are kept per method name, as the run form keeps them
        self.knob_holder.addWidget(self.knob_form)

    def knob_values(self) -> dict:
        if self.knob_form is None:
            return {}
        defaults = self.knob_form.config_cls()
        return {k: v for k, v in self.knob_form.values().items() if v != getattr(defaults, k)}

    def _compare(self) -> None:
        """Every method with the knobs last set for it in this panel (defaults otherwise)."""
        values = {}
        for name, adapter in self.adapters.items():
            if name in self.unfit:
                continue
            if self.knob_form is not None and self.knob_method == name:
                values[name] = self.knob_values()
                continue
            saved = self.saved_knobs.get(name, {})
            defaults = adapter.config_cls()
            values[name] = {k: v for k, v in saved.items() if v != getattr(defaults, k)}
        self.compare_requested.emit(values)

    def set_ready(self, ready: bool, reason: str) -> None:
        for button in (self.train_button, self.compare_button):
            button.setEnabled(ready)
            button.setToolTip(button.toolTip().split("\n")[0] + (f"\n{reason}" if reason else ""))

    def forget_results(self) -> None:
        """Another project: no estimate, table or matrix of the last one stays."""
        self.headline.setText(NO_RESULT_TEXT)
        for table in (self.per_class, self.confusion):
            table.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.started = None

    def clear_results(self, comparing: bool) -> None:
        self.estimates = {}
        self.comparing = comparing
        self.comparison.setRowCount(0)
        self.comparison.setVisible(comparing)

    # -- results ------------------------------------------------------------------------------
    def show_started(self, event) -> None:
        share = event.trainable_parameters / max(1, event.total_parameters)
        self.headline.setText(
            f"<b>{event.method}</b>: {event.num_labels} labels in {len(event.class_names)} classes; "
            f"{event.trainable_parameters:,} of {event.total_parameters:,} parameters train "
            f"({share:.1%}).<br>Estimating by {event.scheme}…")
        self.started = event

    def show_estimate(self, event) -> None:
        self.estimates[event.method] = event
        stop = (f"; each fit trained {event.epochs} epoch{'s' if event.epochs != 1 else ''}"
                if event.epochs else "")
        started = getattr(self, "started", None)
        trainable = ""
        if started is not None and started.method == event.method:
            share = started.trainable_parameters / max(1, started.total_parameters)
            trainable = f" {started.trainable_parameters:,} parameters trained ({share:.1%})."
        if event.estimated:
            self.headline.setText(
                f"<b>{event.method}: {event.accuracy:.1%}</b> estimated accuracy "
                f"(95% interval {event.ci_low:.0%} to {event.ci_high:.0%}), balanced "
                f"{event.balanced_accuracy:.1%}.<br>By {event.scheme}{stop}. Every labelled item was "
                f"scored by a model that never saw it; the interval is wide because labels are few.{trainable}"
                + (f"<br><b>Note</b>: {event.chance_words()}." if event.chance_words() else "")
                + (f"<br><b>Caution</b>: {event.caution}." if event.caution else ""))
        else:
            self.headline.setText(
                f"<b>{event.method}</b>: {event.scheme}.<br>The classifier still trains "
                f"on every label; a second label in each class lets its accuracy be measured.{trainable}")
        if self.comparing:
            row = self.comparison.rowCount()
            self.comparison.insertRow(row)
            cells = ((f"{event.accuracy:.1%}", f"{event.ci_low:.0%}-{event.ci_high:.0%}",
                      f"{event.balanced_accuracy:.1%}") if event.estimated else ("none", "", ""))
            for column, text in enumerate((event.method + (" (see caution)" if event.caution else ""), *cells)):
                item = QTableWidgetItem(text)
                item.setToolTip(event.caution)
                self.comparison.setItem(row, column, item)
        names = list(event.class_names)
        # Which method the tables belong to: after a comparison they show its last method's.
        self.per_class_title.setText(f"Per class, {event.method}")
        self.confusion_title.setText(f"Confusion matrix of {event.method} (rows: true class, % of "
                                     "its labelled items; columns: predicted)")
        self.per_class.setRowCount(len(names))
        for row, name in enumerate(names):
            for column, text in enumerate((name, str(int(event.support[row])),
                                           f"{event.recall[row]:.0%}", f"{event.precision[row]:.0%}")):
                self.per_class.setItem(row, column, QTableWidgetItem(text))
        confusion = np.asarray(event.confusion)
        self.confusion.setRowCount(len(names))
        self.confusion.setColumnCount(len(names))
        self.confusion.setHorizontalHeaderLabels(names)
        self.confusion.setVerticalHeaderLabels(names)
        # Shares of each true class, not counts: the counts are means over repeats (13.5 items
        # read as a bug), and a share compares across classes of any size.
        rows = np.maximum(confusion.sum(1, keepdims=True), 1e-9)
        shares = confusion / rows
        for r in range(len(names)):
            for c in range(len(names)):
                value = float(shares[r, c])
                cell = QTableWidgetItem(f"{value:.0%}" if confusion[r, c] else "")
                cell.setToolTip(f"{float(confusion[r, c]):.3g} items a repeat")
                shade = int(200 * value)
                colour = QColor(40, 120, 60, shade) if r == c else QColor(180, 50, 40, shade)
                cell.setBackground(QBrush(colour))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.confusion.setItem(r, c, cell)
