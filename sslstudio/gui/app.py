"""Start the desktop app: the window first, everything heavy after it is on screen."""

from __future__ import annotations

import sys
from pathlib import Path
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication
from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QTimer
from sslstudio.gui.main_window import MainWindow
from sslstudio.resources import icon_path


def apply_palette(app) -> None:
    """Follow the system's light or dark scheme, and make the plots match it."""

    app.setStyle("Fusion")
    hints = app.styleHints()
    dark = hasattr(hints, "colorScheme") and hints.colorScheme() == Qt.ColorScheme.Dark
    if dark:
        palette = QPalette()
        base, window, text = QColor(30, 30, 33), QColor(43, 43, 47), QColor(230, 230, 230)
        for role, colour in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
                             (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
                             (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, window),
                             (QPalette.ColorRole.ButtonText, text),
                             (QPalette.ColorRole.Highlight, QColor(61, 133, 224)),
                             (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
                             (QPalette.ColorRole.ToolTipBase, window), (QPalette.ColorRole.ToolTipText, text)):
            palette.setColor(role, colour)
        app.setPalette(palette)
    palette = app.palette()
    pg.setConfigOptions(background=palette.color(QPalette.ColorRole.Base),
                        foreground=palette.color(QPalette.ColorRole.Text), antialias=False)


def create_app(argv: list[str] | None = None):
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setApplicationName("SSL Studio")
    app.setOrganizationName("SSL Studio")
    app.setDesktopFileName("io.github.sslstudio.SSLStudio")
    app.setWindowIcon(QIcon(str(icon_path())))
    apply_palette(app)
    if not hasattr(app, "_sslstudio_gc"):
        # Python's collector runs in whichever thread happens to allocate; if that is a worker
        # and the garbage holds Qt widgets, Qt deletes them off the GUI thread and can deadlock
        # against it (seen in a test run). Collect on the GUI thread's timer instead.

        app._sslstudio_gc = GarbageCollector(interval=1.0)
    return app


def run(project: str | None = None, sample: bool = False) -> int:
    app = create_app()
    window = MainWindow(Path(project) if project else None)
    window.show()
    # Without a window manager (a bare X display, some kiosk and remote set-ups) nothing activates
    # the window: it gets no keyboard focus, and Ctrl+R and the other shortcuts do nothing while
    # the buttons work. Asking for activation gives it the focus there; a window manager decides
    # as usual elsewhere.
    window.raise_()
    window.activateWindow()
    if sample:
        QTimer.singleShot(0, window.folders.open_sample)
    return app.exec()
