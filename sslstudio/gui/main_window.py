"""The main window: data on the left, curves and the map in the middle, run setup on the right,
runs and the log at the bottom. It talks to jobs only through the TrainingController."""

from __future__ import annotations

import dataclasses

import json
import zlib
from pathlib import Path

import numpy as np

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sslstudio import __version__
from sslstudio.core.config import ConfigError
from sslstudio.core.describe import status_word
from sslstudio.core.data.scan import detect_modality
from sslstudio.core.data.text_folder import snippet
from sslstudio.core.history import RunHistory
from sslstudio.core.project import Project, ProjectError
from sslstudio.core.project_session import ProjectSession
from sslstudio.core.text import counted, format_duration, format_loss
from sslstudio.resources import sample_dataset_path
from sslstudio.gui import APP_NAME
from sslstudio.gui.actions import make_action
from sslstudio.gui.controller import TrainingController
from sslstudio.gui.flow import FlowFacts, flow_state
from sslstudio.gui.labelling import LabellingPanels
from sslstudio.gui.modalities import view_of
from sslstudio.gui.recent import FOLDERS, PROJECTS, RecentPlaces
from sslstudio.gui.widgets.banner import Banner
from sslstudio.gui.widgets.curves import CurvesView
from sslstudio.gui.widgets.embedding_map import EmbeddingMap
from sslstudio.gui.widgets.elided_label import ElidedLabel
from sslstudio.gui.export_flow import ExportFlow
from sslstudio.gui.widgets.encoders_dialog import EncodersDialog
from sslstudio.gui.widgets.flow_bar import FlowBar
from sslstudio.gui.widgets.gallery import GalleryView
from sslstudio.gui.widgets.log_panel import LogPanel
from sslstudio.gui.widgets.run_setup import RunSetupPanel, engine_info
from sslstudio.gui.worker import JobWorker

# What the pretrained-encoders dialog offers besides the image backbones: the text encoder (the
# backbone a text run starts from) and CLIP (zero-shot pre-labels, not a backbone).
TEXT_ENCODER = "pretrained_bert"
CLIP_OFFER = "clip"
THUMBNAIL_SIZE = 64
BANNER_STYLES = {
    "problem": "background: #b3261e; color: white; padding: 6px; font-weight: bold;",
    "notice": "background: #fff4ce; color: #3b2f00; border: 1px solid #e0c060; padding: 6px;",
}
# Jobs the Pause and Stop buttons act on; scans and small computations just finish.
STOPPABLE_JOBS = ("train", "adapt", "features", "map", "zeroshot")
# What Pause and Stop act on, said on them while each kind of job runs.
JOB_WORDS = {"train": "training (Stop saves a checkpoint first)",
             "adapt": "training the classifier, or comparing methods",
             "features": "computing every item's features",
             "map": "arranging the map (Stop keeps the PCA map)",
             "zeroshot": "pre-labelling every item with the model"}


def default_projects_root() -> Path:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents or Path.home()) / "SSL Studio"


class MainWindow(QMainWindow):
    def __init__(self, project_path: Path | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings()
        self.session = ProjectSession()  # what the window shows of the open project
        self.encoders_dialog: EncodersDialog | None = None
        self.engine = None
        self._start_when_engine_ready = False  # Start was pressed before the engine loaded
        self.controller = TrainingController(self)
        self._engine_loader: JobWorker | None = None
        self._closing = False
        self._pending_data_dir: Path | None = None
        self.setAcceptDrops(True)
        self._build_widgets()
        self._build_actions()
        self._connect_controller()
        self._restore_layout()
        self._update_title()
        self._update_actions()
        if project_path is not None:
            QTimer.singleShot(0, lambda: self.open_project(Path(project_path)))
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
        self.setup.download_requested.connect(self.download_weights)
        self.labelling = LabellingPanels(self)
        self.exports = ExportFlow(self)
        self.log = LogPanel()

        self.banner = Banner()
        self.banner.close_button.clicked.connect(self._dismiss_banner)
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
        self.labels_dock.visibilityChanged.connect(lambda _visible: self.refresh_flow())
        self.classifier_dock = self._dock("Classifier", self.labelling.adapt_panel,
                                          Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.setup_dock, self.labels_dock)
        self.tabifyDockWidget(self.labels_dock, self.classifier_dock)
        self.setup_dock.raise_()

        runs_box = QWidget()
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.setContentsMargins(4, 4, 4, 4)
        self.runs_list = QListWidget()
        self.runs_list.currentItemChanged.connect(self._run_selected)
        self.resume_button = QPushButton("Resume selected run")
        self.resume_button.clicked.connect(self.resume_selected_run)
        runs_layout.addWidget(self.runs_list, 1)
        runs_layout.addWidget(self.resume_button)
        self.runs_dock = self._dock("Runs", runs_box, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_dock = self._dock("Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)

        self.flow_bar = FlowBar()
        self.flow_bar.step_clicked.connect(self.show_step)
        self.flow_bar.next_clicked.connect(self.do_next)

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

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        return make_action(self, text, slot, shortcut, tip)

    def _build_actions(self) -> None:
        self.new_project_action = self._action("&New project…", self.new_project_dialog,
                                               QKeySequence.StandardKey.New)
        self.open_project_action = self._action("&Open project…", self.open_project_dialog,
                                                QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open &folder…", self.open_folder_dialog,
                                               "Ctrl+Shift+O", "Scan a folder of images or texts")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.start_action = self._action("&Start training", self.start_training, "Ctrl+R")
        self.pause_action = self._action("&Pause", self.toggle_pause, "Ctrl+P")
        self.stop_action = self._action("S&top", self.stop_training, "Ctrl+.")
        self.sample_action = self._action("Open &sample dataset", self.open_sample,
                                          tip="300 Fashion-MNIST images to try SSL Studio on")
        self.about_action = self._action("&About SSL Studio", self.about)
        self.encoders_action = self._action("Pretrained &encoders…", self.show_encoders,
                                            tip="The encoders training can start from: size, "
                                            "source and licence; download one after a yes")
        self.guide_action = self._action("&Getting started", self.show_guide,
                                         QKeySequence.StandardKey.HelpContents,
                                         "The flow from a folder to a model, and the shortcuts")
        self.export_model_action = self._action("Export &model (ONNX)…", self.open_export_dialog, "Ctrl+E",
                                                "A classifier or an encoder as ONNX, verified "
                                                "with onnxruntime")

        file_menu = self.menuBar().addMenu("&File")
        for action in (self.new_project_action, self.open_project_action, self.open_folder_action):
            file_menu.addAction(action)
        self.recent_projects_menu = file_menu.addMenu("Recent &projects")
        self.recent_folders_menu = file_menu.addMenu("Recent &folders")
        file_menu.addSeparator()
        file_menu.addAction(self.labelling.import_labels_action)
        file_menu.addAction(self.labelling.export_labels_action)
        file_menu.addAction(self.export_model_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addAction(self.labelling.undo_action)
        edit_menu.addAction(self.labelling.redo_action)
        run_menu = self.menuBar().addMenu("&Run")
        for action in (self.start_action, self.pause_action, self.stop_action):
            run_menu.addAction(action)
        view_menu = self.menuBar().addMenu("&View")
        for dock in (self.data_dock, self.setup_dock, self.labels_dock, self.classifier_dock,
                     self.runs_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self.guide_action)
        help_menu.addAction(self.sample_action)
        help_menu.addAction(self.encoders_action)
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        for action in (self.open_folder_action, self.start_action, self.pause_action, self.stop_action):
            toolbar.addAction(action)
        # The flow gets a row of its own, the window's whole width: where the user is and what
        # comes next, always in view.
        self.addToolBarBreak()
        flow_toolbar = self.addToolBar("Flow")
        flow_toolbar.setObjectName("flow_toolbar")
        flow_toolbar.setMovable(False)
        flow_toolbar.addWidget(self.flow_bar)
        view_menu.addAction(flow_toolbar.toggleViewAction())

        self.start_button.clicked.connect(self.start_training)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_training)
        self.recent = RecentPlaces(self.settings, self.recent_projects_menu, self.recent_folders_menu,
                                   self.open_project, self.open_data_folder)

    def _connect_controller(self) -> None:
        c = self.controller
        c.busy_changed.connect(lambda _busy: self._update_actions())
        c.busy_changed.connect(self._busy_changed)
        c.paused_changed.connect(self._paused_changed)
        c.scan_progress.connect(self._scan_progress)
        c.scan_finished.connect(self._scan_finished)
        c.data_ready.connect(self._data_ready)
        c.run_started.connect(self._run_started)
        c.metrics.connect(self._metrics)
        c.snapshot.connect(self._snapshot)
        c.warning.connect(self._warning)
        c.run_finished.connect(self._run_finished)
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
        self.labelling.refresh_classifiers()  # now it can say which methods the run's encoder takes
        self.log.add("training engine ready: " + ", ".join(
            description for _, description in info["devices"][1:]))
        self._update_actions()
        if self._start_when_engine_ready:
            self._start_when_engine_ready = False
            self.start_training()
        elif not self.settings.value("welcome/encoders_offered", False, type=bool):
            # Once, on the first run: the weights are not part of the app.
            self.settings.setValue("welcome/encoders_offered", True)
            self.show_encoders()

    def show_encoders(self) -> None:
        if self.engine is None:
            self.status_text.setText("The training engine is still loading; try again in a moment.")
            return
        if self.encoders_dialog is None:
            from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder  # torch: on use

            clip = cached_clip_folder()
            offers = {**self.engine["backbones"], CLIP_OFFER: (
                CLIP_DOWNLOAD["title"], "image",
                {"offer": f"{CLIP_DOWNLOAD['title']}: pre-labels images from class names, no labels needed",
                 "hub": CLIP_DOWNLOAD["repo"], "megabytes": CLIP_DOWNLOAD["megabytes"], "source": "OpenAI",
                 "licence": CLIP_DOWNLOAD["licence"], "cached": str(clip) if clip else ""})}
            self.encoders_dialog = EncodersDialog(offers, self.download_weights, self)
        self.encoders_dialog.show()
        self.encoders_dialog.raise_()

    def _saved_choices(self) -> dict:
        raw = self.settings.value("run/choices", "")
        try:
            return json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            return {}

    # -- projects and folders -----------------------------------------------------------------
    def set_project(self, project: Project) -> None:
        """A new session for the project: nothing of the last one (its banner, map, curves,
        classifier, labelling run, export) can show, since the window would say what is not
        true of this one."""
        if self.session.project is not None and self.session.project.path == project.path:
            self.session.project = project  # the same project again: what it shows stays
            self.labelling.set_project(project)
            self.refresh_flow()
            return
        if self.session.project is not None:
            self.labelling.forget_project_view()
        self.session = ProjectSession(project)
        self.labelling.set_project(project)
        self.map.clear()
        self.controller.history = self.session.history
        self.curves.set_history(self.session.history)
        self._show_banner()
        self.refresh_flow()

    def release_project(self) -> None:
        """Close the labels and let another window have the project."""
        self.labelling.release_project()

    def new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose or create an empty folder for the project",
                                                  str(default_projects_root()))
        if folder:
            self.open_project(Path(folder), create=True)

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an SSL Studio project",
                                                  str(default_projects_root()))
        if folder:
            self.open_project(Path(folder))

    def open_project(self, path: Path, create: bool = False) -> bool:
        if self.controller.busy():
            QMessageBox.information(self, APP_NAME, "Stop the running job before switching projects.")
            return False
        try:
            project = Project.create(path) if create else Project.open(path)
        except ProjectError as error:
            QMessageBox.warning(self, APP_NAME, f"{error}\n\nUse File > New project to make one here.")
            return False
        except OSError as error:
            QMessageBox.warning(self, APP_NAME, f"Cannot open {path}: {error.strerror or error}")
            return False
        self.set_project(project)
        self.recent.remember(PROJECTS, str(project.path))
        self._update_title()
        self.refresh_runs(select_latest=True)
        self.log.add(f"project {project.name} ({project.path})")
        if project.data_dir:
            if Path(project.data_dir).is_dir():
                self.scan_folder(Path(project.data_dir))
            else:
                QMessageBox.warning(self, APP_NAME, f"The project's data folder is gone: "
                                    f"{project.data_dir}\nOpen the folder again where it now is.")
        return True

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images or texts",
                                                  self.settings.value("recent/last_dir", str(Path.home())))
        if folder:
            self.open_data_folder(Path(folder))

    def open_sample(self) -> None:
        self.open_data_folder(sample_dataset_path())

    def open_data_folder(self, folder: Path) -> None:
        if self.controller.busy():
            QMessageBox.information(self, APP_NAME, "Stop the running job before opening another folder.")
            return
        if not folder.is_dir():
            QMessageBox.warning(self, APP_NAME, f"Not a folder: {folder}")
            return
        folder = folder.resolve()
        project = self.session.project
        same_data = project is not None and project.data_dir in ("", str(folder))
        if not same_data:
            # Runs need a home, and runs on other data do not belong together: the folder gets
            # a project of its own, named after it, in the documents folder (reused next time).
            root = default_projects_root() / folder.name
            try:
                project = Project.create(root)
                if project.data_dir not in ("", str(folder)):
                    # Another folder of the same name has that project: a stable suffix tells them apart.
                    suffix = zlib.crc32(str(folder).encode()) % 10000
                    project = Project.create(default_projects_root() / f"{folder.name}-{suffix:04d}")
            except (ProjectError, OSError) as error:
                QMessageBox.warning(self, APP_NAME, f"Cannot create a project in {root}: {error}")
                return
            self.set_project(project)
            self.recent.remember(PROJECTS, str(self.session.project.path))
            self.refresh_runs(select_latest=True)
        try:
            self.session.project.set_data_dir(str(folder))
        except ProjectError as error:
            QMessageBox.warning(self, APP_NAME, f"{error}.")
            return
        self.settings.setValue("recent/last_dir", str(folder.parent))
        self.recent.remember(FOLDERS, str(folder))
        self._update_title()
        self.scan_folder(folder)

    def scan_folder(self, folder: Path) -> None:
        modality = self.ask_modality(folder)
        if modality is None:
            return
        self.gallery.set_data(None)
        self.session.data_set = None
        self.progress.setRange(0, 0)
        self.progress.setFormat("scanning…")
        self.progress.show()
        self.status_text.setText(f"Scanning {folder}…")
        project = self.session.project
        self.controller.start_scan(folder, THUMBNAIL_SIZE, project.cache_dir if project else None,
                                   modality)

    def ask_modality(self, folder: Path) -> str | None:
        """Images or texts, told from what the folder holds; the user decides when it holds both
        (None when they cancel)."""

        found = detect_modality(folder)
        if found != "mixed":
            return "text" if found == "text" else "image"
        box = QMessageBox(QMessageBox.Icon.Question, APP_NAME,
                          f"{folder.name} holds both images and text files. Which should SSL Studio "
                          "train on?", parent=self)
        images = box.addButton("Images", QMessageBox.ButtonRole.AcceptRole)
        texts = box.addButton("Texts", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return "image" if clicked is images else "text" if clicked is texts else None

    # -- training -----------------------------------------------------------------------------
    def start_training(self) -> None:
        if self.engine is None and not self.controller.busy():
            # A click in the first seconds, before torch has loaded, is kept, not lost.
            self._start_when_engine_ready = True
            self.status_text.setText("Starting training as soon as the training engine has "
                                     "loaded (a few seconds)…")
            return
        if self.controller.busy():
            return
        if self.session.data_set is None or self.session.project is None:
            QMessageBox.information(self, APP_NAME, "Open a folder of images first "
                                    "(or Help > Open sample dataset).")
            return

        project = self.session.project
        try:
            train_config, objective_config = self.setup.build_configs(
                project.data_dir, str(project.new_run_dir(self.setup.objective.currentText())))
        except ConfigError as error:
            QMessageBox.warning(self, APP_NAME, f"A setting is not valid: {error}")
            return
        if self.labelling.session.labels.store.labels():
            # The user's labels judge the encoder as it trains: the probe on the curves, and the
            # run keeps the encoder that scored best.
            train_config = dataclasses.replace(train_config,
                                               labels=str(self.labelling.session.labels.store.path))
        self.settings.setValue("run/choices", json.dumps(self.setup.choices()))
        self._dismiss_banner()
        self.map.clear()
        self.labelling.clear_map()
        self.controller.start_training(train_config, objective_config)
        self.session.history = self.controller.history
        self.curves.set_history(self.session.history)
        self.tabs.setCurrentWidget(self.curves)

    def resume_selected_run(self) -> None:
        item = self.runs_list.currentItem()
        if item is None or self.controller.busy():
            return
        summary = item.data(Qt.ItemDataRole.UserRole)
        if not summary.resumable:
            QMessageBox.information(self, APP_NAME, f"Run {summary.name} is {status_word(summary.status)}; "
                                    "only stopped or interrupted runs can be resumed.")
            return

        train_config, objective_config, _ = summary.folder.read_config()
        history = RunHistory.from_metrics(summary.folder.metrics())
        self._dismiss_banner()
        self.controller.start_training(train_config, objective_config, resume=True)
        # A resume goes on with the run's own settings, whatever the form shows now (it showed
        # "1 epoch" while a 5-minute run went on for its 5 minutes, saying nothing).
        budget = (counted(train_config.epochs, "epoch") if train_config.epochs
                  else counted(train_config.minutes, "minute"))
        note = (f"Resuming {summary.name} with its own settings ({budget} in all, "
                f"{train_config.objective}); the Run setup form is for new runs")
        self.status_text.setText(note)
        self.log.add(note)
        self.controller.history = history  # keep the curve drawn so far; new points append to it
        self.session.history = history
        self.curves.set_history(history)

    def download_weights(self, name: str) -> None:
        """Fetch a pretrained encoder's standard weights (an image backbone's file, or the text
        encoder's folder), only after the user agrees. CLIP has its own question."""
        from sslstudio.core.backbones.pretrained import (  # torch: on use
            PRETRAINED,
            TEXT_ENCODER_DOWNLOAD,
            download_text_encoder,
            download_weights,
        )

        if name == CLIP_OFFER:
            self.labelling.download_clip()
            return
        if name not in PRETRAINED and name != TEXT_ENCODER or self.controller.busy():
            return
        if name == TEXT_ENCODER:
            what = (f"the sentence encoder {TEXT_ENCODER_DOWNLOAD['repo']} ({TEXT_ENCODER_DOWNLOAD['size']}, "
                    f"licence {TEXT_ENCODER_DOWNLOAD['licence']})")
            short, fetch = TEXT_ENCODER_DOWNLOAD["title"], lambda n: (n, str(download_text_encoder()))
        else:
            info = PRETRAINED[name][1]
            what = f"the {info.source} weights of {info.arch} ({info.hf_hub_id}, licence {info.licence})"
            short, fetch = info.arch, lambda n: (n, str(download_weights(n)))
        answer = QMessageBox.question(
            self, APP_NAME, f"Download {what} from huggingface.co into your Hugging Face cache?\n\n"
            "Nothing else is sent or downloaded. Without a network, pick a weights file instead.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.controller.start_task("download", fetch, name)
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"downloading {short}…")
        self.progress.show()

    def toggle_pause(self) -> None:
        if not self.controller.busy() or self.controller.job_kind not in STOPPABLE_JOBS:
            return
        if self.controller.worker.control.paused:
            self.controller.resume()
        else:
            self.controller.pause()

    def stop_training(self) -> None:
        self.controller.stop()

    # -- controller signals -------------------------------------------------------------------
    def _scan_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat("scanning %v / %m")

    def _scan_finished(self, event) -> None:
        self.progress.hide()

    def _data_ready(self, data_set) -> None:
        self.session.data_set = data_set
        self.gallery.set_data(data_set)
        # The legend names the folder's classes, also for a run's map shown before any training.
        self.map.set_class_names(data_set.class_names)
        view = view_of(data_set)
        self.setup.set_modality(view.name)
        self.labelling.data_changed()
        report = data_set.report
        self.status_text.setText(f"{len(data_set):,} {view.item_noun} in {data_set.root}")
        self._update_actions()
        if report.skipped:
            box = QMessageBox(self)
            box.setIcon(QMessageBox.Icon.Warning)
            box.setWindowTitle("Scan report")
            box.setText(report.summary())
            box.setInformativeText("These files were skipped; training uses the rest.")
            box.setDetailedText("\n".join(f"{path}: {reason}" for path, reason in report.skipped))
            box.setStandardButtons(QMessageBox.StandardButton.Ok)
            box.open()  # not exec(): the window keeps working while the report is up
            self._scan_report_box = box
        self.log.add(f"data: {report.summary()}")

    def _run_started(self, event) -> None:
        self.map.class_names = event.class_names
        if not self.setup.batch_size.value():
            # The form says what "auto" came to, in the log's words.
            self.setup.batch_size.setSpecialValueText(f"auto ({event.batch_size} this run)")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.progress.show()
        self.refresh_runs(select_path=Path(event.run_dir))

    def _metrics(self, event) -> None:
        self.progress.setValue(int(event.progress * 1000))
        self.progress.setFormat(f"{event.progress * 100:.0f}%  ETA {format_duration(event.eta_s)}")
        memory = (f" | GPU {event.gpu_memory_bytes / 2**30:.1f} GiB" if event.gpu_memory_bytes else "")
        self.status_text.setText(f"step {event.step} | epoch {event.epoch} | loss {format_loss(event.loss)} | "
                                 f"{event.samples_per_s:,.0f} images/s{memory}")

    def _snapshot(self, event) -> None:
        if self._closing or self.labelling.session.item_map.features is not None:
            return  # the map shows every item for labelling; a run's snapshot would replace it
        self.map.show_snapshot(event.indices, event.coords, event.labels, event.step)

    def _warning(self, kind: str, message: str) -> None:
        if self.session.run_warning(kind, message, self.controller.training_run or ""):
            self._show_banner()

    def _show_banner(self) -> None:
        message = self.session.banner
        if message is None:
            self.banner.dismiss()
        else:
            self.banner.say(message.text, BANNER_STYLES[message.tone], message.run)

    def _dismiss_banner(self) -> None:
        self.session.dismiss_banner()
        self._show_banner()

    def _busy_changed(self, busy: bool) -> None:
        if not busy and self.controller.job_kind == "map":
            self.progress.hide()
        if not busy and not self._closing and self.session.project is not None:
            # Whatever the job was (a run, a comparison), the list reads the runs' states again.
            current = self.runs_list.currentItem()
            selected = current.data(Qt.ItemDataRole.UserRole).path if current is not None else None
            self.refresh_runs(select_path=selected)
            mapped = self.session.take_map_after_run()
            if mapped is not None and not self.controller.busy():
                # The run's own map, where groups stand apart, replaces its last PCA snapshot.
                self.controller.start_run_map(mapped)

    def _run_finished(self, event) -> None:
        self.progress.hide()
        if event.status == "completed" and self.controller.run_dir is not None:
            self.session.run_completed(Path(self.controller.run_dir))
        self.status_text.setText(f"Run {status_word(event.status)} at step {event.step}"
                                 + (f": {event.message}" if event.message else ""))
        if not self._closing:
            self.refresh_runs(select_path=self.controller.run_dir)

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
        self._error_box = box

    def _task_result(self, kind: str, value) -> None:
        self.progress.hide()
        if kind == "download":
            name, path = value
            self.setup.mark_downloaded(name, path)
            if self.encoders_dialog is not None:
                self.encoders_dialog.mark_on_disk(name)
            if name == TEXT_ENCODER:
                self.labelling.model_downloaded("text", path)
            self.status_text.setText(f"Weights of {name} downloaded: {path}")
        elif kind == "try":
            self.exports.show_try_result(value)

    def _show_pause_words(self, paused: bool) -> None:
        self.pause_action.setText("&Resume" if paused else "&Pause")
        self.pause_button.setText("Resume" if paused else "Pause")

    def _paused_changed(self, paused: bool) -> None:
        self._show_pause_words(paused)
        if paused:
            self.status_text.setText("Paused")
        # Every place that shows the run's state says paused, not running.
        live = self.controller.training_run
        self.refresh_runs(select_path=Path(live) if live else None)
        self.refresh_flow()

    # -- runs list ----------------------------------------------------------------------------
    def refresh_runs(self, select_path: Path | None = None, select_latest: bool = False) -> None:
        self.runs_list.blockSignals(True)
        self.runs_list.clear()
        chosen = None
        for row in self.session.run_rows(self.controller.training_run, self.controller.paused):
            item = QListWidgetItem(row.text)
            item.setData(Qt.ItemDataRole.UserRole, row.summary)
            self.runs_list.addItem(item)
            if select_path is not None and row.summary.path == Path(select_path):
                chosen = item
        if chosen is None and select_latest and self.runs_list.count():
            chosen = self.runs_list.item(0)
        self.runs_list.blockSignals(False)
        if chosen is not None:
            self.runs_list.setCurrentItem(chosen)
        self.setup.set_teacher_runs(self.session.teacher_runs())
        self._update_actions()

    def _run_selected(self, item, _previous=None) -> None:
        if item is not None:
            summary = item.data(Qt.ItemDataRole.UserRole)
            self.session.select_run(summary.path)
            self._show_banner()
            self.labelling.run_selected(summary)
        self._update_actions()
        if item is None or self.controller.busy():
            return
        summary = item.data(Qt.ItemDataRole.UserRole)
        self.session.history = RunHistory.from_metrics(summary.folder.metrics())
        self.curves.set_history(self.session.history)
        snapshot = summary.folder.snapshot()
        if snapshot is not None and self.labelling.session.item_map.features is None:
            coords = snapshot.get("neighbour_coords", snapshot["coords"])
            self.map.show_snapshot(snapshot["indices"], coords, snapshot["labels"],
                                   int(snapshot["step"]))

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
            self.labelling.label_on_map([index])
        else:
            self.gallery.select(index)

    # -- state --------------------------------------------------------------------------------
    def _update_actions(self) -> None:
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
            self._show_pause_words(False)
        item = self.runs_list.currentItem()
        resumable = item is not None and item.data(Qt.ItemDataRole.UserRole).resumable
        self.resume_button.setEnabled(resumable and not busy and self.engine is not None)
        for action in (self.open_folder_action, self.sample_action, self.open_project_action,
                       self.new_project_action):
            action.setEnabled(not busy)
        self.export_model_action.setEnabled(self.session.project is not None and not busy)
        self.labelling.update_actions()

    # -- the flow -----------------------------------------------------------------------------
    def flow_facts(self) -> FlowFacts:
        """What the flow bar shows, read from the same places the panels read."""
        busy = self.controller.busy()
        job = self.controller.job_kind if busy else ""
        session = self.labelling.session
        run = self.labelling.selected_run
        label_of = session.labels.label_of
        labelled = label_of[label_of >= 0]
        runs = [self.runs_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.runs_list.count())]
        current = session.predictions.adapted_path
        return FlowFacts(
            items=len(self.session.data_set) if self.session.data_set is not None else 0,
            item_noun=view_of(self.session.data_set).item_noun,
            scanning=job == "scan", job=job, paused=self.controller.paused,
            runs_with_checkpoint=sum(1 for r in runs if r is not None and r.folder.has_checkpoint()),
            classes=int((np.bincount(labelled) > 0).sum()) if len(labelled) else 0,
            class_names=tuple(c.name for c in session.labels.classes()),
            folder_classes=self._folder_classes(),
            labels_shown=self.labelling.label_panel.isVisible(),
            labelled=int(len(labelled)),
            classifiers=len(session.classifiers(run.path)) if run is not None else 0,
            current_classifier=self.labelling.classifier_words(current),
            exported=self.session.export_of_run(run.path if run is not None else None))

    def _folder_classes(self) -> tuple[str, ...]:
        """The open folder's subfolder names, which the Label step offers as classes."""
        return tuple(getattr(self.session.data_set, "class_names", ()) or ())

    def refresh_flow(self) -> None:
        if hasattr(self, "flow_bar"):
            self.flow_bar.show_state(flow_state(self.flow_facts()))

    def show_step(self, title: str) -> None:
        """A click on a step of the flow shows the panel where it is done."""
        if title == "Export":
            self.open_export_dialog()
            return
        widget = {"Data": self.gallery, "Pretrain": self.setup, "Label": self.labelling.label_panel,
                  "Classify": self.labelling.adapt_panel}[title]
        self.reveal(widget)
        if title == "Pretrain":
            self.tabs.setCurrentWidget(self.curves)

    def do_next(self, action: str) -> None:
        if action == "open":
            self.open_folder_dialog()
        elif action == "train":
            self.reveal(self.setup)
            self.start_training()
        elif action == "stop":
            self.stop_training()
        elif action == "label":
            self.reveal(self.labelling.label_panel)
            self.gallery.list.setFocus()
            self.refresh_flow()
        elif action == "add_class":
            self.reveal(self.labelling.label_panel)
            self.labelling.add_class_dialog()
        elif action == "folder_classes":
            self.reveal(self.labelling.label_panel)
            self.labelling.add_folder_classes(self._folder_classes())
        elif action == "classify":
            self.reveal(self.labelling.adapt_panel)
            if self.labelling.adapt_panel.train_button.isEnabled():
                self.labelling.adapt_panel.train_button.click()
        elif action == "export":
            self.open_export_dialog()

    def _update_title(self) -> None:
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
    def open_export_dialog(self) -> None:
        self.exports.open()

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
            self.open_data_folder(Path(urls[0].toLocalFile()))

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
        if self.encoders_dialog is not None:
            self.encoders_dialog.close()
        self.release_project()
        if self._engine_loader is not None:
            self._engine_loader.wait()
        self.curves.stop()
        self.map.stop()
        event.accept()
