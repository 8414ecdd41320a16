"""The Labels and Classifier panels and what drives them: a LabellingSession shown in widgets.

The session holds every piece of labelling state; this component turns the panels' requests and
the jobs' signals into session calls and shows the outcome in its panels, the gallery, the map
and the status bar. Of the main window it knows only the LabellingHost below. It does what spans
the features (the labelling run, the map, groups and suggestions); its parts do the rest by
feature: `editing` (LabelEditing: labels and classes, undo, CSV), `pre_labels` (PreLabelling:
zero-shot) and `classifiers` (ClassifierControls: adapt, compare, the classifier in use)."""

from __future__ import annotations


from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import (
    QLabel,
    QMessageBox,
    QProgressBar,
    QWidget,
)

from sslstudio.core.project_session import ProjectSession
from sslstudio.core.data import item_keys
from sslstudio.core.labelling_session import LabellingSession
from sslstudio.gui import APP_NAME
from sslstudio.gui.controller import TrainingController
from sslstudio.gui.widgets.adapt_panel import AdaptPanel
from sslstudio.gui.widgets.embedding_map import GROUP_PALETTE, EmbeddingMap
from sslstudio.gui.widgets.gallery import GalleryView
from sslstudio.gui.widgets.label_panel import NO_RUN_TEXT, LabelPanel
from sslstudio.gui.widgets.log_panel import LogPanel
from sslstudio.gui.classifier_controls import ClassifierControls
from sslstudio.gui.label_editing import LabelEditing, rgb
from sslstudio.gui.pre_labelling import PreLabelling

if TYPE_CHECKING:  # the window's parts, which import this module's neighbours
    from sslstudio.gui.encoder_downloads import EncoderDownloads
    from sslstudio.gui.flow_driver import FlowDriver

CONFIDENCE_COLOURS = [(215, 48, 39), (252, 141, 89), (254, 224, 139), (145, 207, 96), (26, 152, 80)]
ITEM_COLOURINGS = ("Colour by your labels", "Colour by predicted class", "Colour by confidence",
                   "Colour by group")


class LabellingHost(Protocol):
    """The main window as the labelling panels see it. It is a QWidget: their dialogs and
    actions belong to it."""

    gallery: GalleryView
    map: EmbeddingMap
    controller: TrainingController
    status_text: QLabel
    progress: QProgressBar
    log: LogPanel
    session: ProjectSession  # the open project as the window shows it (its data_set: None
    # before a folder is loaded and while one is scanned)
    engine: dict | None  # None until the training engine has loaded

    encoders: "EncoderDownloads"  # the pretrained-encoders dialog and downloads
    flow: "FlowDriver"  # the flow bar's part: refresh() shows its steps again

    def reveal(self, widget: QWidget) -> None:
        """Bring the dock or the tab that holds `widget` to the front."""


class LabellingPanels(QObject):
    def __init__(self, host: LabellingHost):
        super().__init__(host)
        self.host = host
        self.session = LabellingSession()
        self.project = None
        self.label_panel = LabelPanel()
        self.adapt_panel = AdaptPanel()
        self._selected_run = None  # the run summary picked in the Runs list
        # What a button asked for while the features were not ready: it runs once the job that
        # computes them has ended (no hidden "prepare" step for the user to discover).
        self._after_features = None
        # The parts, by feature: labels, pre-labels, classifiers.
        self.editing = LabelEditing(self)
        self.pre_labels = PreLabelling(self)
        self.classifiers = ClassifierControls(self)
        c = host.controller
        c.features_ready.connect(self._features_ready)
        c.busy_changed.connect(self._job_ended)
        c.map_ready.connect(self._map_ready)
        c.result.connect(self._task_result)
        p = self.label_panel
        p.prepare_requested.connect(self.prepare_labelling)
        p.find_groups_requested.connect(self.find_groups)
        p.label_group_requested.connect(self.label_selected_group)
        p.suggest_requested.connect(self.suggest)

    # -- project and data ---------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        opened = self.session.open_project(project.path)
        reason = opened.read_only_reason
        if reason:
            self.host.log.add(f"project opened read-only: {reason}")
            QMessageBox.warning(self.host, APP_NAME,
                                f"{reason[0].upper() + reason[1:]}.\n\nIt opens here read-only: you "
                                "can look at its runs and labels, but labels cannot be changed until "
                                "the other window closes it.")
        if opened.labels_error:
            QMessageBox.warning(self.host, APP_NAME,
                                f"Cannot open the labels of {project.path}: {opened.labels_error}")
        self.editing.show_labels()

    def release_project(self) -> None:
        self.session.close_project()

    def data_changed(self) -> None:
        data = self.host.session.data_set
        self.session.set_items(item_keys(data) if data is not None else [])
        self.editing.show_labels()

    def forget_project_view(self) -> None:
        """What the panels show of the last project goes: its run, classifier and results."""
        self._selected_run = None
        self.clear_map()
        self.label_panel.set_encoder(NO_RUN_TEXT, False)
        self.adapt_panel.clear_results(False)
        self.adapt_panel.forget_results()
        self.adapt_panel.set_classifiers([], "")

    def clear_map(self) -> None:
        """Training starts: the map will show its snapshots, not the labelling run's items."""
        self.session.item_map.forget_features()
        for name in ITEM_COLOURINGS:
            self.host.map.set_item_colouring(name, None)
        self.update_actions()

    # -- labels -------------------------------------------------------------------------------
    # -- features, groups, suggestions --------------------------------------------------------
    def run_selected(self, summary) -> None:
        self._selected_run = summary
        session = self.session
        if session.item_map.run is not None and session.item_map.features is not None:
            text = f"Labelling with {session.item_map.run.name}."
        elif summary.folder.has_checkpoint():
            text = f"Selected run: {summary.name}."
        else:
            text = f"Run {summary.name} has no checkpoint yet."
        self.label_panel.set_encoder(text, session.item_map.features is not None)
        self.classifiers.refresh()
        self.update_actions()

    @property
    def selected_run(self):
        """The run summary picked in the Runs list (None: none), which labelling works from."""
        return self._selected_run

    def prepare_labelling(self) -> None:
        summary = self._selected_run
        if summary is None or self.host.session.data_set is None or self.host.controller.busy():
            return
        if not summary.folder.has_checkpoint():
            QMessageBox.information(self.host, APP_NAME, f"Run {summary.name} has no checkpoint yet; "
                                    "train it (or let it save one) first.")
            return
        self.session.start_labelling(summary.path)
        self.host.gallery.set_predictions(None, None, None)
        self.host.controller.start_labelling(summary.path, Path(self.project.data_dir))
        self.show_progress("embedding every item…")

    def _features_ready(self, event) -> None:
        self.host.progress.hide()
        item_map, labels = self.session.item_map, self.session.labels
        item_map.features_ready(event)
        shown = item_map.map_items()
        data = self.host.session.data_set
        view = self.host.map
        view.class_names = tuple(data.class_names)
        view.show_snapshot(shown, item_map.coords[shown], np.asarray(data.labels)[shown])
        view.status.setText(f"{len(shown):,} items embedded by {item_map.run.name}")
        self.editing.refresh_labels()
        view.set_item_colouring("Colour by your labels", labels.label_of,
                                [rgb(c.colour) for c in labels.classes()], show=True,
                                names=[c.name for c in labels.classes()])
        self.host.reveal(view)
        self.label_panel.set_encoder(f"Labelling with {item_map.run.name}: every item embedded.", True)
        self.host.reveal(self.label_panel)
        self.classifiers.restore_latest_predictions()
        self.update_actions()

    def _map_ready(self, event) -> None:
        """The t-SNE map arrives: the points glide from the PCA layout to it."""
        self.host.progress.hide()
        item_map = self.session.item_map
        if item_map.features is None:
            return
        item_map.map_ready(event)
        shown = item_map.map_items()
        view = self.host.map
        view.show_snapshot(shown, item_map.coords[shown], np.asarray(self.host.session.data_set.labels)[shown])
        view.status.setText(f"{len(shown):,} items embedded by {item_map.run.name}, "
                            f"{event.method} map")

    def features_needed(self, action) -> bool:
        """True when the features of the selected run are not there yet: then they are computed
        first and `action` follows; False when the caller can go on."""
        item_map, run = self.session.item_map, self._selected_run
        ready = item_map.features is not None and (run is None or item_map.run == run.path)
        if ready:
            return False
        if self.can_prepare():
            self._after_features = action
            self.prepare_labelling()
        else:
            self.say("Select a run with a checkpoint in the Runs list first")
        return True

    def can_prepare(self) -> bool:
        run = self._selected_run
        return (not self.host.controller.busy() and self.host.session.data_set is not None
                and self.session.labels.store is not None and run is not None
                and run.folder.has_checkpoint())

    def _job_ended(self, busy: bool) -> None:
        if busy:
            return
        action, self._after_features = self._after_features, None
        if action is not None and self.session.item_map.features is not None:
            QTimer.singleShot(0, action)  # after every other handler of this job's end

    def find_groups(self, k: int) -> None:
        if self.host.controller.busy() or self.features_needed(lambda: self.find_groups(k)):
            return
        self.host.controller.start_task("groups", self.session.item_map.groups_job(k))
        self.show_progress("finding groups…")

    def suggest(self, count: int) -> None:
        if self.host.controller.busy() or self.features_needed(lambda: self.suggest(count)):
            return
        if self.session.predictions.margin is not None:
            picks = self.session.least_confident(count)
            self.host.gallery.show_suggestions(picks)
            self.say(f"{len(picks)} items the classifier is least sure of")
            return
        self.host.controller.start_task("suggest", self.session.item_map.suggestion_job(count))
        self.show_progress("choosing what to label…")

    def _task_result(self, kind: str, value) -> None:
        if kind == "clip":
            self.host.progress.hide()
            self.pre_labels.model_downloaded("clip", str(value))
            if self.host.encoders.dialog is not None:
                self.host.encoders.dialog.mark_on_disk("clip")
            self.say(f"CLIP downloaded: {value}")
        elif kind == "groups":
            self.host.progress.hide()
            k = self.session.item_map.groups_found(value)
            groups = self.session.item_map.groups
            self.host.map.set_item_colouring(
                "Colour by group", groups, GROUP_PALETTE, show=True,
                names=[f"group {g + 1}" for g in range(int(groups.max(initial=-1)) + 1)])
            self.say(f"{k} groups found; select an item and label its whole group, then fix the "
                      "mistakes")
            self.label_panel.k.setValue(k)
        elif kind == "suggest":
            self.host.progress.hide()
            self.session.item_map.suggestions_found(value)
            self.host.gallery.show_suggestions(self.session.item_map.suggestions)
            self.host.reveal(self.host.gallery)
            self.say(f"{len(value)} typical items from regions without labels: label them with "
                      "keys 1-9")

    def label_selected_group(self) -> None:
        if self.session.item_map.groups is None:
            QMessageBox.information(self.host, APP_NAME, "Find groups first.")
            return
        items = self.host.gallery.selected_items()
        if not items:
            QMessageBox.information(self.host, APP_NAME, "Select an item of the group in the gallery "
                                    "(or click it on the map) first.")
            return
        members = self.session.item_map.unlabelled_in_group_of(items[0])
        if members is not None:
            self.editing.label_items(members)

    # -- zero-shot pre-labels -----------------------------------------------------------------
    # -- adaptation ---------------------------------------------------------------------------
    def _show_predictions(self) -> None:
        predictions, classes = self.session.predictions, self.session.labels.classes()
        self.host.gallery.set_predictions(predictions.predicted, predictions.confidence, predictions.margin)
        view = self.host.map
        view.set_item_colouring("Colour by confidence",
                                np.minimum((predictions.confidence * 5).astype(np.int64), 4),
                                CONFIDENCE_COLOURS,
                                names=["confidence < 20%", "20-40%", "40-60%", "60-80%", "80-100%"])
        view.set_item_colouring("Colour by predicted class", predictions.predicted,
                                [rgb(c.colour) for c in classes], show=True,
                                names=[c.name for c in classes])  # the box says "predicted"

    def show_predictions(self) -> None:
        """A classifier's predictions or zero-shot pre-labels, in the gallery and on the map."""
        predictions, classes = self.session.predictions, self.session.labels.classes()
        self.host.gallery.set_predictions(predictions.predicted, predictions.confidence, predictions.margin)
        view = self.host.map
        view.set_item_colouring("Colour by confidence",
                                np.minimum((predictions.confidence * 5).astype(np.int64), 4),
                                CONFIDENCE_COLOURS,
                                names=["confidence < 20%", "20-40%", "40-60%", "60-80%", "80-100%"])
        view.set_item_colouring("Colour by predicted class", predictions.predicted,
                                [rgb(c.colour) for c in classes], show=True,
                                names=[c.name for c in classes])  # the box says "predicted"

    # -- state --------------------------------------------------------------------------------
    def update_actions(self) -> None:
        session = self.session
        busy = self.host.controller.busy()
        has_data = self.host.session.data_set is not None and session.labels.store is not None
        self.editing.update_actions(session.labels, has_data)
        run = self._selected_run
        self.label_panel.prepare_button.setEnabled(
            not busy and has_data and run is not None and run.folder.has_checkpoint())
        on_demand = session.item_map.features is not None or self.can_prepare()
        self.label_panel.set_features_available(not busy and on_demand)
        reason = session.adapt_blocker(features_on_demand=on_demand)
        self.adapt_panel.set_ready(not busy and not reason and self.host.engine is not None, reason)
        if reason and not self.adapt_panel.estimates:
            self.adapt_panel.headline.setText(reason + ", then train a classifier.")
        self.host.flow.refresh()

    def show_progress(self, text: str) -> None:
        progress = self.host.progress
        progress.setRange(0, 0)
        progress.setFormat(text)
        progress.show()

    def say(self, text: str) -> None:
        self.host.status_text.setText(text)
