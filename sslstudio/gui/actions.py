"""Menu and toolbar actions, made one way for the window and its components."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence


def make_action(parent, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    action = QAction(text, parent)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    return action
