"""How the app presents each kind of data: the one place where the window's image and text
differences are declared (the engine's live in `core.modalities`). Widgets ask the view of the
data set they show instead of comparing modality names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from sslstudio.core.data.image_folder import load_image_folder
from sslstudio.core.data.lazy_images import LAZY_FROM
from sslstudio.core.data.text_folder import load_text_folder


def _load_images(folder: Path, thumbnail_size: int, cache_dir: Path | None, control) -> Iterator:
    # Past LAZY_FROM files the gallery's thumbnails are made as they are shown.
    return (yield from load_image_folder(folder, thumbnail_size, labels_from_folders=True,
                                         cache_dir=cache_dir, control=control, lazy_from=LAZY_FROM))


def _load_texts(folder: Path, thumbnail_size: int, cache_dir: Path | None, control) -> Iterator:
    return (yield from load_text_folder(folder, labels_from_folders=True, control=control))


@dataclass(frozen=True)
class ModalityView:
    name: str
    item_noun: str  # "images", "texts"
    textual: bool  # items read as text (a list of snippets), not seen as thumbnails (a grid)
    weights_in_folder: bool  # pretrained weights come as a model folder rather than one file
    image_knobs: bool  # image size and augmentation strength apply
    text_knobs: bool  # the text encoder's shape and tokenizer apply
    load: Callable  # (folder, thumbnail size, cache folder, control) -> a generator of the data set
    # Zero-shot pre-labels: the model folders that read these items and text alike, how a bare
    # class name is put into words, whether a run of this kind reads class descriptions itself,
    # and which model the app offers to fetch after a yes ("clip" or "text", the sentence encoder).
    zero_shot_models: str = ""
    zero_shot_template: str = "{}"
    run_reads_descriptions: bool = False
    zero_shot_download: str = ""


VIEWS = {
    "image": ModalityView("image", "images", textual=False, weights_in_folder=False,
                          image_knobs=True, text_knobs=False, load=_load_images,
                          zero_shot_models="a CLIP model folder (Hugging Face layout: config.json, "
                                           "model.safetensors, tokenizer.json)",
                          zero_shot_template="a photo of a {}.", zero_shot_download="clip"),
    "text": ModalityView("text", "texts", textual=True, weights_in_folder=True,
                         image_knobs=False, text_knobs=True, load=_load_texts,
                         zero_shot_models="a sentence-encoder folder such as all-MiniLM-L6-v2, or "
                                          "a text run of this project",
                         run_reads_descriptions=True, zero_shot_download="text"),
}


def view_of(data_set) -> ModalityView:
    """The view of a loaded data set (image folders predate the attribute: image)."""
    return VIEWS[getattr(data_set, "modality", "image")]
