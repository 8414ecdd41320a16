"""Export and Try it, for the window: which models of the project can be exported, the dialog,
its jobs, and what an export done means for the project session."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox

from sslstudio.core.project_session import ProjectSession
from sslstudio.gui import APP_NAME
from sslstudio.gui.controller import TrainingController
from sslstudio.gui.widgets.export_dialog import ExportDialog


class ExportHost(Protocol):
    """The main window as the export flow sees it (a QWidget: the dialog belongs to it)."""

    session: ProjectSession
    controller: TrainingController

    def classifier_in_use(self) -> Path | None:
        """The adapted model the gallery and the map show predictions of, if any."""

    def thumbnail_by_name(self, name: str):
        """A thumbnail (or a text's opening words) for an item key, for Try it's neighbours."""

    def refresh_flow(self) -> None:
        """Show the flow bar's steps again."""


class ExportFlow(QObject):
    def __init__(self, host: ExportHost):
        super().__init__(host)
        self.host = host
        self.dialog: ExportDialog | None = None
        host.controller.export_event.connect(self._export_event)

    def sources(self) -> list[tuple[str, Path, bool]]:
        """What can be exported, as the dialog lists it: (label, folder, is a classifier); the
        classifier in use first, since what the gallery and the map show is what exports."""
        project = self.host.session.project
        if project is None:
            return []
        runs = [r for r in project.runs() if r.folder.has_checkpoint()]
        current = self.host.classifier_in_use()
        sources = []
        for run in runs:
            for model in reversed(run.folder.adapted_models()):  # newest first
                mark = " (in use)" if current is not None and model.path == current else ""
                sources.append((f"Classifier {model.path.name}{mark} (on run {run.name})", model.path, True))
        sources.sort(key=lambda entry: not (current is not None and entry[1] == current))
        for run in runs:
            sources.append((f"Encoder of run {run.name} ({run.objective} on {run.backbone})", run.path, False))
        return sources

    def open(self) -> None:
        project = self.host.session.project
        if project is None:
            QMessageBox.information(self.host, APP_NAME, "Open a folder and train a run first.")
            return
        sources = self.sources()
        if not sources:
            QMessageBox.information(self.host, APP_NAME, "There is nothing to export yet: train a "
                                    "run (and, for a classifier, label items and train one).")
            return
        if self.dialog is None:
            self.dialog = ExportDialog(self.host)
            self.dialog.export_requested.connect(self._export_requested)
            self.dialog.try_requested.connect(self._try_requested)
            self.host.controller.export_event.connect(self.dialog.show_event)
            self.host.controller.busy_changed.connect(lambda busy: self.dialog.set_busy(busy))
        data_folder = Path(project.data_dir) if project.data_dir else None
        self.dialog.set_sources(sources, project.path / "exports", data_folder)
        self.dialog.set_busy(self.host.controller.busy())
        self.dialog.show()
        self.dialog.raise_()

    def showing_failure(self, message: str) -> bool:
        """An export's or a Try's failure goes to the dialog while it is open (True then)."""
        if self.host.controller.job_kind not in ("export", "try") or self.dialog is None \
                or not self.dialog.isVisible():
            return False
        self.dialog.show_failure(message.split(": ", 1)[-1])
        return True

    def show_try_result(self, value) -> None:
        if self.dialog is not None:
            result, neighbours = value
            self.dialog.show_try_result(result, neighbours, self.host.thumbnail_by_name)

    def close(self) -> None:
        if self.dialog is not None:
            self.dialog.close()

    def _export_requested(self, request) -> None:
        if self.host.controller.busy():
            self.dialog.show_failure("Another job is running; stop it or wait, then export.")
            return
        project = self.host.session.project
        if request.data_dir is None and project is not None and project.data_dir:
            request.data_dir = Path(project.data_dir)
        self.host.controller.start_export(request)

    def _try_requested(self, model_path: str, image_path: str) -> None:
        if self.host.controller.busy():
            return
        project = self.host.session.project
        data_dir = Path(project.data_dir) if project and project.data_dir else None

        def try_model(model_path, image_path, data_dir):
            from sslstudio.core.export import (  # torch, off the GUI thread
                nearest_items,
                run_exported,
            )

            result = run_exported(Path(model_path), Path(image_path))
            neighbours = []
            if not result["info"]["class_names"] and data_dir is not None:
                neighbours = nearest_items(Path(model_path), data_dir, result["output"])
            return result, neighbours

        self.host.controller.start_task("try", try_model, model_path, image_path, data_dir)

    def _export_event(self, event) -> None:
        if type(event).__name__ == "ExportFinished" and event.status == "completed" and event.path:
            chosen = self.dialog.source.currentData() if self.dialog is not None else None
            self.host.session.exported(str(Path(event.path).parent), str(chosen[0]) if chosen else "")
            self.host.flow.refresh()
