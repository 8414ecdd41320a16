"""The Labels and Classifier panels and what drives them: a LabellingSession shown in widgets.

The session holds every piece of labelling state; this component turns the panels' requests and
the jobs' signals into session calls and shows the outcome in its panels, the gallery, the map
and the status bar. Of the main window it knows only the LabellingHost below."""

from __future__ import annotations

import time

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QColorDialog,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QWidget,
)

from sslstudio.core.project_session import ProjectSession
from sslstudio.core.data import item_keys
from sslstudio.core.describe import describe
from sslstudio.core.run.folder import AdaptedFolder, RunFolder
from sslstudio.core.labelling_session import LabellingSession
from sslstudio.core.labels import LabelError
from sslstudio.gui import APP_NAME
from sslstudio.gui.actions import make_action
from sslstudio.gui.controller import TrainingController
from sslstudio.gui.widgets.adapt_panel import AdaptPanel
from sslstudio.gui.widgets.embedding_map import GROUP_PALETTE, EmbeddingMap
from sslstudio.gui.widgets.gallery import GalleryView
from sslstudio.gui.widgets.label_panel import NO_RUN_TEXT, LabelPanel
from sslstudio.gui.widgets.log_panel import LogPanel
from sslstudio.gui.widgets.zeroshot_dialog import ZeroShotDialog
from sslstudio.gui.modalities import view_of

if TYPE_CHECKING:  # the window's parts, which import this module's neighbours
    from sslstudio.gui.encoder_downloads import EncoderDownloads
    from sslstudio.gui.flow_driver import FlowDriver

CONFIDENCE_COLOURS = [(215, 48, 39), (252, 141, 89), (254, 224, 139), (145, 207, 96), (26, 152, 80)]
ITEM_COLOURINGS = ("Colour by your labels", "Colour by predicted class", "Colour by confidence",
                   "Colour by group")


def _rgb(colour: str) -> tuple[int, int, int]:
    c = QColor(colour)
    return c.red(), c.green(), c.blue()


def offered_model(offer: str) -> tuple[str, str, Path | None]:
    """(name, download size, folder in the cache or None) of a model the app offers to fetch for
    zero-shot pre-labels: "clip" for images, "text" (the sentence encoder) for texts."""
    if offer == "clip":
        from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder  # torch: on use

        return CLIP_DOWNLOAD["title"], CLIP_DOWNLOAD["size"], cached_clip_folder()
    from sslstudio.core.backbones.pretrained import TEXT_ENCODER_DOWNLOAD, cached_text_encoder

    return TEXT_ENCODER_DOWNLOAD["title"], TEXT_ENCODER_DOWNLOAD["size"], cached_text_encoder()


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
        self.import_box: QMessageBox | None = None  # the last import's report, while it is open
        self._selected_run = None  # the run summary picked in the Runs list
        # What a button asked for while the features were not ready: it runs once the job that
        # computes them has ended (no hidden "prepare" step for the user to discover).
        self._after_features = None
        self.undo_action = self._action("&Undo", self.undo_label, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("&Redo", self.redo_label, QKeySequence.StandardKey.Redo)
        self.import_labels_action = self._action(
            "&Import labels (CSV)…", self.import_labels_dialog,
            tip="path,label rows; paths absolute or relative to the data folder")
        self.export_labels_action = self._action("&Export labels (CSV)…", self.export_labels_dialog)
        self._connect()

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        return make_action(self.host, text, slot, shortcut, tip)

    def _connect(self) -> None:
        host = self.host
        host.gallery.label_key.connect(self.label_key_pressed)
        host.gallery.label_class.connect(self.label_from_menu)
        host.map.points_lassoed.connect(self.label_lassoed)
        c = host.controller
        c.features_ready.connect(self._features_ready)
        c.busy_changed.connect(self._job_ended)
        c.adapt_started.connect(self._adapt_started)
        c.adapt_progress.connect(self._adapt_progress)
        c.map_ready.connect(self._map_ready)
        c.adapt_estimate.connect(self.adapt_panel.show_estimate)
        c.adapt_predictions.connect(self._adapt_predictions)
        c.adapt_finished.connect(self._adapt_finished)
        c.result.connect(self._task_result)
        c.zeroshot_ready.connect(self._zero_shot_ready)
        c.zeroshot_finished.connect(self._zero_shot_finished)
        p = self.label_panel
        p.class_list.currentItemChanged.connect(self._label_target_changed)
        p.prepare_requested.connect(self.prepare_labelling)
        p.add_requested.connect(self.add_class_dialog)
        p.rename_requested.connect(self.rename_class_dialog)
        p.recolour_requested.connect(self.recolour_class_dialog)
        p.delete_requested.connect(self.delete_class)
        p.find_groups_requested.connect(self.find_groups)
        p.label_group_requested.connect(self.label_selected_group)
        p.suggest_requested.connect(self.suggest)
        p.zeroshot_requested.connect(self.zero_shot_dialog)
        p.accept_requested.connect(self.accept_pre_labels)
        self.adapt_panel.train_requested.connect(self.train_classifier)
        self.adapt_panel.classifier_chosen.connect(self.choose_classifier)
        self.adapt_panel.compare_requested.connect(self.compare_methods)

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
        self._show_labels()

    def release_project(self) -> None:
        self.session.close_project()

    def data_changed(self) -> None:
        data = self.host.session.data_set
        self.session.set_items(item_keys(data) if data is not None else [])
        self._show_labels()

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
    def refresh_labels(self) -> None:
        """Show the labels as the store holds them now, also after it was changed directly."""
        self.session.labels.reload_labels()
        self._show_labels()

    def _show_labels(self) -> None:
        session = self.session
        classes = session.labels.classes()
        self.host.gallery.set_labels(session.labels.label_of, [c.name for c in classes],
                                     [QColor(c.colour) for c in classes])
        self.label_panel.set_classes(classes, session.labels.counts())
        self.label_panel.set_pre_labels(session.predictions.pre_label_summary(self._accept_confidence()))
        self._label_target_changed()
        if len(self.host.map.indices):
            self.host.map.set_item_colouring("Colour by your labels", session.labels.label_of,
                                             [_rgb(c.colour) for c in classes],
                                             names=[c.name for c in classes])
        self.update_actions()

    def label_items(self, items, class_id: int | None = None, use_current: bool = True) -> int:
        if self.session.labels.store is None or not self.session.labels.item_keys:
            return 0
        if use_current:
            class_id = self.label_panel.current_class_id()
            if class_id < 0:
                self._say("Add a class in the Labels panel first")
                self.host.reveal(self.label_panel)
                return 0
        try:
            changed = self.session.labels.label(items, class_id)
        except LabelError as error:
            self._say(str(error))
            return 0
        self._show_labels()
        if changed:
            self._say(self.session.labels.undo_text().capitalize() + " (Ctrl+Z undoes)")
        return changed

    def label_key_pressed(self, number: int) -> None:
        items = self.host.gallery.selected_items()
        if not items or self.session.labels.store is None:
            return
        if number == 0:
            self.label_items(items, None, use_current=False)
            return
        classes = self.session.labels.classes()
        if number > len(classes):
            self._say(f"There is no class {number}; add classes in the Labels panel")
            return
        self.label_items(items, classes[number - 1].id, use_current=False)

    def label_from_menu(self, position: int) -> None:
        items = self.host.gallery.selected_items()
        if position < 0:
            self.label_items(items, None, use_current=False)
        else:
            self.label_key_pressed(position + 1)

    def label_lassoed(self, items) -> None:
        self.label_on_map(items)

    def label_on_map(self, items) -> None:
        """Labelled from the map: the map shows the labels, so the change is seen where it was
        made (coloured by folder label, nothing would change)."""
        if self.label_items(items):
            self.host.map.colour_by.setCurrentText("Colour by your labels")

    def _label_target_changed(self, *_args) -> None:
        chosen = self.session.labels.class_by_id(self.label_panel.current_class_id())
        self.host.map.set_label_target(chosen.name if chosen is not None else "")

    def undo_label(self) -> None:
        self._undo_step("Undone: ", self.session.labels.undo)

    def redo_label(self) -> None:
        self._undo_step("Redone: ", self.session.labels.redo)

    def _undo_step(self, prefix: str, step) -> None:
        try:
            done = step()
        except LabelError as error:
            self._say(str(error))
        else:
            if done is None:
                return
            self._say(prefix + done)
        self._show_labels()

    def add_class_dialog(self) -> None:
        if self.session.labels.store is None:
            QMessageBox.information(self.host, APP_NAME,
                                    "Open a folder first; labels belong to its project.")
            return
        name, ok = QInputDialog.getText(self.host, "Add class", "Name of the new class:")
        if ok:
            self._label_action(lambda: self.session.labels.add_class(name))

    def add_folder_classes(self, names: tuple[str, ...]) -> None:
        """The folder's subfolder names as classes (those not there yet), in their order."""
        if self.session.labels.store is None:
            return
        have = {c.name for c in self.session.labels.classes()}

        def add_all():
            for name in names:
                if name not in have:
                    self.session.labels.add_class(name)

        self._label_action(add_all)

    def rename_class_dialog(self, class_id: int) -> None:
        current = self.session.labels.class_by_id(class_id)
        if current is None:
            return
        name, ok = QInputDialog.getText(self.host, "Rename class", "New name:", text=current.name)
        if ok:
            self._label_action(lambda: self.session.labels.rename_class(class_id, name))

    def recolour_class_dialog(self, class_id: int) -> None:
        current = self.session.labels.class_by_id(class_id)
        if current is None:
            return
        colour = QColorDialog.getColor(QColor(current.colour), self.host, f"Colour of {current.name}")
        if colour.isValid():
            self._label_action(lambda: self.session.labels.recolour_class(class_id, colour.name()))

    def delete_class(self, class_id: int) -> None:
        current = self.session.labels.class_by_id(class_id)
        if current is None:
            return
        count = self.session.labels.counts().get(class_id, 0)
        if count and QMessageBox.question(
                self.host, APP_NAME, f"Delete class {current.name} and remove its {count} labels? "
                "(Edit > Undo brings them back)") != QMessageBox.StandardButton.Yes:
            return
        self._label_action(lambda: self.session.labels.delete_class(class_id))

    def _label_action(self, action) -> None:
        try:
            action()
        except LabelError as error:
            QMessageBox.warning(self.host, APP_NAME, str(error))
        self._show_labels()

    def import_labels_dialog(self) -> None:
        if self.session.labels.store is None or self.host.session.data_set is None:
            QMessageBox.information(self.host, APP_NAME, "Open the folder the labels refer to first.")
            return
        path, _ = QFileDialog.getOpenFileName(self.host, "Import labels", str(Path.home()),
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.import_labels(Path(path))

    def import_labels(self, path: Path) -> None:
        try:
            report = self.session.labels.import_csv(path, Path(self.host.session.data_set.root))
        except LabelError as error:
            QMessageBox.warning(self.host, APP_NAME, str(error))
            return
        self._show_labels()
        self.host.log.add(f"labels from {path}: {report.summary()}")
        if report.unknown_paths or report.bad_rows:
            box = QMessageBox(QMessageBox.Icon.Information, "Labels imported", report.summary(),
                              parent=self.host)
            box.setDetailedText("\n".join(list(report.unknown_paths[:200])
                                          + list(report.bad_rows[:200])))
            box.open()
            self.import_box = box
        else:
            self._say(report.summary())

    def export_labels_dialog(self) -> None:
        if self.session.labels.store is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.host, "Export labels",
                                              str(Path.home() / "labels.csv"), "CSV files (*.csv)")
        if path:
            try:
                count = self.session.labels.export_csv(Path(path))
            except OSError as error:
                QMessageBox.warning(self.host, APP_NAME,
                                    f"Cannot write {path}: {error.strerror or error}")
                return
            self._say(f"{count} labels written to {path} (paths relative to the data folder)")

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
        self.refresh_classifiers()
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
        self._show_progress("embedding every item…")

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
        self.refresh_labels()
        view.set_item_colouring("Colour by your labels", labels.label_of,
                                [_rgb(c.colour) for c in labels.classes()], show=True,
                                names=[c.name for c in labels.classes()])
        self.host.reveal(view)
        self.label_panel.set_encoder(f"Labelling with {item_map.run.name}: every item embedded.", True)
        self.host.reveal(self.label_panel)
        self._restore_latest_predictions()
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

    def _features_needed(self, action) -> bool:
        """True when the features of the selected run are not there yet: then they are computed
        first and `action` follows; False when the caller can go on."""
        item_map, run = self.session.item_map, self._selected_run
        ready = item_map.features is not None and (run is None or item_map.run == run.path)
        if ready:
            return False
        if self._can_prepare():
            self._after_features = action
            self.prepare_labelling()
        else:
            self._say("Select a run with a checkpoint in the Runs list first")
        return True

    def _can_prepare(self) -> bool:
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
        if self.host.controller.busy() or self._features_needed(lambda: self.find_groups(k)):
            return
        self.host.controller.start_task("groups", self.session.item_map.groups_job(k))
        self._show_progress("finding groups…")

    def suggest(self, count: int) -> None:
        if self.host.controller.busy() or self._features_needed(lambda: self.suggest(count)):
            return
        if self.session.predictions.margin is not None:
            picks = self.session.least_confident(count)
            self.host.gallery.show_suggestions(picks)
            self._say(f"{len(picks)} items the classifier is least sure of")
            return
        self.host.controller.start_task("suggest", self.session.item_map.suggestion_job(count))
        self._show_progress("choosing what to label…")

    def _task_result(self, kind: str, value) -> None:
        if kind == "clip":
            self.host.progress.hide()
            self.model_downloaded("clip", str(value))
            if self.host.encoders.dialog is not None:
                self.host.encoders.dialog.mark_on_disk("clip")
            self._say(f"CLIP downloaded: {value}")
        elif kind == "groups":
            self.host.progress.hide()
            k = self.session.item_map.groups_found(value)
            groups = self.session.item_map.groups
            self.host.map.set_item_colouring(
                "Colour by group", groups, GROUP_PALETTE, show=True,
                names=[f"group {g + 1}" for g in range(int(groups.max(initial=-1)) + 1)])
            self._say(f"{k} groups found; select an item and label its whole group, then fix the "
                      "mistakes")
            self.label_panel.k.setValue(k)
        elif kind == "suggest":
            self.host.progress.hide()
            self.session.item_map.suggestions_found(value)
            self.host.gallery.show_suggestions(self.session.item_map.suggestions)
            self.host.reveal(self.host.gallery)
            self._say(f"{len(value)} typical items from regions without labels: label them with "
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
            self.label_items(members)

    # -- zero-shot pre-labels -----------------------------------------------------------------
    def _accept_confidence(self) -> float:
        return self.label_panel.accept_confidence.value() / 100

    def zero_shot_dialog(self) -> None:
        if self.host.session.data_set is None or self.session.labels.store is None:
            self._say("Open a data folder first")
            return
        settings = getattr(self.host, "settings", None)
        view = view_of(self.host.session.data_set)
        # One model per kind of data: a CLIP folder cannot read texts, nor a sentence encoder images.
        key = f"zeroshot/{view.name}_model"
        remembered = str(settings.value(key, "") or "") if settings is not None else ""
        if not remembered and view.run_reads_descriptions and self._selected_run is not None:
            remembered = str(self._selected_run.folder.path)
        download_text = ""
        offer = view.zero_shot_download
        if offer and self.host.engine is not None:
            title, size, cached = offered_model(offer)
            remembered = remembered or (str(cached) if cached else "")
            if cached is None:
                download_text = f"Download {title} ({size})…"
        dialog = ZeroShotDialog([c.name for c in self.session.labels.classes()], view, remembered,
                                self.host, download_text)
        dialog.offer = offer
        dialog.download_requested.connect(
            self.download_clip if offer == "clip" else lambda: self.host.encoders.download("pretrained_bert"))

        def chosen(result: int) -> None:
            if result != ZeroShotDialog.DialogCode.Accepted:
                return
            model, descriptions = dialog.chosen()
            if settings is not None:
                settings.setValue(key, model)
            self.start_zero_shot(Path(model), descriptions)

        dialog.finished.connect(chosen)
        dialog.open()  # not exec(): the window keeps drawing while it is up
        self.zeroshot_dialog = dialog

    def model_downloaded(self, offer: str, folder: str) -> None:
        """A model the pre-label dialog offers is on disk now: the open dialog points at it."""
        dialog = getattr(self, "zeroshot_dialog", None)
        if dialog is not None and getattr(dialog, "offer", "") == offer:
            dialog.model.setText(folder)
            dialog.download_button.hide()

    def download_clip(self) -> None:
        """Fetch the CLIP the app offers, only after a yes; the dialog then points at it."""
        from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, download_clip

        if self.host.controller.busy():
            self._say("Wait for the running job to end (or stop it) first")
            return
        answer = QMessageBox.question(
            self.host, APP_NAME, f"Download {CLIP_DOWNLOAD['repo']} ({CLIP_DOWNLOAD['size']}, licence "
            f"{CLIP_DOWNLOAD['licence']}) from huggingface.co into your Hugging Face cache?\n\nNothing "
            "else is sent or downloaded. Without a network, choose a CLIP folder you copied here.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.host.controller.start_task("clip", download_clip)
        self._show_progress("downloading CLIP…")

    def start_zero_shot(self, model: Path, descriptions: dict[str, str]) -> None:
        if self.host.controller.busy():
            self._say("Wait for the running job to end (or stop it) first")
            return
        if not Path(model).is_dir():
            QMessageBox.warning(self.host, APP_NAME, f"{model} is not a folder: choose the model's folder.")
            return
        request = self.session.zero_shot_request(model, Path(self.project.data_dir), descriptions)
        self.host.controller.start_zero_shot(request)
        self._show_progress("zero-shot: loading the model…")

    def _zero_shot_ready(self, event) -> None:
        count = self.session.predictions.zero_shot_ready(event)
        self._show_predictions()
        self.label_panel.set_pre_labels(self.session.predictions.pre_label_summary(self._accept_confidence()))
        self.host.reveal(self.label_panel)
        self._say(f"{count} items pre-labelled: accept them above a confidence, a selection or a "
                  "group at a time (the gallery and map show them as predictions)")

    def _zero_shot_finished(self, event) -> None:
        self.host.progress.hide()
        if event.status != "completed":
            self._say(describe(event).text)

    def accept_pre_labels(self, how: str, min_confidence: float) -> None:
        items = None
        if how in ("selected", "group"):
            selected = self.host.gallery.selected_items()
            if not selected:
                self._say("Select items in the gallery (or click one on the map) first")
                return
            items = selected
            if how == "group":
                if self.session.item_map.groups is None:
                    self._say("Find groups first")
                    return
                items = self.session.item_map.unlabelled_in_group_of(selected[0])
                if items is None:
                    self._say("The selected item is in no group")
                    return
        try:
            changed = self.session.predictions.accept_pre_labels(min_confidence, items)
        except LabelError as error:
            self._say(str(error))
            return
        self._show_labels()
        self._say(f"{changed} pre-labels accepted (Ctrl+Z undoes)" if changed else
                  "No unlabelled item there has a pre-label that sure")

    # -- adaptation ---------------------------------------------------------------------------
    def train_classifier(self, method: str, overrides: dict) -> None:
        if not self._can_adapt() or self._features_needed(
                lambda: self.train_classifier(method, overrides)):
            return
        self.adapt_panel.clear_results(comparing=False)
        self.host.controller.start_adapt(self._adapt_request(method, overrides))
        self._show_progress(f"{method}: preparing…")

    def compare_methods(self, overrides: dict) -> None:
        if not self._can_adapt() or self._features_needed(lambda: self.compare_methods(overrides)):
            return
        self.adapt_panel.clear_results(comparing=True)
        self.host.controller.start_adapt(self._adapt_request("linear", {}), list(overrides), overrides)
        self._show_progress("comparing methods…")

    def _adapt_request(self, method: str, overrides: dict):
        return self.session.adapt_request(Path(self.project.data_dir), method, overrides)

    def _can_adapt(self) -> bool:
        # Without features yet, _features_needed computes them first.
        return (self.session.labels.store is not None and not self.host.controller.busy()
                and (self.session.can_adapt() or self._can_prepare()))

    def _adapt_started(self, event) -> None:
        self.session.predictions.adapt_started(event)
        self.adapt_panel.show_started(event)
        self.host.reveal(self.adapt_panel)

    def _adapt_progress(self, event) -> None:
        progress = self.host.progress
        progress.show()
        progress.setRange(0, max(1, event.total))
        progress.setValue(event.done)
        # EmbedProgress, while the features are computed, has neither.
        phase = getattr(event, "phase", "features")
        method = getattr(event, "method", "")
        progress.setFormat(f"{method} {phase} %v / %m".strip())

    def _adapt_predictions(self, event) -> None:
        self.session.predictions.predictions_ready(event)
        self._show_predictions()

    def _show_predictions(self) -> None:
        predictions, classes = self.session.predictions, self.session.labels.classes()
        self.host.gallery.set_predictions(predictions.predicted, predictions.confidence, predictions.margin)
        view = self.host.map
        view.set_item_colouring("Colour by confidence",
                                np.minimum((predictions.confidence * 5).astype(np.int64), 4),
                                CONFIDENCE_COLOURS,
                                names=["confidence < 20%", "20-40%", "40-60%", "60-80%", "80-100%"])
        view.set_item_colouring("Colour by predicted class", predictions.predicted,
                                [_rgb(c.colour) for c in classes], show=True,
                                names=[c.name for c in classes])  # the box says "predicted"

    def refresh_classifiers(self) -> None:
        """The Classifier panel's list: every classifier of the selected run, the current one
        marked."""
        run = self._selected_run.path if self._selected_run is not None else self.session.item_map.run
        entries = []
        for model in self.session.classifiers(run):
            when = time.strftime("%d %b %H:%M", time.localtime(model.modified()))
            try:
                e = model.estimate()
                text = f"{e.method} · {e.num_labels} labels · {e.words()} · {when}"
            except (OSError, ValueError, KeyError):
                text = f"{model.path.name} · {when}"
            entries.append((str(model.path), text))
        in_use = self.session.predictions.adapted_path
        current = str(in_use) if in_use is not None else ""
        self.adapt_panel.set_classifiers(entries, current)
        self.adapt_panel.set_unfit(self._unfit_methods(run))

    def _unfit_methods(self, run: Path | None) -> dict[str, str]:
        # Before the engine has loaded (in the background), torch would load here, on the GUI
        # thread; the panel's buttons wait for the engine anyway.
        if run is None or self.host.engine is None or not RunFolder(run).is_run():
            return {}
        from sslstudio.core.adapt.job import unfit_methods_for_run

        try:
            return unfit_methods_for_run(Path(run))
        except (OSError, KeyError, ValueError):
            return {}  # a damaged run: the job itself will say what is wrong

    @staticmethod
    def classifier_words(folder: Path | None) -> str:
        """A few words for a classifier where room is short (the flow bar): its method and
        estimate, or its folder's name when the estimate cannot be read."""
        if folder is None:
            return ""
        try:
            e = AdaptedFolder(folder).estimate()
            return f"{e.method}, {e.accuracy:.0%} estimated" if e.estimated else f"{e.method}, no estimate"
        except (OSError, ValueError, KeyError):
            return Path(folder).name

    def choose_classifier(self, folder: str) -> None:
        if self.host.controller.busy():
            return
        self._restore_latest_predictions(AdaptedFolder(Path(folder)))

    def _restore_latest_predictions(self, chosen=None) -> None:
        restored = self.session.restore_latest_predictions(chosen)
        self.refresh_classifiers()
        if restored is None:
            return
        self._show_predictions()
        if restored.estimate is None:
            return
        self.adapt_panel.clear_results(comparing=False)
        self.adapt_panel.show_estimate(restored.estimate)
        self.refresh_classifiers()
        which = "the classifier chosen" if chosen is not None else "the last classifier"
        self._say(f"Showing the predictions of {restored.folder.path.name}, {which} adapted "
                  f"from {self.session.item_map.run.name}")

    def _adapt_finished(self, event) -> None:
        self.host.progress.hide()
        if self.session.predictions.adapt_finished(event):
            self._say(f"Classifier saved in {event.path}; gallery filter 'Least confident first' "
                      "shows what to review")
        else:
            self._say(describe(event).text)
        self.refresh_classifiers()
        estimates = self.adapt_panel.estimates
        if event.status == "completed" and "," in event.method and estimates:
            # A comparison estimates; it trains nothing to keep. The method box stays as the user
            # set it (it moved to the best unasked); the panel names the best and says which
            # classifier is still the one in use.
            best = max(estimates.values(), key=lambda e: e.accuracy if e.estimated else -1.0)
            in_use = self.session.predictions.adapted_path
            current = (f"the classifier in use is still {in_use.name}" if in_use is not None
                       else "no classifier is trained yet")
            # A cautioned estimate still ranks (on Rotten Tomatoes SetFit was at least as good
            # as the probe on every draw, whatever its estimate said); its caution is repeated.
            caution = f" Its estimate comes with a caution: {best.caution}." if best.caution else ""
            self.adapt_panel.headline.setText(
                f"<b>Compared on the same folds: {best.method} is best, {best.accuracy:.1%}</b> "
                f"(table below).{caution} A comparison keeps no model: {current}. To use "
                f"{best.method}, choose it above and Train classifier. Every method here was "
                "scored on the same folds, so these figures differ a little from the estimate saved "
                "with a classifier, made on folds of its own; both are within their intervals.")

    # -- state --------------------------------------------------------------------------------
    def update_actions(self) -> None:
        session = self.session
        can_undo, can_redo = session.labels.can_undo(), session.labels.can_redo()
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setText(f"&Undo {session.labels.undo_text()}" if can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {session.labels.redo_text()}" if can_redo else "&Redo")
        busy = self.host.controller.busy()
        has_labels = session.labels.store is not None
        has_data = self.host.session.data_set is not None and has_labels
        self.import_labels_action.setEnabled(has_data)
        self.export_labels_action.setEnabled(has_labels)
        run = self._selected_run
        self.label_panel.prepare_button.setEnabled(
            not busy and has_data and run is not None and run.folder.has_checkpoint())
        on_demand = session.item_map.features is not None or self._can_prepare()
        self.label_panel.set_features_available(not busy and on_demand)
        reason = session.adapt_blocker(features_on_demand=on_demand)
        self.adapt_panel.set_ready(not busy and not reason and self.host.engine is not None, reason)
        if reason and not self.adapt_panel.estimates:
            self.adapt_panel.headline.setText(reason + ", then train a classifier.")
        self.host.flow.refresh()

    def _show_progress(self, text: str) -> None:
        progress = self.host.progress
        progress.setRange(0, 0)
        progress.setFormat(text)
        progress.show()

    def _say(self, text: str) -> None:
        self.host.status_text.setText(text)
