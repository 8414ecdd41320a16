"""The main window: data on the left, curves and the map in the middle, run setup on the right,
runs and the log at the bottom. It talks to jobs only through the TrainingController."""

from __future__ import annotations


import json
from pathlib import Path


from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sslstudio import __version__
from sslstudio.core.data.text_folder import snippet
from sslstudio.core.project_session import ProjectSession
from sslstudio.gui import APP_NAME
from sslstudio.gui.controller import TrainingController
from sslstudio.gui.labelling import LabellingPanels
from sslstudio.gui.modalities import view_of
from sslstudio.gui.widgets.banner import Banner
from sslstudio.gui.widgets.curves import CurvesView
from sslstudio.gui.widgets.embedding_map import EmbeddingMap
from sslstudio.gui.widgets.elided_label import ElidedLabel
from sslstudio.gui.encoder_downloads import EncoderDownloads
from sslstudio.gui.export_flow import ExportFlow
from sslstudio.gui.flow_driver import FlowDriver
from sslstudio.gui.folders import FolderOpening
from sslstudio.gui.runs_panel import RunsPanel
from sslstudio.gui.training_actions import STOPPABLE_JOBS, TrainingActions
from sslstudio.gui.window_menus import build_menus
from sslstudio.gui.widgets.flow_bar import FlowBar
from sslstudio.gui.widgets.gallery import GalleryView
from sslstudio.gui.widgets.log_panel import LogPanel
from sslstudio.gui.widgets.run_setup import RunSetupPanel, engine_info
from sslstudio.gui.worker import JobWorker

BANNER_STYLES = {
    "problem": "background: #b3261e; color: white; padding: 6px; font-weight: bold;",
    "notice": "background: #fff4ce; color: #3b2f00; border: 1px solid #e0c060; padding: 6px;",
}
# What Pause and Stop act on, said on them while each kind of job runs.
JOB_WORDS = {"train": "training (Stop saves a checkpoint first)",
             "adapt": "training the classifier, or comparing methods",
             "features": "computing every item's features",
             "map": "arranging the map (Stop keeps the PCA map)",
             "zeroshot": "pre-labelling every item with the model"}


class MainWindow(QMainWindow):
    def __init__(self, project_path: Path | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings()
        self.session = ProjectSession()  # what the window shows of the open project
        self.engine = None
        self.controller = TrainingController(self)
        self._engine_loader: JobWorker | None = None
        self._closing = False
        self.error_box: QMessageBox | None = None
        self.setAcceptDrops(True)
        # The window's parts, each doing one kind of work on what the window shows.
        self.folders = FolderOpening(self)
        self.training = TrainingActions(self)
        self.encoders = EncoderDownloads(self)
        self.flow = FlowDriver(self)
        self._build_widgets()
        build_menus(self)
        self._connect_controller()
        self._restore_layout()
        self.update_title()
        self.update_actions()
        if project_path is not None:
            QTimer.singleShot(0, lambda: self.folders.open_project(Path(project_path)))
        # The engine (torch) loads after the window is on screen, off the GUI thread.
        QTimer.singleShot(0, self._load_engine_after_scan)

    # -- construction -------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.resize(1400, 860)
        self.gallery = GalleryView()
        self.curves = CurvesView()
        self.map = EmbeddingMap()
        self.map.thumbnail_for = self._thumbnail_for
        self.map.point_clicked.connect(self._map_point_clicked)
        self.setup = RunSetupPanel()
        self.setup.download_requested.connect(self.encoders.download)
        self.labelling = LabellingPanels(self)
        self.exports = ExportFlow(self)
        self.log = LogPanel()

        self.banner = Banner()
        self.banner.close_button.clicked.connect(self.dismiss_banner)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.curves, "Training curves")
        self.tabs.addTab(self.map, "Embedding map")
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.addWidget(self.banner)
        central_layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.data_dock = self._dock("Data", self.gallery, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.data_dock.setMinimumWidth(280)
        setup_box = QWidget()
        setup_layout = QVBoxLayout(setup_box)
        setup_layout.setContentsMargins(4, 4, 4, 4)
        setup_layout.addWidget(self.setup, 1)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")  # the same words as the toolbar's
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        setup_layout.addLayout(buttons)
        self.setup_dock = self._dock("Run setup", setup_box, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setup_dock.setMinimumWidth(320)
        self.labels_dock = self._dock("Labels", self.labelling.label_panel,
                                      Qt.DockWidgetArea.RightDockWidgetArea)
        # The Label step's Next ("Go to labels") has nothing to do while the panel is in view.
        self.labels_dock.visibilityChanged.connect(lambda _visible: self.flow.refresh())
        self.classifier_dock = self._dock("Classifier", self.labelling.adapt_panel,
                                          Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.setup_dock, self.labels_dock)
        self.tabifyDockWidget(self.labels_dock, self.classifier_dock)
        self.setup_dock.raise_()

        self.runs = RunsPanel(self)
        self.runs.resume_button.clicked.connect(self.training.resume_selected_run)
        self.runs_dock = self._dock("Runs", self.runs, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_dock = self._dock("Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)

        self.flow_bar = FlowBar()
        self.flow_bar.step_clicked.connect(self.flow.show_step)
        self.flow_bar.next_clicked.connect(self.flow.do_next)

        self.progress = QProgressBar()
        self.progress.setMinimumWidth(220)
        self.progress.setMaximumWidth(320)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status_text = ElidedLabel("Open a folder of images (File > Open image folder, or drop it "
                                       "here), or try Help > Open sample dataset")
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.progress)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect_controller(self) -> None:
        c = self.controller
        c.busy_changed.connect(lambda _busy: self.update_actions())
        c.busy_changed.connect(self._busy_changed)
        c.warning.connect(self._warning)
        c.failed.connect(self._failed)
        c.log.connect(self.log.add)
        c.result.connect(self._task_result)

    # -- engine -------------------------------------------------------------------------------
    def _load_engine_after_scan(self) -> None:
        """A reopened project's scan goes first: beside torch's import the two threads share one
        interpreter lock, and a 70,000-image scan took 2.3 s instead of 0.5 (the gallery and
        Start came later than one after the other)."""
        if self._closing:
            return
        if self.controller.busy() and self.controller.job_kind == "scan":
            QTimer.singleShot(25, self, self._load_engine_after_scan)
        else:
            self.load_engine()

    def load_engine(self) -> None:
        def job(_control):
            yield engine_info()

        self._engine_loader = JobWorker(job, name="sslstudio-engine-loader")
        self._engine_loader.event.connect(self._engine_loaded)
        self._engine_loader.failed.connect(self._failed)
        self._engine_loader.start()

    @Slot(object)
    def _engine_loaded(self, info: dict) -> None:
        self.engine = info
        self.setup.populate(info, self._saved_choices())
        self.labelling.adapt_panel.populate(info["adapters"])
        self.labelling.classifiers.refresh()  # now it can say which methods the run's encoder takes
        self.log.add("training engine ready: " + ", ".join(
            description for _, description in info["devices"][1:]))
        self.update_actions()
        if self.training.start_when_ready:
            self.training.start_when_ready = False
            self.training.start()
        elif not self.settings.value("welcome/encoders_offered", False, type=bool):
            # Once, on the first run: the weights are not part of the app.
            self.settings.setValue("welcome/encoders_offered", True)
            self.encoders.show()

    def _saved_choices(self) -> dict:
        raw = self.settings.value("run/choices", "")
        try:
            return json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            return {}

    # -- projects and folders -----------------------------------------------------------------
    # -- training -----------------------------------------------------------------------------
    # -- controller signals -------------------------------------------------------------------
    def _warning(self, kind: str, message: str) -> None:
        if self.session.run_warning(kind, message, self.controller.training_run or ""):
            self.show_banner()

    def show_banner(self) -> None:
        message = self.session.banner
        if message is None:
            self.banner.dismiss()
        else:
            self.banner.say(message.text, BANNER_STYLES[message.tone], message.run)

    def dismiss_banner(self) -> None:
        self.session.dismiss_banner()
        self.show_banner()

    def _busy_changed(self, busy: bool) -> None:
        if not busy and self.controller.job_kind == "map":
            self.progress.hide()
        if not busy and not self._closing and self.session.project is not None:
            # Whatever the job was (a run, a comparison), the list reads the runs' states again.
            selected = self.runs.selected()
            self.runs.refresh(select_path=selected.path if selected is not None else None)
            mapped = self.session.take_map_after_run()
            if mapped is not None and not self.controller.busy():
                # The run's own map, where groups stand apart, replaces its last PCA snapshot.
                self.controller.start_run_map(mapped)

    def _failed(self, message: str, details: str) -> None:
        self.progress.hide()
        if self._closing:
            return
        if self.exports.showing_failure(message):
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle(APP_NAME)
        box.setText(message)
        box.setDetailedText(details)
        box.open()
        self.error_box = box  # the last failure shown, which a test (or a screenshot) can read

    def _task_result(self, kind: str, value) -> None:
        self.progress.hide()
        if kind == "download":
            self.encoders.downloaded(*value)
        elif kind == "try":
            self.exports.show_try_result(value)

    # -- runs list ----------------------------------------------------------------------------
    # -- map and gallery ----------------------------------------------------------------------
    def _thumbnail_for(self, index: int):
        """A thumbnail for an image item; the text's opening words for a text item."""
        if self.session.data_set is None or not 0 <= index < len(self.session.data_set):
            return None
        if view_of(self.session.data_set).textual:
            return snippet(self.session.data_set.texts[index], 240)
        return self.gallery.model.thumbnail(index)

    def reveal(self, widget: QWidget) -> None:
        """Bring the dock or the tab that holds `widget` to the front."""
        if self.tabs.indexOf(widget) >= 0:
            self.tabs.setCurrentWidget(widget)
            return
        for dock in self.findChildren(QDockWidget):
            if dock.widget() is widget:
                dock.raise_()

    def _map_point_clicked(self, index: int) -> None:
        if self.session.data_set is None or not 0 <= index < len(self.session.data_set):
            return
        if self.map.label_mode.isChecked():
            self.labelling.editing.label_on_map([index])
        else:
            self.gallery.select(index)

    # -- state --------------------------------------------------------------------------------
    def update_actions(self) -> None:
        busy = self.controller.busy()
        training = busy and self.controller.job_kind in STOPPABLE_JOBS
        # Before the engine has loaded, Start is taken and kept until it has (start_training).
        can_start = not busy and self.session.data_set is not None
        self.start_action.setEnabled(can_start)
        self.start_button.setEnabled(can_start)
        for widget in (self.pause_action, self.pause_button, self.stop_action, self.stop_button):
            widget.setEnabled(training)
        words = JOB_WORDS.get(self.controller.job_kind, "") if training else ""
        for widget, verb in ((self.pause_action, "Pause"), (self.pause_button, "Pause"),
                             (self.stop_action, "Stop"), (self.stop_button, "Stop")):
            widget.setToolTip(f"{verb} {words}" if words else verb)
        if not training:
            self.training.show_pause_words(False)
        selected = self.runs.selected()
        resumable = selected is not None and selected.resumable
        self.runs.resume_button.setEnabled(resumable and not busy and self.engine is not None)
        for action in (self.open_folder_action, self.sample_action, self.open_project_action,
                       self.new_project_action):
            action.setEnabled(not busy)
        self.export_model_action.setEnabled(self.session.project is not None and not busy)
        self.labelling.update_actions()

    # -- the flow -----------------------------------------------------------------------------
    def update_title(self) -> None:
        project = self.session.project
        self.setWindowTitle(f"{APP_NAME} — {project.name}" if project else APP_NAME)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        # First start: the gallery gets a quarter of the window, not a strip of three columns,
        # once the window has the size it is shown at (here it still has Qt's default).
        self._gallery_quarter_pending = state is None

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._gallery_quarter_pending:
            self._gallery_quarter_pending = False
            QTimer.singleShot(0, self._give_the_gallery_a_quarter)

    def _give_the_gallery_a_quarter(self) -> None:
        self.resizeDocks([self.data_dock], [max(280, self.width() // 4)], Qt.Orientation.Horizontal)
        # The runs and the log, a strip of a sixth at the bottom: the centre (curves, map) is
        # what a first hour watches. Left to the docks' hints they took a third at 1280x800.
        self.resizeDocks([self.runs_dock], [max(150, self.height() // 6)], Qt.Orientation.Vertical)

    def show_guide(self) -> None:
        from sslstudio.gui.widgets.guide import GuideDialog

        actions = [a for a in self.findChildren(QAction) if not a.shortcut().isEmpty()]
        self.guide = GuideDialog(actions, self)
        self.guide.open()

    def about(self) -> None:
        QMessageBox.about(self, APP_NAME, f"<b>SSL Studio {__version__}</b><p>Self-supervised "
                          "pretraining on your own images, watched live.</p>")

    # -- export -------------------------------------------------------------------------------
    def classifier_in_use(self) -> Path | None:
        return self.labelling.session.predictions.adapted_path

    def thumbnail_by_name(self, name: str):
        index = self.labelling.session.labels.item_index.get(name)
        return self._thumbnail_for(index) if index is not None and self.session.data_set else None

    # -- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls and all(Path(u.toLocalFile()).is_dir() for u in urls[:1]):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls:
            self.folders.open_data_folder(Path(urls[0].toLocalFile()))

    # -- closing ------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        training = self.controller.busy() and self.controller.job_kind == "train"
        if training and not getattr(self, "skip_close_question", False):
            answer = QMessageBox.question(
                self, APP_NAME, "Training is running. Stop it (a checkpoint is saved, so it can be "
                "resumed) and quit?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self._closing = True
        self.status_text.setText("Stopping…")
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        if self.engine is not None:
            self.settings.setValue("run/choices", json.dumps(self.setup.choices()))
        self.controller.shutdown()
        for box in self.findChildren(QMessageBox):  # non-modal reports still open
            box.close()
        self.exports.close()
        if self.encoders.dialog is not None:
            self.encoders.dialog.close()
        self.folders.release_project()
        if self._engine_loader is not None:
            self._engine_loader.wait()
        self.curves.stop()
        self.map.stop()
        event.accept()
