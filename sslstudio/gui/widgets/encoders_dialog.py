"""The pretrained encoders the app can start from, offered once on the first run (and from the
Help menu): what each is, its download size, source and licence. Nothing is downloaded from
here without the question the main window asks before any download."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGridLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

RECOMMENDED = "pretrained_efficientnet_lite0"


class EncodersDialog(QDialog):
    def __init__(self, backbones: dict, download: Callable[[str], None], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Pretrained encoders")
        self.download = download
        intro = QLabel(
            "Starting from a pretrained encoder is the strongest path on a laptop: a few minutes "
            "of training on your folder, then a classifier from a handful of labels. The image "
            "encoders learned from ImageNet; the text one from a billion sentence pairs; CLIP gives "
            "images labels from class names alone. None is included in SSL Studio. Each downloads "
            "once from huggingface.co, only after you say yes. Without them everything still works "
            "offline: training starts from scratch, or from weights you pick in Run setup.")
        intro.setWordWrap(True)
        grid = QGridLayout()
        for column, title in enumerate(("Encoder", "Download", "Source", "Licence", "")):
            header = QLabel(f"<b>{title}</b>")
            grid.addWidget(header, 0, column)
        self.buttons: dict[str, QPushButton] = {}
        offered = [(name, value) for name, value in backbones.items()
                   if value[2] is not None and value[2].get("hub")]
        offered.sort(key=lambda item: item[0] != RECOMMENDED)
        for row, (name, (description, _, extra)) in enumerate(offered, start=1):
            label = extra.get("offer", description) + ("  (recommended)" if name == RECOMMENDED else "")
            text = QLabel(label)
            text.setWordWrap(True)
            text.setToolTip(extra["hub"])
            grid.addWidget(text, row, 0)
            grid.addWidget(QLabel(f"{extra['megabytes']} MB"), row, 1)
            grid.addWidget(QLabel(extra.get("offer_source", extra["source"])), row, 2)
            grid.addWidget(QLabel(extra["licence"]), row, 3)
            button = QPushButton("On disk" if extra["cached"] else "Download…")
            button.setEnabled(not extra["cached"])
            button.clicked.connect(lambda _=False, n=name: self.download(n))
            self.buttons[name] = button
            grid.addWidget(button, row, 4)
        grid.setColumnStretch(0, 1)
        grid.setColumnMinimumWidth(0, 300)  # the names wrap onto two lines, never cut
        table = QWidget()
        table.setLayout(grid)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(table)
        layout.addWidget(close)
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.resize(820, self.sizeHint().height())

    def mark_on_disk(self, name: str) -> None:
        button = self.buttons.get(name)
        if button is not None:
            button.setText("On disk")
            button.setEnabled(False)
