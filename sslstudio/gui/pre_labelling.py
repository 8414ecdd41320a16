"""Pre-labels from a zero-shot model (CLIP for images, a sentence encoder for texts): the dialog,
the download of the model the app offers (after a yes), and accepting pre-labels. Part of
LabellingPanels; the pre-labels live in its session's Predictions."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox

from sslstudio.core.describe import describe
from sslstudio.core.labels import LabelError
from sslstudio.gui import APP_NAME
from sslstudio.gui.modalities import view_of
from sslstudio.gui.widgets.zeroshot_dialog import ZeroShotDialog


def offered_model(offer: str) -> tuple[str, str, Path | None]:
    """(title, size, folder on disk or None) of the model a pre-label dialog offers to fetch."""
    if offer == "clip":
        from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder

        return CLIP_DOWNLOAD["title"], CLIP_DOWNLOAD["size"], cached_clip_folder()
    from sslstudio.core.backbones.pretrained import TEXT_ENCODER_DOWNLOAD, cached_text_encoder

    return TEXT_ENCODER_DOWNLOAD["title"], TEXT_ENCODER_DOWNLOAD["size"], cached_text_encoder()


class PreLabelling(QObject):
    def __init__(self, panels):
        super().__init__(panels)
        self.panels = panels  # LabellingPanels
        self.dialog: ZeroShotDialog | None = None  # the last pre-label dialog
        controller = panels.host.controller
        controller.zeroshot_ready.connect(self.zero_shot_ready)
        controller.zeroshot_finished.connect(self.zero_shot_finished)
        panels.label_panel.zeroshot_requested.connect(self.zero_shot_dialog)
        panels.label_panel.accept_requested.connect(self.accept_pre_labels)

    def zero_shot_dialog(self) -> None:
        if self.panels.host.session.data_set is None or self.panels.session.labels.store is None:
            self.panels.say("Open a data folder first")
            return
        settings = getattr(self.panels.host, "settings", None)
        view = view_of(self.panels.host.session.data_set)
        # One model per kind of data: a CLIP folder cannot read texts, nor a sentence encoder images.
        key = f"zeroshot/{view.name}_model"
        remembered = str(settings.value(key, "") or "") if settings is not None else ""
        if not remembered and view.run_reads_descriptions and self.panels.selected_run is not None:
            remembered = str(self.panels.selected_run.folder.path)
        download_text = ""
        offer = view.zero_shot_download
        if offer and self.panels.host.engine is not None:
            title, size, cached = offered_model(offer)
            remembered = remembered or (str(cached) if cached else "")
            if cached is None:
                download_text = f"Download {title} ({size})…"
        dialog = ZeroShotDialog([c.name for c in self.panels.session.labels.classes()], view, remembered,
                                self.panels.host, download_text)
        dialog.offer = offer
        dialog.download_requested.connect(
            self.download_clip if offer == "clip" else lambda: self.panels.host.encoders.download("pretrained_bert"))

        def chosen(result: int) -> None:
            if result != ZeroShotDialog.DialogCode.Accepted:
                return
            model, descriptions = dialog.chosen()
            if settings is not None:
                settings.setValue(key, model)
            self.start_zero_shot(Path(model), descriptions)

        dialog.finished.connect(chosen)
        dialog.open()  # not exec(): the window keeps drawing while it is up
        self.dialog = dialog

    def model_downloaded(self, offer: str, folder: str) -> None:
        """A model the pre-label dialog offers is on disk now: the open dialog points at it."""
        dialog = self.dialog
        if dialog is not None and getattr(dialog, "offer", "") == offer:
            dialog.model.setText(folder)
            dialog.download_button.hide()

    def download_clip(self) -> None:
        """Fetch the CLIP the app offers, only after a yes; the dialog then points at it."""
        from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, download_clip

        if self.panels.host.controller.busy():
            self.panels.say("Wait for the running job to end (or stop it) first")
            return
        answer = QMessageBox.question(
            self.panels.host, APP_NAME, f"Download {CLIP_DOWNLOAD['repo']} ({CLIP_DOWNLOAD['size']}, licence "
            f"{CLIP_DOWNLOAD['licence']}) from huggingface.co into your Hugging Face cache?\n\nNothing "
            "else is sent or downloaded. Without a network, choose a CLIP folder you copied here.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.panels.host.controller.start_task("clip", download_clip)
        self.panels.show_progress("downloading CLIP…")

    def start_zero_shot(self, model: Path, descriptions: dict[str, str]) -> None:
        if self.panels.host.controller.busy():
            self.panels.say("Wait for the running job to end (or stop it) first")
            return
        if not Path(model).is_dir():
            QMessageBox.warning(self.panels.host, APP_NAME, f"{model} is not a folder: choose the model's folder.")
            return
        request = self.panels.session.zero_shot_request(model, Path(self.panels.project.data_dir), descriptions)
        self.panels.host.controller.start_zero_shot(request)
        self.panels.show_progress("zero-shot: loading the model…")

    def zero_shot_ready(self, event) -> None:
        count = self.panels.session.predictions.zero_shot_ready(event)
        self.panels.show_predictions()
        self.panels.label_panel.set_pre_labels(self.panels.session.predictions.pre_label_summary(self.accept_confidence()))
        self.panels.host.reveal(self.panels.label_panel)
        self.panels.say(f"{count} items pre-labelled: accept them above a confidence, a selection or a "
                  "group at a time (the gallery and map show them as predictions)")

    def zero_shot_finished(self, event) -> None:
        self.panels.host.progress.hide()
        if event.status != "completed":
            self.panels.say(describe(event).text)

    def accept_pre_labels(self, how: str, min_confidence: float) -> None:
        items = None
        if how in ("selected", "group"):
            selected = self.panels.host.gallery.selected_items()
            if not selected:
                self.panels.say("Select items in the gallery (or click one on the map) first")
                return
            items = selected
            if how == "group":
                if self.panels.session.item_map.groups is None:
                    self.panels.say("Find groups first")
                    return
                items = self.panels.session.item_map.unlabelled_in_group_of(selected[0])
                if items is None:
                    self.panels.say("The selected item is in no group")
                    return
        try:
            changed = self.panels.session.predictions.accept_pre_labels(min_confidence, items)
        except LabelError as error:
            self.panels.say(str(error))
            return
        self.panels.editing.show_labels()
        self.panels.say(f"{changed} pre-labels accepted (Ctrl+Z undoes)" if changed else
                  "No unlabelled item there has a pre-label that sure")

    def accept_confidence(self) -> float:
        return self.panels.label_panel.accept_confidence.value() / 100
