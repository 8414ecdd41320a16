"""Run setup's Teacher row: the teacher a distillation learns from, typed or picked with
Distil from… (pretrained encoders on disk, the project's finished runs, a folder, a file)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QMenu, QPushButton, QWidget

from sslstudio.gui.modalities import VIEWS


class TeacherPicker(QWidget):
    chosen = Signal()  # a teacher was picked or typed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("none: the backbone learns on its own")
        self.edit.setToolTip("Distillation: a small student (the backbone; auto picks the "
                             "modality's fast one) learns to reproduce this encoder's features of "
                             "your folder. A finished run, a pretrained encoder on disk, a model "
                             "folder or a weights file")
        self.edit.editingFinished.connect(self.chosen)
        self.button = QPushButton("Distil from…")
        self.button.setToolTip("Choose a teacher: a small, fast encoder of your folder learns "
                               "what it knows")
        self.button.clicked.connect(self.offer)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self.modality = "image"
        self.backbones: dict = {}  # engine_info's backbones: (description, modality, extra)
        self.other_teachers: list[tuple[str, str, str]] = []  # (label, modality, path): CLIP
        self.runs: list[tuple[str, str]] = []  # (label, run folder): the project's finished runs
        self.menu: QMenu | None = None

    def text(self) -> str:
        return self.edit.text().strip()

    def clear(self) -> None:
        self.edit.clear()

    def set_modality(self, modality: str, backbones: dict) -> None:
        self.modality, self.backbones = modality, backbones

    def set_runs(self, runs: list[tuple[str, str]]) -> None:
        self.runs = list(runs)

    def offers(self) -> list[tuple[str, str]]:
        """(label, teacher) for the menu: pretrained encoders of this kind of data on disk, then
        the project's finished runs."""
        offers = []
        for name, (description, modality, extra) in self.backbones.items():
            if modality != self.modality or not extra or not extra.get("cached"):
                continue
            # A text model is taught from its folder; an image backbone by its name.
            teacher = extra["cached"] if VIEWS[self.modality].weights_in_folder else name
            offers.append((description.split(" (")[0] + " (pretrained, on disk)", teacher))
        offers += [(f"{label} (on disk)", path) for label, modality, path in self.other_teachers
                   if modality == self.modality]
        offers += [(f"run {label}", path) for label, path in self.runs]
        return offers

    def offer(self) -> None:
        menu = QMenu(self)
        for label, teacher in self.offers():
            menu.addAction(label, lambda t=teacher: self.set_teacher(t))
        if menu.actions():
            menu.addSeparator()
        menu.addAction("A run or model folder…", self._choose_folder)
        if not VIEWS[self.modality].weights_in_folder:
            menu.addAction("A weights file…", self._choose_file)
        self.menu = menu  # tests reach it; Qt keeps it alive while shown
        menu.popup(self.button.mapToGlobal(self.button.rect().bottomLeft()))

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the teacher: a run folder or a model folder")
        if path:
            self.set_teacher(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the teacher's weights", "",
                                              "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)")
        if path:
            self.set_teacher(path)

    def set_teacher(self, teacher: str) -> None:
        self.edit.setText(teacher)
        self.chosen.emit()
