"""How a run's encoder reads an item: one type per modality.

A `Preprocess` knows its modality's input (the image side and the normalisation, or the
tokenizer and the sequence length), loads a folder the way the run reads it, turns a batch of
items into model inputs, rebuilds the encoder's shape, describes the input for an export, and
writes and reads its own table of `config.toml`. Embedding, the monitor, adaptation, export and
Try-it all go through it, so a modality's differences live here and nowhere else.

The modalities are in `core/modalities/`, one file each. Adding one: a file there that subclasses
`Preprocess`, registers it with `@PREPROCESSES.register(name)` and its files' suffixes with
`register_file_kind`, and names the objectives it trains with (`adopts_objectives`, or objectives
of its own); and a backbone file that reads it (`register_backbone(..., modality=name)`).
`tests/test_third_modality.py` adds a folder of .npy vectors that way.
"""

from __future__ import annotations


from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch

from sslstudio.core.backbones import build_backbone
from sslstudio.core.control import RunControl
from sslstudio.core.registry import Registry
from sslstudio.core.run.folder import TOKENIZER_FILE


class Preprocess:
    modality: ClassVar[str] = ""
    input_name: ClassVar[str] = ""  # the exported model's input
    item_noun: ClassVar[str] = "items"  # what the user calls its items: "images", "texts"
    default_objective: ClassVar[str] = ""  # from scratch
    continuing_objective: ClassVar[str] = ""  # from a pretrained encoder
    # A continued encoder's learning rate as a share of the heads' (unless the run sets
    # backbone_lr_scale): small, so that it keeps what it knows when no labels judge it.
    continuing_lr_scale: ClassVar[float] = 0.1
    student_backbone: ClassVar[str] = ""  # a distillation's student when the backbone is auto: small and fast
    # Whether the form offers a pretrained encoder already on disk as the CPU's default: for
    # images it beat training from scratch on every dev set; for texts it did not.
    pretrained_by_default_on_cpu: ClassVar[bool] = False
    # Objectives written for another kind of data that train on this one through what it hands
    # them (SimCLR needs only an `augment` that makes two views of a batch).
    adopts_objectives: ClassVar[tuple[str, ...]] = ()
    class_names: tuple[str, ...] = ()

    @staticmethod
    def from_table(table: dict) -> "Preprocess":
        """The preprocessing a run or an adapted model saved (its `[preprocess]` table)."""
        # Image runs were saved before the table named its modality.
        return PREPROCESSES.get(table.get("modality", "image"))._from_table(table)

    @staticmethod
    def of_export(info: dict) -> "Preprocess":
        """The preprocessing an exported model's NAME.json describes (files beside the model)."""
        table = {**info["preprocess"], "mean": info["input"].get("mean", [0.0] * 3),
                 "std": info["input"].get("std", [1.0] * 3),
                 "tokenizer": info.get("files", {}).get("tokenizer", TOKENIZER_FILE),
                 "class_names": info.get("class_names", [])}
        return Preprocess.from_table(table)

    @classmethod
    def _from_table(cls, table: dict) -> "Preprocess":
        raise NotImplementedError

    def to_table(self) -> dict:
        raise NotImplementedError

    def for_features(self) -> "Preprocess":
        """How items are read for the run's features (embed, adapt, export) rather than for
        training: the same, unless training ran at a smaller size than the encoder reads best."""
        return self

    def features_cost(self) -> float:
        """What encoding an item for its features costs against encoding it for training."""
        return 1.0

    def feature_items(self, data, indices: np.ndarray):
        """A dataset batch of `indices` as `for_features()` reads them (the training data holds
        items as training reads them)."""
        return data.batch(indices)

    def reread(self, data, indices: np.ndarray, folder: Path):
        """Items of `data`, a dataset another preprocessing of this modality read (a student's),
        as this one reads them: what a teacher encodes. `folder` holds this one's files."""
        raise NotImplementedError

    def string_inputs(self, strings: list[str], folder: Path) -> torch.Tensor:
        """Short strings as model inputs (a static student's vocabulary through a text
        teacher); only modalities of strings have it."""
        raise PreprocessError(f"{self.modality} encoders do not read strings")

    def teacher_view_crops(self, count: int, seed: int) -> torch.Tensor | None:
        """`count` seeded crops (affine maps relative to the item) for a teacher's further views
        of items, which its student is shown again at its own size; None where the modality
        has no such views (texts: a word's meaning does not survive a crop)."""
        return None

    def cropped(self, inputs: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """Model inputs, each cropped by its map from `teacher_view_crops`, at the same size."""
        raise PreprocessError(f"{self.modality} items have no crops")

    def vocabulary_strings(self, folder: Path) -> list[str] | None:
        """The strings of the encoder's vocabulary, by id, where its inputs are ids of pieces
        (a text run's tokenizer); None elsewhere."""
        return None

    def encoder_shape(self):
        """What `build_backbone` needs to rebuild the encoder: an image side or a text shape."""
        raise NotImplementedError

    def load(self, data_dir: Path, folder: Path, control: RunControl,
             labels_from_folders: bool = False) -> Iterator:
        """The data folder as the encoder reads it (use `yield from`; it yields scan progress).
        `folder` is the run or adapted model folder the preprocessing belongs to."""
        raise NotImplementedError

    def training_inputs(self, batch: torch.Tensor, device) -> torch.Tensor:
        """A dataset batch on the device, as objectives and adapters take it (before
        normalisation, which augmentation comes first)."""
        raise NotImplementedError

    def normalised(self, inputs: torch.Tensor) -> torch.Tensor:
        """Training inputs as the encoder reads them in eval."""
        raise NotImplementedError

    def model_inputs(self, batch: torch.Tensor, device) -> torch.Tensor:
        return self.normalised(self.training_inputs(batch, device))

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The memory layout the model runs fastest in for this input."""
        return model

    def export_normalisation(self) -> tuple[list[float] | None, list[float] | None]:
        """(mean, std) the exported graph applies itself, or (None, None)."""
        return None, None

    def export_description(self, files: dict) -> tuple[dict, dict]:
        """The exported model's input and how to prepare it: (input, preprocess) of NAME.json."""
        raise NotImplementedError

    def export_files(self, folder: Path) -> dict[str, str]:
        """Files an export carries beside the model, by role ("tokenizer"): their text."""
        return {}

    def folder_inputs(self, data_dir: Path, count: int, folder: Path,
                      wanted: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Exported-model inputs for up to `count` items spread over the folder (or the `wanted`
        item keys), prepared exactly as the app prepares them; returns (inputs, item keys)."""
        raise NotImplementedError

    def file_input(self, path: Path, folder: Path) -> tuple[np.ndarray, dict]:
        """One file (Try it) as an exported-model input of batch 1, and what to show of it."""
        raise NotImplementedError

    def adaptation_augment(self, strength: float, grey: bool, device, seed: int):
        """The augmentation fine-tuning applies to training inputs."""
        raise NotImplementedError

    # -- pretraining: how a run of this modality is set up --------------------------------------
    @classmethod
    def default_backbone(cls, config, device) -> str:
        raise NotImplementedError

    @classmethod
    def load_training_data(cls, config, backbone: str, device, run, control) -> Iterator:
        """The folder decoded (or tokenized) for training; returns the dataset (`yield from`)."""
        raise NotImplementedError

    @classmethod
    def for_training(cls, config, backbone: str, data, run, resume: bool, device):
        """(preprocessing, weights file to start from or None) for a run on `data`."""
        raise NotImplementedError

    def build_encoder(self, config, backbone: str, weights):
        return build_backbone(backbone, self.encoder_shape(), weights)

    def make_objective(self, objective_cls, encoder, objective_config, config, data, run, device,
                       generator: torch.Generator):
        """The objective with what it draws its views from (augmentation, or the vocabulary
        for masking), all random draws from `generator` so that a resumed run repeats them."""
        raise NotImplementedError

    def plan_facts(self) -> dict:
        """This modality's part of the run plan (resolution, or sequence length and vocabulary)."""
        raise NotImplementedError

    def activation_bytes_per_item(self, views: int) -> int:
        """About how much memory one item's activations take in a training step (0: not
        estimated, the batch is not limited by it)."""
        return 0

    def inference_batch(self, device, requested: int) -> int:
        """How many items to encode at once (features, predictions): on a CPU, as many as keep a
        batch's activations near INFERENCE_ACTIVATION_BUDGET."""
        per_item = self.activation_bytes_per_item(views=1)
        if device.type != "cpu" or not per_item:
            return requested
        return int(max(16, min(requested, INFERENCE_ACTIVATION_BUDGET // per_item)))


PREPROCESSES: Registry[type[Preprocess]] = Registry("modality")


def objective_modalities(objective_cls) -> tuple[str, ...]:
    """The kinds of data an objective trains on: those it names, then those that adopt it."""
    adopted = tuple(m for m in PREPROCESSES.names()
                    if objective_cls.name in PREPROCESSES.get(m).adopts_objectives)
    return tuple(dict.fromkeys(tuple(objective_cls.modalities) + adopted))


INFERENCE_ACTIVATION_BUDGET = 256 << 20


class PreprocessError(ValueError):
    """The preprocessing cannot be applied (a missing tokenizer, an unreadable file)."""


# The modalities register themselves on import; after the base, which they subclass.
from sslstudio.core import modalities  # noqa: E402,F401
