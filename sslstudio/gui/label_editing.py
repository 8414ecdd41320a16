"""Labelling items and editing classes: keys, the gallery's menu, the map's lasso, undo and redo,
and labels in and out as CSV. Part of LabellingPanels; the labels live in its session's
LabelBook."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import QColorDialog, QFileDialog, QInputDialog, QMessageBox

from sslstudio.core.labels import LabelError
from sslstudio.gui import APP_NAME
from sslstudio.gui.actions import make_action


def rgb(colour: str) -> tuple[int, int, int]:
    value = QColor(colour)
    return value.red(), value.green(), value.blue()


class LabelEditing(QObject):
    def __init__(self, panels):
        super().__init__(panels)
        self.panels = panels  # LabellingPanels
        self.import_box: QMessageBox | None = None  # the last import's report, while it is open
        host = panels.host
        self.undo_action = make_action(host, "&Undo", self.undo_label, QKeySequence.StandardKey.Undo)
        self.redo_action = make_action(host, "&Redo", self.redo_label, QKeySequence.StandardKey.Redo)
        self.import_labels_action = make_action(
            host, "&Import labels (CSV)…", self.import_labels_dialog,
            tip="path,label rows; paths absolute or relative to the data folder")
        self.export_labels_action = make_action(host, "&Export labels (CSV)…", self.export_labels_dialog)
        host.gallery.label_key.connect(self.label_key_pressed)
        host.gallery.label_class.connect(self.label_from_menu)
        host.map.points_lassoed.connect(self.label_lassoed)
        p = panels.label_panel
        p.class_list.currentItemChanged.connect(self._label_target_changed)
        p.add_requested.connect(self.add_class_dialog)
        p.rename_requested.connect(self.rename_class_dialog)
        p.recolour_requested.connect(self.recolour_class_dialog)
        p.delete_requested.connect(self.delete_class)

    def update_actions(self, labels, has_data: bool) -> None:
        can_undo, can_redo = labels.can_undo(), labels.can_redo()
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setText(f"&Undo {labels.undo_text()}" if can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {labels.redo_text()}" if can_redo else "&Redo")
        self.import_labels_action.setEnabled(has_data)
        self.export_labels_action.setEnabled(labels.store is not None)

    def refresh_labels(self) -> None:
        """Show the labels as the store holds them now, also after it was changed directly."""
        self.panels.session.labels.reload_labels()
        self.show_labels()

    def show_labels(self) -> None:
        session = self.panels.session
        classes = session.labels.classes()
        self.panels.host.gallery.set_labels(session.labels.label_of, [c.name for c in classes],
                                     [QColor(c.colour) for c in classes])
        self.panels.label_panel.set_classes(classes, session.labels.counts())
        self.panels.label_panel.set_pre_labels(session.predictions.pre_label_summary(self.panels.pre_labels.accept_confidence()))
        self._label_target_changed()
        if len(self.panels.host.map.indices):
            self.panels.host.map.set_item_colouring("Colour by your labels", session.labels.label_of,
                                             [rgb(c.colour) for c in classes],
                                             names=[c.name for c in classes])
        self.panels.update_actions()

    def label_items(self, items, class_id: int | None = None, use_current: bool = True) -> int:
        if self.panels.session.labels.store is None or not self.panels.session.labels.item_keys:
            return 0
        if use_current:
            class_id = self.panels.label_panel.current_class_id()
            if class_id < 0:
                self.panels.say("Add a class in the Labels panel first")
                self.panels.host.reveal(self.panels.label_panel)
                return 0
        try:
            changed = self.panels.session.labels.label(items, class_id)
        except LabelError as error:
            self.panels.say(str(error))
            return 0
        self.show_labels()
        if changed:
            self.panels.say(self.panels.session.labels.undo_text().capitalize() + " (Ctrl+Z undoes)")
        return changed

    def label_key_pressed(self, number: int) -> None:
        items = self.panels.host.gallery.selected_items()
        if not items or self.panels.session.labels.store is None:
            return
        if number == 0:
            self.label_items(items, None, use_current=False)
            return
        classes = self.panels.session.labels.classes()
        if number > len(classes):
            self.panels.say(f"There is no class {number}; add classes in the Labels panel")
            return
        self.label_items(items, classes[number - 1].id, use_current=False)

    def label_from_menu(self, position: int) -> None:
        items = self.panels.host.gallery.selected_items()
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
            self.panels.host.map.colour_by.setCurrentText("Colour by your labels")

    def _label_target_changed(self, *_args) -> None:
        chosen = self.panels.session.labels.class_by_id(self.panels.label_panel.current_class_id())
        self.panels.host.map.set_label_target(chosen.name if chosen is not None else "")

    def undo_label(self) -> None:
        self._undo_step("Undone: ", self.panels.session.labels.undo)

    def redo_label(self) -> None:
        self._undo_step("Redone: ", self.panels.session.labels.redo)

    def _undo_step(self, prefix: str, step) -> None:
        try:
            done = step()
        except LabelError as error:
            self.panels.say(str(error))
        else:
            if done is None:
                return
            self.panels.say(prefix + done)
        self.show_labels()

    def add_class_dialog(self) -> None:
        if self.panels.session.labels.store is None:
            QMessageBox.information(self.panels.host, APP_NAME,
                                    "Open a folder first; labels belong to its project.")
            return
        name, ok = QInputDialog.getText(self.panels.host, "Add class", "Name of the new class:")
        if ok:
            self._label_action(lambda: self.panels.session.labels.add_class(name))

    def add_folder_classes(self, names: tuple[str, ...]) -> None:
        """The folder's subfolder names as classes (those not there yet), in their order."""
        if self.panels.session.labels.store is None:
            return
        have = {c.name for c in self.panels.session.labels.classes()}

        def add_all():
            for name in names:
                if name not in have:
                    self.panels.session.labels.add_class(name)

        self._label_action(add_all)

    def rename_class_dialog(self, class_id: int) -> None:
        current = self.panels.session.labels.class_by_id(class_id)
        if current is None:
            return
        name, ok = QInputDialog.getText(self.panels.host, "Rename class", "New name:", text=current.name)
        if ok:
            self._label_action(lambda: self.panels.session.labels.rename_class(class_id, name))

    def recolour_class_dialog(self, class_id: int) -> None:
        current = self.panels.session.labels.class_by_id(class_id)
        if current is None:
            return
        colour = QColorDialog.getColor(QColor(current.colour), self.panels.host, f"Colour of {current.name}")
        if colour.isValid():
            self._label_action(lambda: self.panels.session.labels.recolour_class(class_id, colour.name()))

    def delete_class(self, class_id: int) -> None:
        current = self.panels.session.labels.class_by_id(class_id)
        if current is None:
            return
        count = self.panels.session.labels.counts().get(class_id, 0)
        if count and QMessageBox.question(
                self.panels.host, APP_NAME, f"Delete class {current.name} and remove its {count} labels? "
                "(Edit > Undo brings them back)") != QMessageBox.StandardButton.Yes:
            return
        self._label_action(lambda: self.panels.session.labels.delete_class(class_id))

    def _label_action(self, action) -> None:
        try:
            action()
        except LabelError as error:
            QMessageBox.warning(self.panels.host, APP_NAME, str(error))
        self.show_labels()

    def import_labels_dialog(self) -> None:
        if self.panels.session.labels.store is None or self.panels.host.session.data_set is None:
            QMessageBox.information(self.panels.host, APP_NAME, "Open the folder the labels refer to first.")
            return
        path, _ = QFileDialog.getOpenFileName(self.panels.host, "Import labels", str(Path.home()),
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.import_labels(Path(path))

    def import_labels(self, path: Path) -> None:
        try:
            report = self.panels.session.labels.import_csv(path, Path(self.panels.host.session.data_set.root))
        except LabelError as error:
            QMessageBox.warning(self.panels.host, APP_NAME, str(error))
            return
        self.show_labels()
        self.panels.host.log.add(f"labels from {path}: {report.summary()}")
        if report.unknown_paths or report.bad_rows:
            box = QMessageBox(QMessageBox.Icon.Information, "Labels imported", report.summary(),
                              parent=self.panels.host)
            box.setDetailedText("\n".join(list(report.unknown_paths[:200])
                                          + list(report.bad_rows[:200])))
            box.open()
            self.import_box = box
        else:
            self.panels.say(report.summary())

    def export_labels_dialog(self) -> None:
        if self.panels.session.labels.store is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.panels.host, "Export labels",
                                              str(Path.home() / "labels.csv"), "CSV files (*.csv)")
        if path:
            try:
                count = self.panels.session.labels.export_csv(Path(path))
            except OSError as error:
                QMessageBox.warning(self.panels.host, APP_NAME,
                                    f"Cannot write {path}: {error.strerror or error}")
                return
            self.panels.say(f"{count} labels written to {path} (paths relative to the data folder)")
