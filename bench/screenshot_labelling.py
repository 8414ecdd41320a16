"""A screenshot of labelling and adaptation in the real window, for docs/ and the README.

    xvfb-run -s "-screen 0 1600x1000x24" python bench/screenshot_labelling.py DATA_DIR RUN \
        [--shots 10] [--out docs/screenshot-labelling.png]

Opens DATA_DIR in a scratch project holding a copy of RUN (a finished `sslstudio train` run on
that folder), prepares labelling, labels `shots` items per class as a user would (the class is
read from the folder name), trains the linear probe and captures the X screen with the map
coloured by predicted class and the Classifier panel showing the estimate.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("run")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" /
                                             "screenshot-labelling.png"))
    args = parser.parse_args()
    from PySide6.QtCore import QSettings

    from sslstudio.core.project import Project
    from sslstudio.gui.app import create_app
    from sslstudio.gui.main_window import MainWindow

    app = create_app()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data).resolve()
        project = Project.create(Path(tmp) / "project", str(data))
        run_copy = project.runs_dir / Path(args.run).name
        shutil.copytree(args.run, run_copy, ignore=shutil.ignore_patterns("cache", "adapted"))
        window = MainWindow(project.path, settings=QSettings(str(Path(tmp) / "s.ini"),
                                                             QSettings.Format.IniFormat))
        window.skip_close_question = True
        window.setGeometry(0, 0, 1600, 1000)
        window.show()

        def wait(condition, timeout):
            end = time.monotonic() + timeout
            while not condition() and time.monotonic() < end:
                app.processEvents()
                time.sleep(0.01)

        wait(lambda: window.engine is not None and window.session.data_set is not None
             and not window.controller.busy(), 900)
        window.labelling.label_panel.prepare_button.click()
        wait(lambda: window.labelling.session.item_map.features is not None and not window.controller.busy(), 900)
        rng = np.random.default_rng(0)
        folder_labels = np.asarray(window.session.data_set.labels)
        for c, name in enumerate(window.session.data_set.class_names):
            cls = window.labelling.session.labels.store.add_class(name)
            picks = rng.choice(np.flatnonzero(folder_labels == c), args.shots, replace=False)
            window.labelling.session.labels.store.assign([window.labelling.session.labels.item_keys[i] for i in picks], cls.id)
        window.labelling.editing.refresh_labels()
        window.labelling.adapt_panel.train_button.click()
        wait(lambda: window.labelling.session.predictions.adapted_path is not None and not window.controller.busy(), 900)
        window.gallery.filter.setCurrentText("Least confident first")
        window.gallery.select(int(window.gallery.model.item_at(0)))
        window.classifier_dock.raise_()
        wait(lambda: False, 2.0)
        subprocess.run(["import", "-window", "root", args.out], check=True)
        print("wrote", args.out)
        window.close()


if __name__ == "__main__":
    main()
