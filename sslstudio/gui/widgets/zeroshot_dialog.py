"""What zero-shot pre-labels need: a model folder, and a line describing each class."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget)


class ZeroShotDialog(QDialog):
    download_requested = Signal()  # the user asks for the CLIP the app can fetch (images)

    def __init__(self, class_names: list[str], view, model: str = "", parent=None,
                 download_text: str = ""):
        """`view`: the ModalityView of the items (which models fit, how a name is worded)."""
        super().__init__(parent)
        self.setWindowTitle("Pre-label with a model")
        layout = QVBoxLayout(self)
        kind = view.zero_shot_models
        intro = QLabel(f"Every item gets the class whose description is nearest, with a "
                       f"confidence; nothing becomes a label until you accept it. The model: {kind}. "
                       "Nothing is downloaded unless you ask.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        model_row = QHBoxLayout()
        self.model = QLineEdit(model)
        self.model.setPlaceholderText("model folder")
        self.model.textChanged.connect(self._update_ok)
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        layout.addLayout(model_row)
        self.download_button = QPushButton(download_text)
        self.download_button.setVisible(bool(download_text))
        self.download_button.setToolTip("Asks first; nothing is downloaded without your yes")
        self.download_button.clicked.connect(self.download_requested)
        layout.addWidget(self.download_button)
        form_widget = QWidget()
        form = QFormLayout(form_widget)
        example = view.zero_shot_template
        self.descriptions: dict[str, QLineEdit] = {}
        for name in class_names:
            edit = QLineEdit()
            edit.setPlaceholderText(example.replace("{}", name))
            edit.setToolTip("One line saying what the class looks like or is about; empty: the "
                            "placeholder shown")
            self.descriptions[name] = edit
            form.addRow(name, edit)
        layout.addWidget(form_widget)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Pre-label")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._update_ok()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder", self.model.text())
        if folder:
            self.model.setText(folder)

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.model.text().strip()))

    def chosen(self) -> tuple[str, dict[str, str]]:
        return self.model.text().strip(), {name: edit.text() for name, edit in self.descriptions.items()}
