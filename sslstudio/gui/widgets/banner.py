"""The message over the curves and the map: a run gone wrong, or an earlier encoder kept.

It belongs to the run it speaks of (`run`), so that the window can take it down when another run
is selected or another folder opened, and the user can close it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton


class Banner(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.run = ""  # the run folder the message is about ("" none)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("\u00d7")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Close this message (the run's log keeps it)")
        self.close_button.clicked.connect(self.dismiss)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def say(self, text: str, style: str, run: str = "") -> None:
        self.label.setText(text)
        self.setStyleSheet(style)
        self.run = run
        self.show()

    def text(self) -> str:
        return self.label.text()

    def dismiss(self) -> None:
        self.hide()
        self.run = ""
