"""The main window's labelling and adaptation behaviour, kept apart from its training half.

Items are the gallery's rows in folder order; labels live in the project's LabelStore keyed by
path relative to the data folder. Features, groups, suggestions and predictions arrive from
jobs as arrays, re-indexed here to gallery items by those same relative paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QFileDialog, QInputDialog, QMessageBox

from sslstudio.core.run_folder import RunFolder
from sslstudio.core.labels import LabelError, LabelStore
from sslstudio.core.project_lock import ProjectLock, ProjectLocked

APP_NAME = "SSL Studio"
MAX_MAP_POINTS = 30000  # the labelling map shows every item up to this, then a sample + labels
CONFIDENCE_COLOURS = [(215, 48, 39), (252, 141, 89), (254, 224, 139), (145, 207, 96), (26, 152, 80)]


def _rgb(colour: str) -> tuple[int, int, int]:
    c = QColor(colour)
    return c.red(), c.green(), c.blue()


class LabellingMixin:
    def init_labelling(self) -> None:
        self.item_keys: list[str] = []
        self.item_index: dict[str, int] = {}
        self.label_of = np.zeros(0, np.int64)
        self.labelling_run: Path | None = None
        self.features: np.ndarray | None = None  # aligned to gallery items (NaN rows: missing)
        self.groups: np.ndarray | None = None
        self.predicted: np.ndarray | None = None
        self.margin: np.ndarray | None = None
        self.adapted_path: Path | None = None
        self._adapt_classes: tuple = ()
        self._selected_run = None

    def connect_labelling(self) -> None:
        c = self.controller
        c.features_ready.connect(self._features_ready)
        c.adapt_started.connect(self._adapt_started)
        c.adapt_progress.connect(self._adapt_progress)
        c.adapt_estimate.connect(self.adapt_panel.show_estimate)
        c.adapt_predictions.connect(self._adapt_predictions)
        c.adapt_finished.connect(self._adapt_finished)
        c.result.connect(self._task_result)
        p = self.label_panel
        p.prepare_requested.connect(self.prepare_labelling)
        p.add_requested.connect(self.add_class_dialog)
        p.rename_requested.connect(self.rename_class_dialog)
        p.recolour_requested.connect(self.recolour_class_dialog)
        p.delete_requested.connect(self.delete_class)
        p.find_groups_requested.connect(self.find_groups)
        p.label_group_requested.connect(self.label_selected_group)
        p.suggest_requested.connect(self.suggest)
        self.adapt_panel.train_requested.connect(self.train_classifier)
        self.adapt_panel.compare_requested.connect(self.compare_methods)

    # -- project and data ---------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.release_project()
        self.project = project
        read_only, reason = False, ""
        try:
            self.project_lock = ProjectLock.acquire(project.path)
        except ProjectLocked as locked:
            read_only, reason = True, str(locked)
        except OSError as error:
            read_only, reason = True, f"the project folder cannot be written ({error.strerror or error})"
        if read_only:
            self.log.add(f"project opened read-only: {reason}")
            QMessageBox.warning(self, APP_NAME, f"{reason[0].upper() + reason[1:]}.\n\nIt opens here "
                                "read-only: you can look at its runs and labels, but labels cannot "
                                "be changed until the other window closes it.")
        try:
            self.label_store = LabelStore.for_project(project.path, read_only, reason)
        except Exception as error:  # noqa: BLE001 - a broken label file must not stop the project
            self.label_store = None
            QMessageBox.warning(self, APP_NAME, f"Cannot open the labels of {project.path}: {error}")
        self.labelling_run = None
        self.features = self.groups = self.predicted = self.margin = None
        self.refresh_labels()

    def release_project(self) -> None:
        """Close the labels and let another window have the project."""
        if self.label_store is not None:
            self.label_store.close()
            self.label_store = None
        if self.project_lock is not None:
            self.project_lock.release()
            self.project_lock = None

    def data_changed(self) -> None:
        from sslstudio.core.data import item_keys

        self.item_keys = item_keys(self.data_set) if self.data_set is not None else []
        self.item_index = {k: i for i, k in enumerate(self.item_keys)}
        self.features = self.groups = self.predicted = self.margin = None
        self.refresh_labels()

    def clear_labelling_map(self) -> None:
        self.features = self.groups = None
        for name in ("Colour by your labels", "Colour by predicted class", "Colour by confidence"):
            self.map.set_item_colouring(name, None)
        self.map.set_item_colouring("Colour by group", None)
        self.update_labelling_actions()

    # -- labels -------------------------------------------------------------------------------
    def refresh_labels(self) -> None:
        store = self.label_store
        classes = store.classes() if store else []
        if store and self.item_keys:
            self.label_of, _ = store.label_array(self.item_keys)
        else:
            self.label_of = np.full(len(self.item_keys), -1, np.int64)
        colours = [QColor(c.colour) for c in classes]
        self.gallery.set_labels(self.label_of, [c.name for c in classes], colours)
        counts = store.counts() if store else {}
        self.label_panel.set_classes(classes, counts)
        if len(self.map.indices):
            self.map.set_item_colouring("Colour by your labels", self.label_of,
                                        [_rgb(c.colour) for c in classes])
        self.update_labelling_actions()

    def label_items(self, items, class_id: int | None = None, use_current: bool = True) -> int:
        if self.label_store is None or not self.item_keys:
            return 0
        if use_current:
            class_id = self.label_panel.current_class_id()
            if class_id < 0:
                self.status_text.setText("Add a class in the Labels panel first")
                self.labels_dock.raise_()
                return 0
        keys = [self.item_keys[int(i)] for i in items if 0 <= int(i) < len(self.item_keys)]
        try:
            changed = self.label_store.assign(keys, class_id)
        except LabelError as error:
            self.status_text.setText(str(error))
            return 0
        self.refresh_labels()
        if changed:
            self.status_text.setText(self.label_store.undo_text().capitalize() + " (Ctrl+Z undoes)")
        return changed

    def label_key_pressed(self, number: int) -> None:
        items = self.gallery.selected_items()
        if not items or self.label_store is None:
            return
        if number == 0:
            self.label_items(items, None, use_current=False)
            return
        classes = self.label_store.classes()
        if number > len(classes):
            self.status_text.setText(f"There is no class {number}; add classes in the Labels panel")
            return
        self.label_items(items, classes[number - 1].id, use_current=False)

    def label_from_menu(self, position: int) -> None:
        items = self.gallery.selected_items()
        if position < 0:
            self.label_items(items, None, use_current=False)
        else:
            self.label_key_pressed(position + 1)

    def label_lassoed(self, items) -> None:
        self.label_items(items)

    def undo_label(self) -> None:
        if self.label_store is not None and self.label_store.can_undo():
            self._undo_step("Undone: ", self.label_store.undo)

    def redo_label(self) -> None:
        if self.label_store is not None and self.label_store.can_redo():
            self._undo_step("Redone: ", self.label_store.redo)

    def _undo_step(self, prefix: str, step) -> None:
        try:
            self.status_text.setText(prefix + step())
        except LabelError as error:
            self.status_text.setText(str(error))
        self.refresh_labels()

    def add_class_dialog(self) -> None:
        if self.label_store is None:
            QMessageBox.information(self, APP_NAME, "Open a folder first; labels belong to its project.")
            return
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok:
            self._label_action(lambda: self.label_store.add_class(name))

    def rename_class_dialog(self, class_id: int) -> None:
        current = next((c for c in self.label_store.classes() if c.id == class_id), None)
        if current is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", "New name:", text=current.name)
        if ok:
            self._label_action(lambda: self.label_store.rename_class(class_id, name))

    def recolour_class_dialog(self, class_id: int) -> None:
        current = next((c for c in self.label_store.classes() if c.id == class_id), None)
        if current is None:
            return
        colour = QColorDialog.getColor(QColor(current.colour), self, f"Colour of {current.name}")
        if colour.isValid():
            self._label_action(lambda: self.label_store.recolour_class(class_id, colour.name()))

    def delete_class(self, class_id: int) -> None:
        current = next((c for c in self.label_store.classes() if c.id == class_id), None)
        if current is None:
            return
        count = self.label_store.counts().get(class_id, 0)
        if count and QMessageBox.question(
                self, APP_NAME, f"Delete class {current.name} and remove its {count} labels? "
                "(Edit > Undo brings them back)") != QMessageBox.StandardButton.Yes:
            return
        self._label_action(lambda: self.label_store.delete_class(class_id))

    def _label_action(self, action) -> None:
        try:
            action()
        except LabelError as error:
            QMessageBox.warning(self, APP_NAME, str(error))
        self.refresh_labels()

    def import_labels_dialog(self) -> None:
        if self.label_store is None or self.data_set is None:
            QMessageBox.information(self, APP_NAME, "Open the folder the labels refer to first.")
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import labels", str(Path.home()),
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.import_labels(Path(path))

    def import_labels(self, path: Path) -> None:
        try:
            report = self.label_store.import_csv(path, Path(self.data_set.root), self.item_keys)
        except LabelError as error:
            QMessageBox.warning(self, APP_NAME, str(error))
            return
        self.refresh_labels()
        self.log.add(f"labels from {path}: {report.summary()}")
        if report.unknown_paths or report.bad_rows:
            box = QMessageBox(QMessageBox.Icon.Information, "Labels imported", report.summary(),
                              parent=self)
            box.setDetailedText("\n".join(list(report.unknown_paths[:200]) + list(report.bad_rows[:200])))
            box.open()
            self._import_box = box
        else:
            self.status_text.setText(report.summary())

    def export_labels_dialog(self) -> None:
        if self.label_store is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", str(Path.home() / "labels.csv"),
                                              "CSV files (*.csv)")
        if path:
            try:
                count = self.label_store.export_csv(Path(path))
            except OSError as error:
                QMessageBox.warning(self, APP_NAME, f"Cannot write {path}: {error.strerror or error}")
                return
            self.status_text.setText(f"{count} labels written to {path} (paths relative to the data folder)")

    # -- features, groups, suggestions --------------------------------------------------------
    def run_selected_for_labelling(self, summary) -> None:
        self._selected_run = summary
        usable = summary.folder.has_checkpoint()
        if self.labelling_run is not None and self.features is not None:
            text = f"Labelling with {self.labelling_run.name}."
        else:
            text = (f"Selected run: {summary.name}." if usable
                    else f"Run {summary.name} has no checkpoint yet.")
        self.label_panel.set_encoder(text, self.features is not None)
        self.update_labelling_actions()

    def prepare_labelling(self) -> None:
        summary = self._selected_run
        if summary is None or self.data_set is None or self.controller.busy():
            return
        if not summary.folder.has_checkpoint():
            QMessageBox.information(self, APP_NAME, f"Run {summary.name} has no checkpoint yet; "
                                    "train it (or let it save one) first.")
            return
        self.labelling_run = summary.path
        self.predicted = self.margin = None
        self.gallery.set_predictions(None, None, None)
        self.controller.start_labelling(summary.path, Path(self.project.data_dir))
        self._show_progress("embedding every item…")

    def _features_ready(self, event) -> None:
        self.progress.hide()
        n = len(self.item_keys)
        rows = np.array([self.item_index.get(str(k), -1) for k in event.items], np.int64)
        found = rows >= 0
        features = np.full((n, event.features.shape[1]), np.nan, np.float32)
        features[rows[found]] = event.features[found]
        coords = np.zeros((n, 2), np.float32)
        coords[rows[found]] = event.coords[found]
        self.features = features
        self.groups = None
        shown = np.sort(rows[found])
        if len(shown) > MAX_MAP_POINTS:
            rng = np.random.default_rng(0)
            sample = rng.choice(shown, MAX_MAP_POINTS, replace=False)
            shown = np.union1d(sample, np.flatnonzero(self.label_of >= 0))
        folder = np.asarray(self.data_set.labels)[shown]
        self.map.class_names = tuple(self.data_set.class_names)
        self.map.show_snapshot(shown, coords[shown], folder)
        self.map.status.setText(f"{len(shown):,} items embedded by {self.labelling_run.name}")
        self.refresh_labels()
        self.map.set_item_colouring("Colour by your labels", self.label_of,
                                    [_rgb(c.colour) for c in self.label_store.classes()],
                                    show=True)
        self.tabs.setCurrentWidget(self.map)
        self.label_panel.set_encoder(f"Labelling with {self.labelling_run.name}: every item embedded.",
                                     True)
        self.labels_dock.raise_()
        self._restore_latest_predictions()
        self.update_labelling_actions()

    def _usable_rows(self) -> np.ndarray:
        return np.flatnonzero(~np.isnan(self.features[:, 0]))

    def find_groups(self, k: int) -> None:
        if self.features is None or self.controller.busy():
            return
        rows = self._usable_rows()
        features = self.features[rows]

        def discover(features, k):
            from sslstudio.core.adapt.selection import kmeans, suggest_k

            k = k or suggest_k(features)
            return rows, k, kmeans(features, k)[0]

        self.controller.start_task("groups", discover, features, k)
        self._show_progress("finding groups…")

    def suggest(self, count: int) -> None:
        if self.features is None or self.controller.busy():
            return
        labelled = np.flatnonzero(self.label_of >= 0)
        if self.margin is not None:
            from sslstudio.core.adapt.selection import least_confident

            picks = least_confident(self.margin, labelled, count)
            self.gallery.show_suggestions(picks)
            self.status_text.setText(f"{len(picks)} items the classifier is least sure of")
            return
        rows = self._usable_rows()
        position = np.full(len(self.item_keys), -1)
        position[rows] = np.arange(len(rows))
        labelled_rows = position[labelled]
        features = self.features[rows]

        def pick(features, labelled_rows, count):
            from sslstudio.core.adapt.selection import suggest_to_label

            return rows[suggest_to_label(features, labelled_rows[labelled_rows >= 0], count)]

        self.controller.start_task("suggest", pick, features, labelled_rows, count)
        self._show_progress("choosing what to label…")

    def _task_result(self, kind: str, value) -> None:
        self.progress.hide()
        if kind == "groups":
            rows, k, clusters = value
            groups = np.full(len(self.item_keys), -1, np.int64)
            groups[rows] = clusters
            self.groups = groups
            self.map.set_item_colouring("Colour by group", groups, show=True)
            self.status_text.setText(f"{k} groups found; select an item and label its whole group, "
                                     "then fix the mistakes")
            self.label_panel.k.setValue(k)
        elif kind == "download":
            name, path = value
            self.setup.mark_downloaded(name, path)
            self.status_text.setText(f"Weights of {name} downloaded: {path}")
        elif kind == "try" and self.export_dialog is not None:
            result, neighbours = value
            self.export_dialog.show_try_result(result, neighbours, self._thumbnail_by_name)
        elif kind == "suggest":
            self.gallery.show_suggestions(value)
            self.data_dock.raise_()
            self.status_text.setText(f"{len(value)} typical items from regions without labels: "
                                     "label them with keys 1-9")

    def label_selected_group(self) -> None:
        if self.groups is None:
            QMessageBox.information(self, APP_NAME, "Find groups first.")
            return
        items = self.gallery.selected_items()
        if not items:
            QMessageBox.information(self, APP_NAME, "Select an item of the group in the gallery "
                                    "(or click it on the map) first.")
            return
        group = self.groups[items[0]]
        if group >= 0:
            # Labels the user gave one by one stay; the group fills in the rest.
            self.label_items(np.flatnonzero((self.groups == group) & (self.label_of < 0)))

    # -- adaptation ---------------------------------------------------------------------------
    def _adapt_request(self, method: str, overrides: dict):
        from sslstudio.core.adapt.job import AdaptRequest

        classes = self.label_store.classes()
        return AdaptRequest(self.labelling_run, Path(self.project.data_dir),
                            self.label_store.label_names(), method, overrides,
                            class_order=tuple(c.name for c in classes))

    def train_classifier(self, method: str, overrides: dict) -> None:
        if not self._can_adapt():
            return
        self.adapt_panel.clear_results(comparing=False)
        self.controller.start_adapt(self._adapt_request(method, overrides))
        self._show_progress(f"{method}: preparing…")

    def compare_methods(self, overrides: dict) -> None:
        if not self._can_adapt():
            return
        self.adapt_panel.clear_results(comparing=True)
        self.controller.start_adapt(self._adapt_request("linear", {}), list(overrides), overrides)
        self._show_progress("comparing methods…")

    def _can_adapt(self) -> bool:
        return (self.labelling_run is not None and self.label_store is not None
                and not self.controller.busy())

    def _adapt_started(self, event) -> None:
        self._adapt_classes = tuple(event.class_names)
        self.adapt_panel.show_started(event)
        self.classifier_dock.raise_()

    def _adapt_progress(self, event) -> None:
        self.progress.show()
        self.progress.setRange(0, max(1, event.total))
        self.progress.setValue(event.done)
        phase = getattr(event, "phase", "features")
        method = getattr(event, "method", "")
        self.progress.setFormat(f"{method} {phase} %v / %m".strip())

    def _adapt_predictions(self, event) -> None:
        names = [self._adapt_classes[p] for p in event.predicted]
        self._show_predictions(event.items, names, event.confidence, event.margin)

    def _show_predictions(self, items, names, confidence, margin) -> None:
        """Predictions (item key, class name) onto the gallery and the map, by the store's classes."""
        classes = self.label_store.classes()
        position = {c.name: i for i, c in enumerate(classes)}
        n = len(self.item_keys)
        predicted = np.full(n, -1, np.int64)
        confidence_by_item = np.zeros(n, np.float32)
        margin_by_item = np.ones(n, np.float32)
        for key, name, conf, marg in zip(items, names, confidence, margin):
            row = self.item_index.get(str(key), -1)
            if row >= 0:
                predicted[row] = position.get(name, -1)
                confidence_by_item[row] = conf
                margin_by_item[row] = marg
        self.predicted, self.margin = predicted, margin_by_item
        self.gallery.set_predictions(predicted, confidence_by_item, margin_by_item)
        self.map.set_item_colouring("Colour by confidence",
                                    np.minimum((confidence_by_item * 5).astype(np.int64), 4),
                                    CONFIDENCE_COLOURS)
        self.map.set_item_colouring("Colour by predicted class", predicted,
                                    [_rgb(c.colour) for c in classes], show=True)

    def _restore_latest_predictions(self) -> None:
        """The last classifier adapted from this run, shown again: nothing is lost on close."""
        models = [m for m in RunFolder(self.labelling_run).adapted_models()
                  if m.predictions_path.exists()]
        if not models:
            return
        latest = models[-1]
        try:
            saved = latest.predictions()
            # The file keeps the top probability only; it orders "least confident" as well.
            self._show_predictions(saved.items, saved.labels, saved.confidence, saved.confidence)
            estimate = latest.estimate()
        except (OSError, ValueError, KeyError):
            return
        self.adapted_path = latest.path
        self.adapt_panel.clear_results(comparing=False)
        self.adapt_panel.show_estimate(estimate)
        self.status_text.setText(f"Showing the predictions of {latest.path.name}, the last classifier "
                                 f"adapted from {self.labelling_run.name}")

    def _adapt_finished(self, event) -> None:
        self.progress.hide()
        if event.status == "completed" and event.path:
            self.adapted_path = Path(event.path)
            self.status_text.setText(f"Classifier saved in {event.path}; gallery filter "
                                     "'Least confident first' shows what to review")
        else:
            self.status_text.setText(f"{event.method} {event.status}"
                                     + (f": {event.message}" if event.message else ""))

    def _show_progress(self, text: str) -> None:
        self.progress.setRange(0, 0)
        self.progress.setFormat(text)
        self.progress.show()

    # -- export -------------------------------------------------------------------------------
    def open_export_dialog(self) -> None:
        from sslstudio.gui.widgets.export_dialog import ExportDialog

        if self.project is None:
            QMessageBox.information(self, APP_NAME, "Open a folder and train a run first.")
            return
        sources = []
        runs = [r for r in self.project.runs() if r.folder.has_checkpoint()]
        for run in runs:
            for model in reversed(run.folder.adapted_models()):  # newest first
                sources.append((f"Classifier {model.path.name} (on run {run.name})", model.path, True))
        for run in runs:
            sources.append((f"Encoder of run {run.name} ({run.objective} on {run.backbone})", run.path, False))
        if not sources:
            QMessageBox.information(self, APP_NAME, "There is nothing to export yet: train a run "
                                    "(and, for a classifier, label items and train one).")
            return
        if self.export_dialog is None:
            self.export_dialog = ExportDialog(self)
            self.export_dialog.export_requested.connect(self._export_requested)
            self.export_dialog.try_requested.connect(self._try_requested)
            self.controller.export_event.connect(self.export_dialog.show_event)
            self.controller.busy_changed.connect(lambda busy: self.export_dialog.set_busy(busy))
        self.export_dialog.set_sources(sources, self.project.path / "exports")
        self.export_dialog.set_busy(self.controller.busy())
        self.export_dialog.show()
        self.export_dialog.raise_()

    def _export_requested(self, request) -> None:
        if self.controller.busy():
            self.export_dialog.show_failure("Another job is running; stop it or wait, then export.")
            return
        if request.data_dir is None and self.project is not None and self.project.data_dir:
            request.data_dir = Path(self.project.data_dir)
        self.controller.start_export(request)

    def _try_requested(self, model_path: str, image_path: str) -> None:
        if self.controller.busy():
            return
        data_dir = Path(self.project.data_dir) if self.project and self.project.data_dir else None

        def try_model(model_path, image_path, data_dir):
            from sslstudio.core.export import nearest_items, run_exported

            result = run_exported(Path(model_path), Path(image_path))
            neighbours = []
            if not result["info"]["class_names"] and data_dir is not None:
                neighbours = nearest_items(Path(model_path), data_dir, result["output"])
            return result, neighbours

        self.controller.start_task("try", try_model, model_path, image_path, data_dir)

    def _thumbnail_by_name(self, name: str):
        index = self.item_index.get(name)
        return self._thumbnail_for(index) if index is not None and self.data_set else None

    # -- state --------------------------------------------------------------------------------
    def update_labelling_actions(self) -> None:
        if not hasattr(self, "undo_action"):
            return
        store = self.label_store
        self.undo_action.setEnabled(bool(store and store.can_undo()))
        self.redo_action.setEnabled(bool(store and store.can_redo()))
        self.undo_action.setText(f"&Undo {store.undo_text()}" if store and store.can_undo() else "&Undo")
        self.redo_action.setText(f"&Redo {store.redo_text()}" if store and store.can_redo() else "&Redo")
        busy = self.controller.busy()
        has_data = self.data_set is not None and store is not None
        self.import_labels_action.setEnabled(has_data)
        self.export_model_action.setEnabled(self.project is not None and not busy)
        self.export_labels_action.setEnabled(store is not None)
        run = self._selected_run
        self.label_panel.prepare_button.setEnabled(
            not busy and has_data and run is not None
            and run.folder.has_checkpoint())
        counts = np.bincount(self.label_of[self.label_of >= 0]) if len(self.label_of) else np.zeros(0)
        classes_labelled = int((counts > 0).sum())
        if self.features is None:
            reason = "Prepare labelling with a run first (Labels panel)"
        elif classes_labelled < 2:
            reason = "Label items of at least two classes"
        else:
            reason = ""
        self.adapt_panel.set_ready(not busy and not reason and self.engine is not None, reason)
        if reason and not self.adapt_panel.estimates:
            self.adapt_panel.headline.setText(reason + ", then train a classifier.")
