"""Help > Getting started: the flow from a folder to an exported model, and every keyboard
shortcut, read from the window's own actions so the two can never disagree."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

FLOW = (
    ("Data", "Open a folder of images or texts (File > Open folder, or drop it on the window), or "
             "Help > Open sample dataset. Broken files are skipped and listed in the log."),
    ("Pretrain", "Pick a method in Run setup (the defaults suit this machine) and press Start "
                 "training. Watch the curves and the map; Pause, Resume and Stop keep a "
                 "checkpoint."),
    ("Label", "In the Labels panel add classes. Select items in the gallery and press 1-9, or turn "
              "on Label mode on the map and click points or draw a lasso. Find groups and "
              "Suggest pick what to label next."),
    ("Classify", "In the Classifier panel pick a method (linear probe for a handful of labels) "
                 "and train it: an honest accuracy estimate with its interval comes with it. "
                 "Compare methods tries all of them on the same folds."),
    ("Export", "File > Export model writes ONNX, checked against PyTorch, with its preprocessing "
               "and class names; Try it runs the file on any item."),
)
GALLERY_KEYS = (("1-9", "label the selected items with that class (gallery)"),
                ("0, Delete or Backspace", "remove their label (gallery)"))


def readme_path() -> Path | None:
    """The README beside the package in a source checkout; None in an installed bundle."""
    candidate = Path(__file__).resolve().parents[3] / "README.md"
    return candidate if candidate.is_file() else None


def shortcut_rows(actions: list[QAction]) -> list[tuple[str, str]]:
    rows = []
    for action in actions:
        keys = action.shortcut()
        if keys.isEmpty():
            continue
        name = (action.property("guide_name") or action.text()).replace("&", "").rstrip("…").strip()
        rows.append((keys.toString(QKeySequence.SequenceFormat.NativeText), name))
    return rows


def guide_html(actions: list[QAction]) -> str:
    steps = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>" for name, text in FLOW)
    rows = "".join(f"<tr><td><code>{html.escape(keys)}</code></td><td>{html.escape(what)}</td></tr>"
                   for keys, what in shortcut_rows(actions) + list(GALLERY_KEYS))
    readme = readme_path()
    more = (f'<p>The whole guide, the command line and the benchmarks: '
            f'<a href="{QUrl.fromLocalFile(str(readme)).toString()}">README.md</a>.</p>'
            if readme is not None else "")
    return (f"<h3>From a folder to a model of your own</h3><ol>{steps}</ol>"
            f"<h3>Keyboard</h3><table cellspacing='6'>{rows}</table>{more}")


class GuideDialog(QDialog):
    def __init__(self, actions: list[QAction], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Getting started with SSL Studio")
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(guide_html(actions))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(620, 560)
