"""The real main window, offscreen, driven as a user would."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, QSettings, QStandardPaths, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from sslstudio.gui.worker import JobWorker  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "fashion-mnist"


@pytest.fixture(autouse=True)
def no_qt_leftovers(qapp):
    """napari's rule: a test leaves no running thread, active timer or open window behind.

    Garbage is collected on this (the GUI) thread only, as the app does: a collection that
    happens to run in a worker thread and frees Qt widgets deadlocks against the GUI thread."""
    QStandardPaths.setTestModeEnabled(True)
    gc.collect()
    gc.disable()
    yield
    for _ in range(5):
        QApplication.processEvents()
    gc.collect()
    gc.enable()
    running = [w for w in list(JobWorker.instances) if w.is_running()]
    assert not running, f"worker threads still running: {running}"
    visible = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    assert not visible, f"windows left open: {visible}"
    timers = [t for w in QApplication.topLevelWidgets() for t in w.findChildren(QTimer) if t.isActive()]
    assert not timers, f"timers left running: {timers}"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from sslstudio.gui.app import apply_palette
    from sslstudio.gui.main_window import MainWindow

    monkeypatch.setattr("sslstudio.gui.main_window.default_projects_root", lambda: tmp_path / "projects")
    apply_palette(QApplication.instance())
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    made = []

    def make(project=None):
        w = MainWindow(project, settings=settings)
        w.skip_close_question = True
        qtbot.addWidget(w)
        w.show()
        qtbot.waitUntil(lambda: w.engine is not None, timeout=60000)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.isVisible():
            w.close()


def small_run(w, epochs=3):
    w.setup.image_size.setValue(16)
    w.setup.batch_size.setValue(32)
    w.setup.by_epochs.setChecked(True)
    w.setup.epochs.setValue(epochs)
    w.setup.objective.setCurrentText("simclr")


def open_sample(qtbot, w):
    w.open_sample()
    wait_for_data(qtbot, w)
    assert len(w.data_set) == 300 and w.gallery.model.rowCount() == 300


def wait_for_data(qtbot, w):
    """The data is shown and the scan's worker has ended: Start is available."""
    qtbot.waitUntil(lambda: w.data_set is not None and not w.controller.busy(), timeout=60000)
    assert w.start_action.isEnabled()


def test_gui_modules_do_not_import_torch():
    code = ("import sys; import sslstudio.gui.main_window, sslstudio.gui.app; "
            "assert 'torch' not in sys.modules, 'torch imported before the window shows'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert result.returncode == 0, result.stderr


def test_train_live_pause_resume_stop_and_resume_the_run(qtbot, window):
    w = window()
    assert w.windowTitle() == "SSL Studio"
    open_sample(qtbot, w)
    assert w.windowTitle() == "SSL Studio — fashion-mnist"
    small_run(w, epochs=200)
    w.start_training()
    qtbot.waitUntil(lambda: w.controller.history.size >= 3, timeout=60000)
    qtbot.waitUntil(lambda: len(w.map.indices) > 0, timeout=60000)
    assert w.curves.curves["loss"].xData is not None and len(w.curves.curves["loss"].xData) >= 1
    assert w.stop_action.isEnabled() and not w.start_action.isEnabled()

    w.toggle_pause()
    assert w.pause_button.text() == "Resume"
    time.sleep(0.3)
    QApplication.processEvents()
    paused_at = w.controller.history.size
    qtbot.wait(800)
    assert w.controller.history.size <= paused_at + 1  # at most the step in flight lands
    w.toggle_pause()
    qtbot.waitUntil(lambda: w.controller.history.size > paused_at + 1, timeout=30000)

    w.stop_training()
    qtbot.waitUntil(lambda: not w.controller.busy(), timeout=60000)
    summary = w.runs_list.currentItem().data(Qt.ItemDataRole.UserRole)
    assert summary.status == "cancelled" and summary.resumable
    stopped_at = summary.step
    assert w.resume_button.isEnabled()

    w.resume_selected_run()
    qtbot.waitUntil(lambda: w.controller.history.size > 0 and
                    w.controller.history.column("step")[-1] > stopped_at, timeout=60000)
    w.close()  # closing during a run cancels and joins it
    assert not w.controller.busy()


def test_reopening_a_project_shows_its_runs_curves_and_map(qtbot, window):
    w = window()
    open_sample(qtbot, w)
    small_run(w, epochs=2)
    w.start_training()
    qtbot.waitUntil(lambda: not w.controller.busy() and w.runs_list.count() == 1, timeout=90000)
    project = w.project.path
    w.close()

    again = window(project)
    qtbot.waitUntil(lambda: again.runs_list.count() == 1, timeout=60000)
    wait_for_data(qtbot, again)
    assert "completed" in again.runs_list.item(0).text()
    assert again.curves.history is not None and again.curves.history.size >= 1
    assert len(again.map.indices) > 0


def test_knob_form_follows_the_objective(qtbot, window):
    from sslstudio.core.config import knobs
    from sslstudio.core.objectives import OBJECTIVES

    w = window()
    for name in OBJECTIVES.names():
        w.setup.objective.setCurrentText(name)
        form = w.setup.knob_form
        assert set(form.editors) == {f.name for f in knobs(OBJECTIVES.get(name).config_cls)}
        assert w.setup.explanation.text() == OBJECTIVES.get(name).summary
    w.setup.objective.setCurrentText("moco")
    spin = w.setup.knob_form.editors["temperature"][0]
    spin.setValue(50.0)
    assert spin.value() == 2.0  # clamped to the knob's range
    assert "temperature" in spin.toolTip() or "softmax" in spin.toolTip()


def test_an_error_in_the_worker_becomes_a_dialog(qtbot, window, tmp_path):
    import shutil

    data = tmp_path / "vanishing"
    shutil.copytree(SAMPLE, data)
    w = window()
    w.open_data_folder(data)
    wait_for_data(qtbot, w)
    shutil.rmtree(data)  # the folder disappears between the scan and the run
    small_run(w)
    w.start_training()
    qtbot.waitUntil(lambda: getattr(w, "_error_box", None) is not None and w._error_box.isVisible(),
                    timeout=60000)
    assert "not found" in w._error_box.text()
    w._error_box.close()
    qtbot.waitUntil(lambda: not w.controller.busy(), timeout=30000)


def test_drop_a_folder_on_the_window(qtbot, window):
    w = window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(SAMPLE))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    w.dropEvent(drop)
    wait_for_data(qtbot, w)
    assert str(SAMPLE.resolve()) in w.settings.value("recent/folders")


def test_close_during_a_run_asks_first(qtbot, window, monkeypatch):
    w = window()
    open_sample(qtbot, w)
    small_run(w, epochs=500)
    w.start_training()
    qtbot.waitUntil(lambda: w.controller.history.size >= 1, timeout=60000)
    w.skip_close_question = False
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    w.close()
    assert w.isVisible() and w.controller.busy()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    w.close()
    assert not w.isVisible() and not w.controller.busy()
    runs = w.project.runs()
    assert runs[0].status == "cancelled"


def test_map_hover_shows_the_thumbnail_and_colours_follow_the_choice(qtbot):
    import numpy as np
    from PySide6.QtGui import QPixmap

    from sslstudio.gui.widgets.embedding_map import EmbeddingMap

    view = EmbeddingMap()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    thumb = QPixmap(8, 8)
    view.thumbnail_for = lambda index: thumb
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(2000, 2)).astype(np.float32)
    labels = np.repeat(np.arange(4), 500)
    view.show_snapshot(np.arange(2000), coords, labels, step=10)
    qtbot.waitUntil(lambda: not view.timer.isActive(), timeout=5000)
    assert np.allclose(view.coords, coords)
    by_label = list(view._brushes)
    assert len({id(b) for b in by_label}) == 4  # one shared brush per class
    view.colour_by.setCurrentIndex(1)
    assert len({id(b) for b in view._brushes}) >= 2 and view._brushes != by_label

    target = view.plot.getViewBox().mapViewToScene(pg_point(coords[7]))
    view._hover(target)
    assert view.hover_label.isVisible()
    clicked = []
    view.point_clicked.connect(clicked.append)
    view._clicked(None, [FakePoint(coords[7])])
    assert clicked == [7]

    # A new snapshot of the same points glides from where they are instead of jumping.
    view.show_snapshot(np.arange(2000), coords + 1.0, labels, step=20)
    qtbot.wait(60)
    middle = view._current_coords()
    assert 0.0 < float(np.mean(middle - coords)) < 1.0
    qtbot.waitUntil(lambda: not view.timer.isActive(), timeout=5000)
    view.stop()
    view.close()


class FakePoint:
    def __init__(self, xy):
        self.xy = xy

    def pos(self):
        return pg_point(self.xy)


def pg_point(xy):
    from PySide6.QtCore import QPointF

    return QPointF(float(xy[0]), float(xy[1]))


def test_last_choices_and_recent_projects_persist(qtbot, window):
    w = window()
    open_sample(qtbot, w)
    w.setup.objective.setCurrentText("moco")
    w.setup.knob_form.editors["queue_size"][2](1024)
    w.setup.by_epochs.setChecked(True)
    w.setup.epochs.setValue(7)
    project = w.project.path
    w.close()

    again = window()
    assert again.setup.objective.currentText() == "moco"
    assert again.setup.knob_form.values()["queue_size"] == 1024
    assert again.setup.by_epochs.isChecked() and again.setup.epochs.value() == 7
    recent = [action.text() for action in again.recent_projects_menu.actions()]
    assert str(project) in recent
