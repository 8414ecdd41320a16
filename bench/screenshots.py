"""Screenshots of the real window mid-training, for docs/ and the README.

    xvfb-run -s "-screen 0 1600x1000x24" python bench/screenshots.py DATA_DIR [--seconds 90]

Opens DATA_DIR, starts training with the defaults, and after SECONDS captures the X screen with
ImageMagick's `import -window root` on the curves tab and again on the embedding map tab.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--seconds", type=float, default=90)
    args = parser.parse_args()
    from PySide6.QtCore import QSettings

    from sslstudio.gui.app import create_app
    from sslstudio.gui.main_window import MainWindow

    app = create_app()
    with tempfile.TemporaryDirectory() as tmp:
        import sslstudio.gui.main_window as main_window

        main_window.default_projects_root = lambda: Path(tmp) / "projects"
        window = MainWindow(settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window.skip_close_question = True
        window.setGeometry(0, 0, 1600, 1000)
        window.show()

        def wait(condition, timeout):
            end = time.monotonic() + timeout
            while not condition() and time.monotonic() < end:
                app.processEvents()
                time.sleep(0.01)

        wait(lambda: window.engine is not None, 120)
        window.open_data_folder(Path(args.data))
        wait(lambda: window.data_set is not None, 600)
        box = getattr(window, "_scan_report_box", None)
        if box is not None:
            box.close()
        window.setup.by_minutes.setChecked(True)
        window.setup.minutes.setValue(5)
        window.start_training()
        window.gallery.select(123)
        wait(lambda: False, args.seconds)
        DOCS.mkdir(exist_ok=True)
        for tab, name in ((window.curves, "screenshot-training.png"), (window.map, "screenshot-map.png")):
            window.tabs.setCurrentWidget(tab)
            wait(lambda: False, 1.5)
            subprocess.run(["import", "-window", "root", str(DOCS / name)], check=True)
            print("wrote", DOCS / name)
        window.close()


if __name__ == "__main__":
    main()
