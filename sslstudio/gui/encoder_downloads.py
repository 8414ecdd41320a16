"""Pretrained encoders: the dialog that lists them (size, source, licence) and the download of
one, only after the user's yes."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox

from sslstudio.gui import APP_NAME
from sslstudio.gui.widgets.encoders_dialog import EncodersDialog

# What the pretrained-encoders dialog offers besides the image backbones: the text encoder (the
# backbone a text run starts from) and CLIP (zero-shot pre-labels, not a backbone).
TEXT_ENCODER = "pretrained_bert"
CLIP_OFFER = "clip"


class EncoderDownloads(QObject):
    def __init__(self, host):
        super().__init__(host)
        self.host = host  # the main window
        self.dialog: EncodersDialog | None = None

    def show(self) -> None:
        if self.host.engine is None:
            self.host.status_text.setText("The training engine is still loading; try again in a moment.")
            return
        if self.dialog is None:
            from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder  # torch: on use

            clip = cached_clip_folder()
            offers = {**self.host.engine["backbones"], CLIP_OFFER: (
                CLIP_DOWNLOAD["title"], "image",
                {"offer": f"{CLIP_DOWNLOAD['title']}: pre-labels images from class names, no labels needed",
                 "hub": CLIP_DOWNLOAD["repo"], "megabytes": CLIP_DOWNLOAD["megabytes"], "source": "OpenAI",
                 "licence": CLIP_DOWNLOAD["licence"], "cached": str(clip) if clip else ""})}
            self.dialog = EncodersDialog(offers, self.download, self.host)
        self.dialog.show()
        self.dialog.raise_()

    def download(self, name: str) -> None:
        """Fetch a pretrained encoder's standard weights (an image backbone's file, or the text
        encoder's folder), only after the user agrees. CLIP has its own question."""
        from sslstudio.core.backbones.pretrained import (  # torch: on use
            PRETRAINED,
            TEXT_ENCODER_DOWNLOAD,
            download_text_encoder,
            download_weights,
        )

        if name == CLIP_OFFER:
            self.host.labelling.pre_labels.download_clip()
            return
        if name not in PRETRAINED and name != TEXT_ENCODER or self.host.controller.busy():
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
            self.host, APP_NAME, f"Download {what} from huggingface.co into your Hugging Face cache?\n\n"
            "Nothing else is sent or downloaded. Without a network, pick a weights file instead.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.host.controller.start_task("download", fetch, name)
        self.host.progress.setRange(0, 0)
        self.host.progress.setFormat(f"downloading {short}…")
        self.host.progress.show()

    def downloaded(self, name: str, path: str) -> None:
        """A download finished: every place that offers the encoder finds it on disk."""
        self.host.setup.mark_downloaded(name, path)
        if self.dialog is not None:
            self.dialog.mark_on_disk(name)
        if name == TEXT_ENCODER:
            self.host.labelling.pre_labels.model_downloaded("text", path)
        self.host.status_text.setText(f"Weights of {name} downloaded: {path}")
