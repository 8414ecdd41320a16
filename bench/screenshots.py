"""One screenshot per step of the flow (data, pretrain, label, classify, export), for docs/.

    QT_QPA_PLATFORM=offscreen python bench/screenshots.py [DATA_DIR] [--sizes 1600x1000 1280x800]
        [--seconds 25] [--out docs]

Drives the real window as a newcomer would on DATA_DIR (the bundled sample by default): opens it,
pretrains for --seconds and stops, labels eight items of two classes in the gallery (the first
two folders, as their names say), lets the window embed every item, trains the linear probe and
exports it. At each step the window (and, for the export, its dialog) is captured with
QWidget.grab, at each size, as OUT/flow-N-STEP-WxH.png. Scratch project and settings live in a
temporary folder; the data folder is only read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DOCS = Path(__file__).resolve().parents[1] / "docs"


def capture(app, window, size: str, seconds: float, data: Path | None, out: Path) -> list[Path]:
    from PySide6.QtCore import QSettings

    import sslstudio.gui.folders as folders
    from sslstudio.gui.main_window import MainWindow

    width, height = (int(v) for v in size.split("x"))
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        folders.default_projects_root = lambda: Path(tmp) / "projects"
        window_ = MainWindow(settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window_.skip_close_question = True
        window_.setGeometry(0, 0, width, height)
        window_.show()

        def wait(condition, timeout=600.0):
            deadline = time.monotonic() + timeout
            while not condition():
                app.processEvents()
                time.sleep(0.02)
                if time.monotonic() > deadline:
                    raise TimeoutError("the window did not get there in time")
            for _ in range(20):  # let the plots' timers draw
                app.processEvents()
                time.sleep(0.01)

        def shoot(number: int, step: str, widget=None) -> None:
            path = out / f"flow-{number}-{step}-{size}.png"
            (widget or window_).grab().save(str(path))
            shots.append(path)

        w = window_
        wait(lambda: w.engine is not None)
        if data is None:
            w.folders.open_sample()
        else:
            w.folders.open_data_folder(data)
        wait(lambda: w.session.data_set is not None and not w.controller.busy())
        shoot(1, "data")

        w.setup.by_epochs.setChecked(False)
        w.setup.minutes.setValue(max(0.1, seconds / 60 + 0.5))  # stopped by hand after `seconds`
        w.flow_bar.next_button.click()  # "Start training"
        started = time.monotonic()
        wait(lambda: time.monotonic() - started > seconds and w.controller.history.size >= 2)
        w.tabs.setCurrentWidget(w.curves)
        wait(lambda: True)
        shoot(2, "pretrain")
        w.flow_bar.next_button.click()  # "Stop training"
        wait(lambda: not w.controller.busy() and w.flow_bar.state.next_action == "folder_classes")
        w.flow_bar.next_button.click()  # "Use the folder names": the classes, keys 1-9 in order

        folders = [c.name for c in w.labelling.session.labels.store.classes()][:2]
        keys = w.labelling.session.labels.item_keys
        for position, name in enumerate(folders):
            items = [i for i, key in enumerate(keys) if key.startswith(name + "/")][:8]
            w.gallery.select_items(items)
            w.labelling.editing.label_key_pressed(position + 1)
        # As a newcomer would: no Prepare; Find groups computes the features it needs itself.
        w.labelling.label_panel.find_groups_button.click()
        wait(lambda: w.labelling.session.item_map.groups is not None and not w.controller.busy())
        w.tabs.setCurrentWidget(w.map)
        w.reveal(w.labelling.label_panel)
        wait(lambda: True)
        shoot(3, "label")

        w.flow_bar.next_button.click()  # "Train classifier"
        wait(lambda: not w.controller.busy() and w.labelling.session.predictions.adapted_path is not None)
        w.reveal(w.labelling.adapt_panel)
        wait(lambda: True)
        shoot(4, "classify")

        w.flow_bar.next_button.click()  # "Export…"
        dialog = w.exports.dialog
        wait(lambda: dialog is not None and dialog.isVisible())
        dialog.export_button.click()
        wait(lambda: not w.controller.busy() and dialog.exported_path is not None)
        shoot(5, "export", dialog)
        dialog.close()
        w.close()
        app.processEvents()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--sizes", nargs="+", default=["1600x1000", "1280x800"])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    from sslstudio.gui.app import create_app

    app = create_app()
    args.out.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        for path in capture(app, None, size, args.seconds, args.data, args.out):
            print(path)


if __name__ == "__main__":
    main()
