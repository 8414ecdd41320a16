"""File > Export model: choose what to export and where, see the parity and latency figures,
then try the exported file on any image."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from sslstudio.gui.widgets.gallery import array_to_qimage
from PySide6.QtGui import QPixmap

GOOD, BAD = "#2e7d32", "#c62828"


class ExportDialog(QDialog):
    export_requested = Signal(object)  # ExportRequest
    try_requested = Signal(str, str)  # model path, image path

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.setAcceptDrops(True)
        self.resize(760, 640)
        self.exported_path: Path | None = None
        self.data_folder: Path | None = None  # where Try it's file picker opens
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.source = QComboBox()
        self.source.setToolTip("An adapted classifier (LoRA merged first), or a run's encoder")
        self.source.currentIndexChanged.connect(self._source_changed)
        self.encoder_only = QCheckBox("Export the encoder (embeddings) instead of the classifier")
        self.int8 = QCheckBox("Also an int8 model (dynamic quantisation), checked the same way")
        out_row = QHBoxLayout()
        self.out = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        form.addRow("Model", self.source)
        form.addRow("", self.encoder_only)
        form.addRow("", self.int8)
        form.addRow("Save as", out_row)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.export_button = QPushButton("Export and verify")
        self.export_button.clicked.connect(self._export)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        layout.addLayout(buttons)

        self.status = QLabel("Each export is run with onnxruntime on items of your folder and "
                             "compared with PyTorch before it is saved.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.checks = QTableWidget(0, 7)
        self.checks.setHorizontalHeaderLabels(["model", "items", "max |diff|", "min cosine",
                                               "top-1 agree", "on its training labels (PyTorch / ONNX)",
                                               "verdict"])
        # Right beside an estimate, 100% on the very labels the model was fitted to read as a
        # second, better accuracy; it is a parity check, and says so.
        self.checks.horizontalHeaderItem(5).setToolTip(
            "Accuracy on the labels the classifier was trained on, by PyTorch and by the exported "
            "model: the two should agree. It is not how well the model does on new items: that is "
            "the estimate in the Classifier panel.")
        self.latency = QTableWidget(0, 5)
        self.latency.setHorizontalHeaderLabels(["model", "batch", "PyTorch ms", "onnxruntime ms", "speed-up"])
        for table in (self.checks, self.latency):
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.verticalHeader().setVisible(False)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(QLabel("Parity with PyTorch on items of the folder"))
        layout.addWidget(self.checks)
        layout.addWidget(QLabel("Latency on this CPU (median per batch)"))
        layout.addWidget(self.latency)

        try_box = QGroupBox("Try it: pick or drop an image (or a text file, for a text model)")
        try_layout = QVBoxLayout(try_box)
        try_row = QHBoxLayout()
        self.try_button = QPushButton("Choose image…")
        self.try_button.clicked.connect(self._choose_image)
        self.try_image = QLabel()
        self.try_image.setFixedSize(96, 96)
        self.try_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.try_result = QLabel("Export a model first.")
        self.try_result.setWordWrap(True)
        self.try_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        try_row.addWidget(self.try_button)
        try_row.addWidget(self.try_image)
        try_row.addWidget(self.try_result, 1)
        self.neighbours = QHBoxLayout()
        try_layout.addLayout(try_row)
        try_layout.addLayout(self.neighbours)
        layout.addWidget(try_box)
        closing = QHBoxLayout()
        closing.addStretch(1)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        closing.addWidget(self.close_button)
        layout.addLayout(closing)
        self.set_busy(False)

    # -- setup --------------------------------------------------------------------------------
    def set_sources(self, sources: list[tuple[str, Path, bool]], default_folder: Path,
                    data_folder: Path | None = None) -> None:
        """(label, folder, is_adapted) entries, most useful first."""
        self.default_folder = default_folder
        self.data_folder = data_folder
        self.source.blockSignals(True)
        self.source.clear()
        for label, folder, adapted in sources:
            self.source.addItem(label, (folder, adapted))
        self.source.blockSignals(False)
        self._source_changed()

    def _source_changed(self) -> None:
        data = self.source.currentData()
        adapted = bool(data and data[1])
        self.encoder_only.setEnabled(adapted)
        if not adapted:
            self.encoder_only.setChecked(False)
        if data is not None:
            folder = data[0]
            name = f"{folder.parent.parent.name}-{folder.name}" if adapted else folder.name
            self.out.setText(str(self.default_folder / f"{name}.onnx"))
        self.export_button.setEnabled(data is not None and not self._busy)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the ONNX model", self.out.text(),
                                              "ONNX models (*.onnx)")
        if path:
            self.out.setText(path)

    def _export(self) -> None:
        from sslstudio.core.export import ExportRequest, export_paths  # torch: loaded on use only

        data = self.source.currentData()
        if data is None or not self.out.text().strip():
            return
        out = Path(self.out.text().strip()).expanduser()
        existing = [p for p in export_paths(out) if p.exists()]
        if existing:
            # Never replaced without a yes: the files may be someone's earlier export.
            names = ", ".join(p.name for p in existing)
            answer = QMessageBox.question(self, "Replace the files?", f"{names} already exist in "
                                          f"{out.parent}. Replace them with this export?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.checks.setRowCount(0)
        self.latency.setRowCount(0)
        self.exported_path = None
        self.export_requested.emit(ExportRequest(
            data[0], out, encoder_only=self.encoder_only.isChecked(),
            quantize="int8" if self.int8.isChecked() else "", overwrite=bool(existing)))

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.export_button.setEnabled(not busy and self.source.currentData() is not None)
        self.try_button.setEnabled(not busy and self.exported_path is not None)

    # -- events -------------------------------------------------------------------------------
    def show_event(self, event) -> None:
        kind = type(event).__name__
        if kind == "ExportProgress":
            self.status.setText(f"{event.phase}: {event.message}…")
            self.status.setStyleSheet("")
        elif kind == "ExportCheck":
            row = self.checks.rowCount()
            self.checks.insertRow(row)
            accuracy = ("" if not event.labelled_items else
                        f"{event.labelled_accuracy_torch:.1%} / {event.labelled_accuracy_onnx:.1%} "
                        f"of {event.labelled_items} (not an estimate)")
            top1 = "" if math.isnan(event.top1_agreement) else f"{event.top1_agreement:.1%}"
            cells = [event.variant, str(event.items), f"{event.max_abs_diff:.2g}",
                     f"{event.min_cosine:.6f}", top1, accuracy, "passed" if event.passed else "FAILED"]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 6:
                    item.setForeground(Qt.GlobalColor.darkGreen if event.passed else Qt.GlobalColor.red)
                    item.setToolTip(f"needed: {event.tolerance}")
                self.checks.setItem(row, column, item)
        elif kind == "ExportLatency":
            row = self.latency.rowCount()
            self.latency.insertRow(row)
            cells = [event.variant, str(event.batch), f"{event.torch_ms:.2f}", f"{event.onnx_ms:.2f}",
                     f"{event.torch_ms / max(event.onnx_ms, 1e-9):.2f}x"]
            for column, text in enumerate(cells):
                self.latency.setItem(row, column, QTableWidgetItem(text))
        elif kind == "ExportFinished":
            ok = event.status == "completed"
            self.status.setStyleSheet(f"color: {GOOD if ok else BAD}; font-weight: bold;")
            if ok:
                self.exported_path = Path(event.path)
                files = ", ".join(Path(f).name for f in event.files)
                self.status.setText(f"Exported and {event.message}: {files} in {Path(event.path).parent}")
                self.try_result.setText("Pick or drop an image to run the exported model on it.")
            else:
                self.status.setText(f"Export {event.status}: {event.message}")

    def show_failure(self, message: str) -> None:
        self.status.setStyleSheet(f"color: {BAD}; font-weight: bold;")
        self.status.setText(message)

    # -- try it -------------------------------------------------------------------------------
    def _choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose an image or a text file", str(self.data_folder or Path.home()),
            "Images and texts (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff *.txt *.md);;"
            "All files (*)")
        if path:
            self.try_image_file(Path(path))

    def try_image_file(self, path: Path) -> None:
        if self.exported_path is None or self._busy:
            return
        self.try_result.setText(f"Running {self.exported_path.name} on {path.name}…")
        self.try_requested.emit(str(self.exported_path), str(path))

    def show_try_result(self, result: dict, neighbours: list, thumbnail_for) -> None:
        if "image" in result:
            image = QPixmap.fromImage(array_to_qimage(result["image"]))
            self.try_image.setPixmap(image.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.FastTransformation))
        else:
            self.try_image.setWordWrap(True)
            self.try_image.setText(result["text"][:120])
        while self.neighbours.count():
            widget = self.neighbours.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        info, output = result["info"], result["output"]
        if info["class_names"]:
            order = output.argsort()[::-1][:3]
            lines = [f"<b>{info['class_names'][order[0]]}</b> {output[order[0]]:.1%}"]
            lines += [f"{info['class_names'][i]} {output[i]:.1%}" for i in order[1:]]
            self.try_result.setText("<br>".join(lines))
            return
        self.try_result.setText(f"Embedding of {len(output)} numbers; the nearest items of the folder:")
        for name, similarity in neighbours:
            label = QLabel()
            pixmap = thumbnail_for(name)
            if isinstance(pixmap, str):  # a text item: its snippet
                label.setText(pixmap[:60])
                label.setWordWrap(True)
                label.setMaximumWidth(110)
            elif pixmap is not None:
                label.setPixmap(pixmap.scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.FastTransformation))
            label.setToolTip(f"{name}\ncosine {similarity:.3f}")
            self.neighbours.addWidget(label)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls and Path(urls[0].toLocalFile()).is_file():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls:
            self.try_image_file(Path(urls[0].toLocalFile()))
