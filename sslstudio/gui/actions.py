"""Menu and toolbar actions, made one way for the window and its components."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence


def make_action(parent, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    action = QAction(text, parent)
    # The name as made: some actions change their text with the state ("Undo label 14 items
    # bag"), and Help's shortcut table names what the key does, not what it does just now.
    action.setProperty("guide_name", text.replace("&", ""))
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    return action
