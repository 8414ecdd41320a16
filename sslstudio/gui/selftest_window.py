"""The self-test's window step (`sslstudio selftest`): the one part of it that needs Qt."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def open_on_sample(sample: Path, work: Path) -> str:
    """The main window on a project of its own in `work`, until the sample has loaded; closed
    again. Offscreen on a Linux machine without a display."""
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if headless and sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, QTimer, qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    def quiet(mode, context, message):  # the offscreen platform's notes are not the test's
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    previous = qInstallMessageHandler(quiet)

    from sslstudio.gui.main_window import MainWindow

    from sslstudio.core.project import Project

    app = QApplication.instance() or QApplication([sys.argv[0]])
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("welcome/encoders_offered", True)  # the first run's offer is the user's, not the test's
    # A project of its own in the temporary folder: nothing goes to the user's documents.
    project = Project.create(work / "project")
    project.set_data_dir(str(sample))
    shown = time.monotonic()
    window = MainWindow(work / "project", settings=settings)
    window.skip_close_question = True
    window.show()
    app.processEvents()
    first_window = time.monotonic() - shown
    deadline = time.monotonic() + 120
    while (window.session.data_set is None or window.controller.busy()) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if window.session.data_set is None:
        window.close()
        raise RuntimeError("the sample did not load in the window within two minutes")
    count = len(window.session.data_set)
    window.close()
    QTimer.singleShot(0, app.quit)
    app.processEvents()
    qInstallMessageHandler(previous)
    return f"window in {first_window:.2f} s, sample of {count} images shown"
