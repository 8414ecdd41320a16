"""Spin boxes and combo boxes that change only when the user means it.

Scrolling a form with the mouse wheel passed over its fields and changed them ("projection dim"
128 -> 123 -> 115, seen by a tester). A field takes the wheel only while it has the keyboard
focus (clicked or tabbed into); otherwise the wheel goes to what holds the form, which scrolls.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QWidget


class _WheelGuard(QObject):
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            parent = watched.parentWidget()
            if parent is not None:
                QCoreApplication.sendEvent(parent, event)
            return True
        return False


def guard_wheel(root: QWidget) -> None:
    """Every spin box and combo box below `root` (made so far) takes the wheel only when focused."""
    guard = root.findChild(_WheelGuard, "wheel_guard")
    if guard is None:
        guard = _WheelGuard(root)
        guard.setObjectName("wheel_guard")
    for field in [*root.findChildren(QAbstractSpinBox), *root.findChildren(QComboBox)]:
        field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # no focus from the wheel itself
        field.removeEventFilter(guard)
        field.installEventFilter(guard)
