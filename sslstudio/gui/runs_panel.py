"""The Runs dock: the project's runs in the user's words, and Resume. Selecting a run shows its
curves, its map and its banner; the list is read again from the runs' folders after every job."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from sslstudio.core.history import RunHistory


class RunsPanel(QWidget):
    def __init__(self, host):
        super().__init__()
        self.host = host  # the main window
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._run_selected)
        self.resume_button = QPushButton("Resume selected run")
        layout.addWidget(self.list, 1)
        layout.addWidget(self.resume_button)

    def selected(self):
        """The RunSummary of the selected run, or None."""
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def summaries(self) -> list:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def refresh(self, select_path: Path | None = None, select_latest: bool = False) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        chosen = None
        for row in self.host.session.run_rows(self.host.controller.training_run, self.host.controller.paused):
            item = QListWidgetItem(row.text)
            item.setData(Qt.ItemDataRole.UserRole, row.summary)
            self.list.addItem(item)
            if select_path is not None and row.summary.path == Path(select_path):
                chosen = item
        if chosen is None and select_latest and self.list.count():
            chosen = self.list.item(0)
        self.list.blockSignals(False)
        if chosen is not None:
            self.list.setCurrentItem(chosen)
        self.host.setup.teacher.set_runs(self.host.session.teacher_runs())
        self.host.update_actions()

    def _run_selected(self, item, _previous=None) -> None:
        if item is not None:
            summary = item.data(Qt.ItemDataRole.UserRole)
            self.host.session.select_run(summary.path)
            self.host.show_banner()
            self.host.labelling.run_selected(summary)
        self.host.update_actions()
        if item is None or self.host.controller.busy():
            return
        summary = item.data(Qt.ItemDataRole.UserRole)
        self.host.session.history = RunHistory.from_metrics(summary.folder.metrics())
        self.host.curves.set_history(self.host.session.history)
        snapshot = summary.folder.snapshot()
        if snapshot is not None and self.host.labelling.session.item_map.features is None:
            coords = snapshot.get("neighbour_coords", snapshot["coords"])
            self.host.map.show_snapshot(snapshot["indices"], coords, snapshot["labels"],
                                   int(snapshot["step"]))
