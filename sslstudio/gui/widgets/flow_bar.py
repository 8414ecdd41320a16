"""The flow across the top of the window: five steps, where the user is, and the next action."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

from sslstudio.gui.flow import CURRENT, DONE, STEPS, FlowState

MARKS = {DONE: "\u2713", CURRENT: "\u25cf", "to do": "\u25cb"}  # check, filled and empty circle
STYLES = {
    DONE: "color: palette(text);",
    CURRENT: "font-weight: bold; color: palette(highlighted-text); background: palette(highlight);"
             " border-radius: 4px;",
    "to do": "color: palette(mid);",
}


class FlowBar(QWidget):
    step_clicked = Signal(str)  # a step's title: show its panel
    next_clicked = Signal(str)  # the next action's key (see flow.FlowState.next_action)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        layout.setSpacing(4)
        self.buttons: dict[str, QToolButton] = {}
        for number, title in enumerate(STEPS, 1):
            button = QToolButton()
            button.setAutoRaise(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.clicked.connect(lambda _=False, t=title: self.step_clicked.emit(t))
            self.buttons[title] = button
            layout.addWidget(button)
            if number < len(STEPS):
                arrow = QLabel("\u203a")  # a single guillemet between steps
                arrow.setStyleSheet("color: palette(mid);")
                layout.addWidget(arrow)
        layout.addSpacing(12)
        self.next_text = QLabel()
        self.next_text.setWordWrap(True)
        # Room for three lines whatever the text: a bar whose height followed its text moved
        # everything below it by 12-25 px between steps, and clicks landed on the wrong item.
        self.next_text.setFixedHeight(3 * self.next_text.fontMetrics().lineSpacing() + 2)
        self.next_text.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.next_text, 1)
        self.next_button = QPushButton()
        self.next_button.clicked.connect(lambda: self.next_clicked.emit(self._next_action))
        layout.addWidget(self.next_button)
        self._next_action = ""
        self.state: FlowState | None = None

    def show_state(self, state: FlowState) -> None:
        if state == self.state:
            return
        self.state = state
        for number, step in enumerate(state.steps, 1):
            button = self.buttons[step.title]
            button.setText(f"{MARKS[step.state]} {number} {step.title}: {step.detail}")
            button.setStyleSheet(f"QToolButton {{ {STYLES[step.state]} padding: 2px 6px; }}")
            button.setToolTip(f"{step.title}: {step.state}. Click to show its panel.")
        self.next_text.setText(f"<b>Next:</b> {state.next_text}")
        self.next_text.setToolTip(state.next_text)
        self._next_action = state.next_action
        self.next_button.setText(state.next_button)
        self.next_button.setVisible(bool(state.next_action))
