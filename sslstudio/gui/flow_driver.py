"""The flow bar's part of the window: what it shows (read from the same places the panels read)
and what its steps and its Next button do."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject

from sslstudio.gui.flow import FlowFacts, flow_state
from sslstudio.gui.modalities import view_of


class FlowDriver(QObject):
    def __init__(self, host):
        super().__init__(host)
        self.host = host  # the main window

    def facts(self) -> FlowFacts:
        """What the flow bar shows, read from the same places the panels read."""
        busy = self.host.controller.busy()
        job = self.host.controller.job_kind if busy else ""
        session = self.host.labelling.session
        run = self.host.labelling.selected_run
        label_of = session.labels.label_of
        labelled = label_of[label_of >= 0]
        runs = self.host.runs.summaries()
        current = session.predictions.adapted_path
        return FlowFacts(
            items=len(self.host.session.data_set) if self.host.session.data_set is not None else 0,
            item_noun=view_of(self.host.session.data_set).item_noun,
            scanning=job == "scan", job=job, paused=self.host.controller.paused,
            runs_with_checkpoint=sum(1 for r in runs if r is not None and r.folder.has_checkpoint()),
            classes=int((np.bincount(labelled) > 0).sum()) if len(labelled) else 0,
            class_names=tuple(c.name for c in session.labels.classes()),
            folder_classes=self.folder_classes(),
            labels_shown=self.host.labelling.label_panel.isVisible(),
            labelled=int(len(labelled)),
            classifiers=len(session.classifiers(run.path)) if run is not None else 0,
            current_classifier=self.host.labelling.classifiers.words(current),
            exported=self.host.session.export_of_run(run.path if run is not None else None))

    def folder_classes(self) -> tuple[str, ...]:
        """The open folder's subfolder names, which the Label step offers as classes."""
        return tuple(getattr(self.host.session.data_set, "class_names", ()) or ())

    def refresh(self) -> None:
        # Panels built before the flow bar and the runs list ask too.
        if hasattr(self.host, "flow_bar") and hasattr(self.host, "runs"):
            self.host.flow_bar.show_state(flow_state(self.facts()))

    def show_step(self, title: str) -> None:
        """A click on a step of the flow shows the panel where it is done."""
        if title == "Export":
            self.host.exports.open()
            return
        widget = {"Data": self.host.gallery, "Pretrain": self.host.setup, "Label": self.host.labelling.label_panel,
                  "Classify": self.host.labelling.adapt_panel}[title]
        self.host.reveal(widget)
        if title == "Pretrain":
            self.host.tabs.setCurrentWidget(self.host.curves)

    def do_next(self, action: str) -> None:
        if action == "open":
            self.host.folders.open_folder_dialog()
        elif action == "train":
            self.host.reveal(self.host.setup)
            self.host.training.start()
        elif action == "stop":
            self.host.training.stop()
        elif action == "label":
            self.host.reveal(self.host.labelling.label_panel)
            self.host.gallery.list.setFocus()
            self.refresh()
        elif action == "add_class":
            self.host.reveal(self.host.labelling.label_panel)
            self.host.labelling.editing.add_class_dialog()
        elif action == "folder_classes":
            self.host.reveal(self.host.labelling.label_panel)
            self.host.labelling.editing.add_folder_classes(self.folder_classes())
        elif action == "classify":
            self.host.reveal(self.host.labelling.adapt_panel)
            if self.host.labelling.adapt_panel.train_button.isEnabled():
                self.host.labelling.adapt_panel.train_button.click()
        elif action == "export":
            self.host.exports.open()
