"""The window as a distillation run ends: the student's few-label probe rising towards the
teacher's dashed level, and the closing banner of student against teacher.

    QT_QPA_PLATFORM=offscreen python bench/screenshot_distill.py DATA_DIR TEACHER \
        [--minutes 1.5] [--size 1600x1000] [--out docs/screenshot-distill.png]

DATA_DIR is a class-per-subfolder folder (the classes give the monitor's probe its labels);
TEACHER anything `--teacher` takes. Project and settings live in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("teacher")
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "screenshot-distill.png")
    args = parser.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    import sslstudio.gui.folders as folders
    from sslstudio.gui.app import apply_palette
    from sslstudio.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    apply_palette(app)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folders.default_projects_root = lambda: Path(tmp) / "projects"
        settings = QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat)
        settings.setValue("welcome/encoders_offered", True)
        w = MainWindow(settings=settings)
        w.skip_close_question = True
        w.setGeometry(0, 0, width, height)
        w.show()

        def wait(condition, timeout=1200.0):
            deadline = time.monotonic() + timeout
            while not condition():
                app.processEvents()
                time.sleep(0.02)
                if time.monotonic() > deadline:
                    raise TimeoutError("the window did not get there in time")
            for _ in range(30):  # let the plots' timers draw
                app.processEvents()
                time.sleep(0.01)

        wait(lambda: w.engine is not None)
        w.folders.open_data_folder(args.data)
        wait(lambda: w.session.data_set is not None and not w.controller.busy())
        w.setup.labels.setChecked(True)
        w.setup.by_minutes.setChecked(True)
        w.setup.minutes.setValue(args.minutes)
        w.setup.teacher.set_teacher(args.teacher)
        w.training.start()
        wait(lambda: w.controller.busy())
        wait(lambda: not w.controller.busy() and w.runs.list.count() == 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        w.grab().save(str(args.out))
        print(f"{args.out}\nbanner: {w.banner.text()}")
        w.close()


if __name__ == "__main__":
    main()
