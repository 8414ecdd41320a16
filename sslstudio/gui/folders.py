"""Opening projects and data folders: the project a folder belongs to, its scan, and what the
window shows once the data is in. A new project gets a new ProjectSession, so nothing of the last
one can show."""

from __future__ import annotations

import zlib
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QMessageBox

from sslstudio.core.data.scan import detect_modality
from sslstudio.core.project import Project, ProjectError
from sslstudio.core.project_session import ProjectSession
from sslstudio.gui import APP_NAME
from sslstudio.gui.modalities import VIEWS, view_of
from sslstudio.gui.recent import FOLDERS, PROJECTS
from sslstudio.resources import sample_dataset_path

THUMBNAIL_SIZE = 64


def default_projects_root() -> Path:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents or Path.home()) / "SSL Studio"


class FolderOpening(QObject):
    def __init__(self, host):
        super().__init__(host)
        self.host = host  # the main window
        self.scan_report_box: QMessageBox | None = None
        controller = host.controller
        controller.scan_progress.connect(self.scan_progress)
        controller.scan_finished.connect(self.scan_finished)
        controller.data_ready.connect(self.data_ready)

    def set_project(self, project: Project) -> None:
        """A new session for the project: nothing of the last one (its banner, map, curves,
        classifier, labelling run, export) can show, since the window would say what is not
        true of this one."""
        if self.host.session.project is not None and self.host.session.project.path == project.path:
            self.host.session.project = project  # the same project again: what it shows stays
            self.host.labelling.set_project(project)
            self.host.flow.refresh()
            return
        if self.host.session.project is not None:
            self.host.labelling.forget_project_view()
        self.host.session = ProjectSession(project)
        self.host.labelling.set_project(project)
        self.host.map.clear()
        self.host.controller.history = self.host.session.history
        self.host.curves.set_history(self.host.session.history)
        self.host.show_banner()
        self.host.flow.refresh()

    def release_project(self) -> None:
        """Close the labels and let another window have the project."""
        self.host.labelling.release_project()

    def new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.host, "Choose or create an empty folder for the project",
                                                  str(default_projects_root()))
        if folder:
            self.open_project(Path(folder), create=True)

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.host, "Open an SSL Studio project",
                                                  str(default_projects_root()))
        if folder:
            self.open_project(Path(folder))

    def open_project(self, path: Path, create: bool = False) -> bool:
        if self.host.controller.busy():
            QMessageBox.information(self.host, APP_NAME, "Stop the running job before switching projects.")
            return False
        try:
            project = Project.create(path) if create else Project.open(path)
        except ProjectError as error:
            QMessageBox.warning(self.host, APP_NAME, f"{error}\n\nUse File > New project to make one here.")
            return False
        except OSError as error:
            QMessageBox.warning(self.host, APP_NAME, f"Cannot open {path}: {error.strerror or error}")
            return False
        self.set_project(project)
        self.host.recent.remember(PROJECTS, str(project.path))
        self.host.update_title()
        self.host.runs.refresh(select_latest=True)
        self.host.log.add(f"project {project.name} ({project.path})")
        if project.data_dir:
            if Path(project.data_dir).is_dir():
                self.scan_folder(Path(project.data_dir))
            else:
                QMessageBox.warning(self.host, APP_NAME, f"The project's data folder is gone: "
                                    f"{project.data_dir}\nOpen the folder again where it now is.")
        return True

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.host, "Open a folder of images or texts",
                                                  self.host.settings.value("recent/last_dir", str(Path.home())))
        if folder:
            self.open_data_folder(Path(folder))

    def open_sample(self) -> None:
        self.open_data_folder(sample_dataset_path())

    def open_data_folder(self, folder: Path) -> None:
        if self.host.controller.busy():
            QMessageBox.information(self.host, APP_NAME, "Stop the running job before opening another folder.")
            return
        if not folder.is_dir():
            QMessageBox.warning(self.host, APP_NAME, f"Not a folder: {folder}")
            return
        folder = folder.resolve()
        project = self.host.session.project
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
                QMessageBox.warning(self.host, APP_NAME, f"Cannot create a project in {root}: {error}")
                return
            self.set_project(project)
            self.host.recent.remember(PROJECTS, str(self.host.session.project.path))
            self.host.runs.refresh(select_latest=True)
        try:
            self.host.session.project.set_data_dir(str(folder))
        except ProjectError as error:
            QMessageBox.warning(self.host, APP_NAME, f"{error}.")
            return
        self.host.settings.setValue("recent/last_dir", str(folder.parent))
        self.host.recent.remember(FOLDERS, str(folder))
        self.host.update_title()
        self.scan_folder(folder)

    def scan_folder(self, folder: Path) -> None:
        modality = self.ask_modality(folder)
        if modality is None:
            return
        self.host.gallery.set_data(None)
        self.host.session.data_set = None
        self.host.progress.setRange(0, 0)
        self.host.progress.setFormat("scanning…")
        self.host.progress.show()
        self.host.status_text.setText(f"Scanning {folder}…")
        project = self.host.session.project
        self.host.controller.start_scan(folder, THUMBNAIL_SIZE, project.cache_dir if project else None,
                                   modality)

    def ask_modality(self, folder: Path) -> str | None:
        """The kind of data the folder holds, told from its files; the user decides when it holds
        more than one kind (None when they cancel). An empty folder goes as a tie does, to the
        first kind the app shows, and its scan then says it is empty."""
        found = detect_modality(folder)
        if found in VIEWS:
            return found
        if found != "mixed":
            return next(iter(VIEWS))
        box = QMessageBox(QMessageBox.Icon.Question, APP_NAME,
                          f"{folder.name} holds {' and '.join(v.item_noun for v in VIEWS.values())}. "
                          "Which should SSL Studio train on?", parent=self.host)
        choices = {box.addButton(view.item_noun.capitalize(), QMessageBox.ButtonRole.AcceptRole): kind
                   for kind, view in VIEWS.items()}
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return choices.get(box.clickedButton())

    def scan_progress(self, done: int, total: int) -> None:
        self.host.progress.setRange(0, total)
        self.host.progress.setValue(done)
        self.host.progress.setFormat("scanning %v / %m")

    def scan_finished(self, event) -> None:
        self.host.progress.hide()

    def data_ready(self, data_set) -> None:
        self.host.session.data_set = data_set
        self.host.gallery.set_data(data_set)
        # The legend names the folder's classes, also for a run's map shown before any training.
        self.host.map.set_class_names(data_set.class_names)
        view = view_of(data_set)
        self.host.setup.set_modality(view.name)
        self.host.labelling.data_changed()
        report = data_set.report
        self.host.curves.set_item_noun(view.item_noun)
        self.host.status_text.setText(f"{len(data_set):,} {view.item_noun} in {data_set.root}")
        self.host.update_actions()
        if report.skipped:
            box = QMessageBox(self.host)
            box.setIcon(QMessageBox.Icon.Warning)
            box.setWindowTitle("Scan report")
            box.setText(report.summary())
            box.setInformativeText("These files were skipped; training uses the rest.")
            box.setDetailedText("\n".join(f"{path}: {reason}" for path, reason in report.skipped))
            box.setStandardButtons(QMessageBox.StandardButton.Ok)
            box.open()  # not exec(): the window keeps working while the report is up
            self.scan_report_box = box
        self.host.log.add(f"data: {report.summary()}")
