"""How a run's encoder reads an item: one type per modality.

A `Preprocess` knows its modality's input (the image side and the normalisation, or the
tokenizer and the sequence length), loads a folder the way the run reads it, turns a batch of
items into model inputs, rebuilds the encoder's shape, describes the input for an export, and
writes and reads its own table of `config.toml`. Embedding, the monitor, adaptation, export and
Try-it all go through it, so a modality's differences live here and nowhere else.

Adding a modality: subclass `Preprocess`, register it with `@PREPROCESSES.register(name)`, and
give the objectives and backbones that read it `modalities`/`modality` of that name.
"""

from __future__ import annotations

import dataclasses

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch
from PIL import Image

from sslstudio.core.backbones import BACKBONES, build_backbone
from sslstudio.core.backbones.bert import BertShape, is_model_folder
from sslstudio.core.backbones.pretrained import cached_weights
from sslstudio.core.backbones.text_transformer import TextShape
from sslstudio.core.backbones.word_vectors import WORD_VECTORS
from sslstudio.core.control import RunControl, run_to_end
from sslstudio.core.data import load_image_folder
from sslstudio.core.data.augment import (
    AugmentSettings,
    BatchAugment,
    normalize,
    to_float,
)
from sslstudio.core.data.image_folder import typical_side
from sslstudio.core.data.images import IMAGE_EXTENSIONS, SkipItem, decode_image
from sslstudio.core.data.scan import DataError, list_folder
from sslstudio.core.data.text_folder import load_text_folder
from sslstudio.core.data.text_tokens import load_text_data
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.registry import Registry
from sslstudio.core.run.folder import TOKENIZER_FILE, RunFolder
from sslstudio.core.tokenizer import (
    configure,
    load_tokenizer,
    save_tokenizer_unpadded,
    vocab_of,
)


class Preprocess:
    modality: ClassVar[str] = ""
    input_name: ClassVar[str] = ""  # the exported model's input
    item_noun: ClassVar[str] = "items"  # what the user calls its items: "images", "texts"
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
INFERENCE_ACTIVATION_BUDGET = 256 << 20
# Pixels a CPU encodes at once. Small batches stay in the caches: 10,240 images through the
# small CNN on two cores, at 64 px: 2,200 images/s in batches of 16, 2,600 at 32 (this budget),
# 1,500 at 64, 1,100 at 512 (which held 460 MB more at its peak); at 28 px: 11,800 at 64, 8,200
# at 167 (this budget), 7,800 at 512.
INFERENCE_PIXELS_CPU = 32 * 64 * 64


class PreprocessError(ValueError):
    """The preprocessing cannot be applied (a missing tokenizer, an unreadable file)."""


@PREPROCESSES.register("image")
@dataclass
class ImagePreprocess(Preprocess):
    modality: ClassVar[str] = "image"
    input_name: ClassVar[str] = "image"
    item_noun: ClassVar[str] = "images"
    image_size: int = 0
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    grey: bool = False
    class_names: tuple[str, ...] = ()
    pretrained: dict = field(default_factory=dict)  # where pretrained weights came from
    # The size features are read at, when it is not the training size: a pretrained encoder
    # trained on a CPU at 96 px still reads best at its own 224 (bench/quality.py).
    feature_size: int = 0

    RESIZE: ClassVar[str] = "shorter side to image_size, then centre crop"

    @classmethod
    def _from_table(cls, table: dict) -> "ImagePreprocess":
        return cls(int(table["image_size"]), [float(v) for v in table["mean"]],
                   [float(v) for v in table["std"]], bool(table.get("grey", False)),
                   tuple(table.get("class_names", ())), dict(table.get("pretrained", {})),
                   int(table.get("feature_size", 0)))

    def to_table(self) -> dict:
        table = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                 "channel_order": "RGB", "resize": self.RESIZE, "grey": self.grey,
                 "class_names": list(self.class_names)}
        if self.pretrained:
            table["pretrained"] = dict(self.pretrained)
        if self.feature_size and self.feature_size != self.image_size:
            table["feature_size"] = self.feature_size
        return table

    def for_features(self) -> "ImagePreprocess":
        if not self.feature_size or self.feature_size == self.image_size:
            return self
        return dataclasses.replace(self, image_size=self.feature_size, feature_size=0)

    def inference_batch(self, device, requested: int) -> int:
        if device.type != "cpu":
            return requested
        return int(max(16, min(requested, INFERENCE_PIXELS_CPU // max(1, self.image_size ** 2))))

    def features_cost(self) -> float:
        # A convnet's cost grows with the pixels it reads.
        features = self.for_features()
        return (features.image_size / self.image_size) ** 2 if features is not self else 1.0

    def feature_items(self, data, indices):
        size = self.for_features().image_size
        if size == data.image_size:
            return data.batch(indices)
        images = []
        for index in indices:
            try:
                images.append(decode_image(Path(data.paths[index]), size)[0])
            except (SkipItem, OSError):
                # Changed or gone since the scan: the training copy, enlarged, stands in.
                images.append(np.asarray(Image.fromarray(data.images[index]).resize(
                    (size, size), Image.BILINEAR)))
        return torch.from_numpy(np.stack(images))

    def encoder_shape(self) -> int:
        return self.image_size

    def load(self, data_dir, folder, control, labels_from_folders=False) -> Iterator:
        return (yield from load_image_folder(Path(data_dir), self.image_size, labels_from_folders,
                                             cache_dir=RunFolder(folder).data_cache_dir, control=control))

    def training_inputs(self, batch, device):
        return to_float(batch.to(device, non_blocking=True))

    def normalised(self, inputs):
        mean = torch.tensor(self.mean, device=inputs.device)
        std = torch.tensor(self.std, device=inputs.device)
        return normalize(inputs, mean, std).contiguous(memory_format=torch.channels_last)

    def prepare_model(self, model):
        # channels_last is faster for convolutions on CUDA and on the CPU's oneDNN.
        return model.to(memory_format=torch.channels_last)

    def export_normalisation(self):
        return list(self.mean), list(self.std)

    def export_description(self, files):
        size = self.image_size
        model_input = {
            "name": "image", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size],
            "channel_order": "RGB", "range": [0.0, 1.0], "normalization_in_model": True,
            "mean": list(self.mean), "std": list(self.std),
        }
        preprocess = {
            "modality": "image",
            "image_size": size,
            "exif_transpose": True,
            "mode": "RGB; greyscale replicated to 3 channels; transparency composited on white",
            "jpeg_draft": f"Pillow draft('RGB', ({2 * size}, {2 * size})) before loading JPEGs",
            "resize": f"shorter side to {size} px, Pillow bilinear with reducing_gap=3.0 "
                      "(other side rounded, at least the same size)",
            "crop": f"centre {size}x{size}: left = (width - {size}) // 2, top = (height - {size}) // 2",
            "scale": "uint8 / 255",
        }
        return model_input, preprocess

    def folder_inputs(self, data_dir, count, folder, wanted=None):
        images, names = decoded_images(Path(data_dir), self.image_size, count, wanted)
        return pixels_to_input(images), names

    def file_input(self, path, folder):
        try:
            array, _ = decode_image(Path(path), self.image_size)
        except SkipItem as reason:
            raise PreprocessError(f"cannot use {Path(path).name}: {reason}") from None
        return pixels_to_input(array[None]), {"image": array}

    def adaptation_augment(self, strength, grey, device, seed):
        settings = AugmentSettings.from_strength(strength, grey, self.image_size)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        return BatchAugment(settings, torch.tensor(self.mean, device=device),
                            torch.tensor(self.std, device=device), self.image_size, generator)

    @classmethod
    def default_backbone(cls, config, device) -> str:
        if device.type == "cpu" and not config.weights:
            # An ImageNet encoder already on disk beats anything two cores train from scratch.

            if cached_weights("pretrained_efficientnet_lite0") is not None:
                return "pretrained_efficientnet_lite0"
        return "small_cnn" if device.type == "cpu" else "resnet18"

    @classmethod
    def load_training_data(cls, config, backbone, device, run, control) -> Iterator:
        # Listed once: the size is read from a spread of the listed files, and a second walk of a
        # big folder would cost as much as reopening its cache.
        listing = list_folder(Path(config.data), IMAGE_EXTENSIONS, config.labels_from_folders)
        size, reason = chosen_image_size(config, Path(config.data), device,
                                         BACKBONES.get(backbone).pretrained, listing, backbone,
                                         getattr(OBJECTIVES.get(config.objective), "views", 1))
        data = yield from load_image_folder(Path(config.data), size, config.labels_from_folders,
                                            cache_dir=run.data_cache_dir, control=control,
                                            listing=listing)
        data.plan_notes = (reason,) if reason else ()
        return data

    @classmethod
    def for_training(cls, config, backbone, data, run, resume, device):
        info = BACKBONES.get(backbone).pretrained
        weights = config.weights or None
        pretrained = {}
        if info is not None:
            # The weights' own normalisation, not the folder's: that is what they expect.
            mean, std = [float(v) for v in info.mean], [float(v) for v in info.std]
            # A resumed run's checkpoint holds the weights; the original file may be gone.
            weights = None if resume else weights or pretrained_weights_file(backbone)
            pretrained = {"architecture": info.arch, "source": info.source, "licence": info.licence,
                          "weights": str(weights) if weights else _weights_first_used(run),
                          "trained_size": info.input_size, "interpolation": info.interpolation}
        else:
            mean, std = data.channel_stats(seed=config.seed)
        # Convolutions (and timm's ViTs, with dynamic sizes) read any size: features come at the
        # weights' own size even when the CPU trains smaller.
        feature_size = info.input_size if info is not None and info.input_size > data.image_size else 0
        preprocess = cls(data.image_size, mean, std, data.grey, tuple(data.class_names), pretrained,
                         feature_size)
        return preprocess, None if resume else weights

    def build_encoder(self, config, backbone, weights):
        encoder = build_backbone(backbone, self.image_size, weights)
        if self.pretrained:
            encoder.freeze_batchnorm = config.freeze_batchnorm != "no"
        elif config.freeze_batchnorm == "yes":
            encoder.freeze_batchnorm = True
        return encoder

    def make_objective(self, objective_cls, encoder, objective_config, config, data, run, device,
                       generator):

        settings = AugmentSettings.from_strength(config.augmentation_strength, data.grey,
                                                 self.image_size)
        augment = BatchAugment(settings, self.mean, self.std, self.image_size, generator)
        augment.mean, augment.std = augment.mean.to(device), augment.std.to(device)
        return objective_cls(encoder, objective_config, augment)

    def plan_facts(self) -> dict:
        facts = {"image_size": self.image_size, "grey": self.grey}
        if self.feature_size and self.feature_size != self.image_size:
            facts["feature_size"] = self.feature_size
        return facts


@PREPROCESSES.register("text")
@dataclass
class TextPreprocess(Preprocess):
    """Token ids through the run's tokenizer. The encoder is either the app's own Transformer
    (its vocabulary size, layers, width and heads) or a BERT model folder (its config.json)."""

    modality: ClassVar[str] = "text"
    input_name: ClassVar[str] = "input_ids"
    item_noun: ClassVar[str] = "texts"
    max_length: int = 0
    text_field: str = "text"
    class_names: tuple[str, ...] = ()
    vocab_size: int = 0
    layers: int = 0
    width: int = 0
    heads: int = 0
    bert_config: str = ""  # a BERT folder's config.json, verbatim; empty for the app's own
    pretrained: dict = field(default_factory=dict)
    tokenizer_file: str = TOKENIZER_FILE  # beside the run, the adapted model or the export
    lexical_buckets: int = 0  # word vectors: hashed TF-IDF buckets in the features (0: none)

    @classmethod
    def _from_table(cls, table: dict) -> "TextPreprocess":
        bert = table.get("architecture") == "bert"
        return cls(int(table["max_length"]), table.get("text_field", "text"),
                   tuple(table.get("class_names", ())),
                   0 if bert else int(table.get("vocab_size", 0)), int(table.get("layers", 0)),
                   int(table.get("width", 0)), int(table.get("heads", 0)),
                   table.get("bert_config", "") if bert else "", dict(table.get("pretrained", {})),
                   table.get("tokenizer", TOKENIZER_FILE), int(table.get("lexical_buckets", 0)))

    def to_table(self) -> dict:
        table: dict = {"modality": "text"}
        if self.bert_config:
            table.update(architecture="bert", bert_config=self.bert_config)
            if self.pretrained:
                table["pretrained"] = dict(self.pretrained)
        else:
            table.update(vocab_size=self.vocab_size, layers=self.layers, width=self.width,
                         heads=self.heads)
            if self.lexical_buckets:
                table["lexical_buckets"] = self.lexical_buckets
        table.update(tokenizer=self.tokenizer_file, max_length=self.max_length,
                     text_field=self.text_field, class_names=list(self.class_names))
        return table

    def load(self, data_dir, folder, control, labels_from_folders=False) -> Iterator:
        data, _, _ = yield from load_text_data(Path(data_dir), self.text_field, labels_from_folders,
                                               Path(folder), max_length=self.max_length,
                                               control=control)
        return data

    def training_inputs(self, batch, device):
        return batch.to(device, non_blocking=True)

    def normalised(self, inputs):
        return inputs

    def tokenizer(self, folder: Path):
        path = Path(folder) / self.tokenizer_file
        if not path.exists():
            raise PreprocessError(f"{path} is missing: a text model needs the tokenizer it was "
                                  "trained with")
        return configure(load_tokenizer(path), self.max_length)

    def export_files(self, folder):
        return {"tokenizer": self.tokenizer(folder).to_str()}

    def export_description(self, files):
        length = self.max_length
        model_input = {"name": "input_ids", "dtype": "int64", "shape": ["batch", length],
                       "tokenizer": files.get("tokenizer", "")}
        preprocess = {
            "modality": "text", "max_length": length,
            "tokenize": f"the tokenizer file: [CLS] text [SEP], truncated and padded with [PAD] "
                        f"(id 0) to {length} tokens; the model ignores padding",
        }
        return model_input, preprocess

    def folder_inputs(self, data_dir, count, folder, wanted=None):
        texts = run_to_end(load_text_folder(Path(data_dir), self.text_field))
        if wanted is not None:
            index = {item: i for i, item in enumerate(texts.items)}
            picks = [index[w] for w in wanted if w in index]
        else:
            picks = np.unique(np.linspace(0, len(texts.items) - 1,
                                          min(count, len(texts.items))).astype(int))
        tokenizer = self.tokenizer(folder)
        encodings = tokenizer.encode_batch([texts.texts[i] for i in picks])
        return (np.array([e.ids for e in encodings], np.int64).reshape(len(picks), -1),
                [texts.items[i] for i in picks])

    def file_input(self, path, folder):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as error:
            raise PreprocessError(f"cannot read {path}: {error.strerror or error}") from None
        ids = np.array([self.tokenizer(folder).encode(text).ids], np.int64)
        return ids, {"text": text}

    def adaptation_augment(self, strength, grey, device, seed):
        return lambda ids: ids  # dropout inside the encoder is the text's augmentation

    @classmethod
    def default_backbone(cls, config, device) -> str:
        if is_text_model_folder(config.weights):
            return "pretrained_bert"
        # An objective that trains one kind of encoder (skip-gram: word vectors) names it.
        return getattr(OBJECTIVES.get(config.objective), "backbone", "") or "text_transformer"

    @classmethod
    def load_training_data(cls, config, backbone, device, run, control) -> Iterator:
        if is_text_model_folder(config.weights) and not run.tokenizer_path.exists():
            # A pretrained text encoder reads through its own tokenizer, not one trained here.

            run.path.mkdir(parents=True, exist_ok=True)
            save_tokenizer_unpadded(Path(config.weights) / TOKENIZER_FILE, run.tokenizer_path)
        data, _, _ = yield from load_text_data(
            Path(config.data), config.text_field, config.labels_from_folders, run.path,
            config.tokenizer, config.vocab_size, config.max_length, device.type, control)
        return data

    @classmethod
    def for_training(cls, config, backbone, data, run, resume, device):
        common = dict(max_length=data.max_length, text_field=config.text_field,
                      class_names=tuple(data.class_names))
        if backbone == "pretrained_bert":
            config_json = (Path(config.weights) / "config.json").read_text()
            return (cls(bert_config=config_json, pretrained={"folder": str(config.weights)}, **common),
                    config.weights)
        vocab = cls._vocab(run)
        cpu = device.type == "cpu"
        # Two cores train a 2 x 128 encoder ~16x faster than BERT-mini's 4 x 256: in five minutes
        # that is 20 epochs of a 13,000-text folder instead of 1.
        width = config.text_width or (128 if cpu else 384)
        # Averaged word vectors have no layers or heads, only a width.
        attention = backbone != WORD_VECTORS
        preprocess = cls(vocab_size=vocab.size,
                         layers=(config.text_layers or (2 if cpu else 6)) if attention else 0,
                         width=width,
                         heads=(config.text_heads or max(1, width // 64)) if attention else 0,
                         lexical_buckets=0 if attention else cls._lexical_buckets(config, run, resume),
                         **common)
        return preprocess, config.weights or None

    @staticmethod
    def _lexical_buckets(config, run, resume: bool) -> int:
        """A resumed run keeps the features it started with: runs from before the lexical part
        recorded none, and their checkpoints hold no bucket weights."""
        if not resume:
            return config.lexical_buckets
        try:
            return int(run.settings().get("preprocess", {}).get("lexical_buckets", 0))
        except (OSError, ValueError):
            return 0

    def encoder_shape(self):
        if self.bert_config:
            return BertShape(self.bert_config, self.max_length)

        return TextShape(self.vocab_size, self.max_length, self.layers, self.width, self.heads,
                         lexical_buckets=self.lexical_buckets)

    def make_objective(self, objective_cls, encoder, objective_config, config, data, run, device,
                       generator):
        objective = objective_cls(encoder, objective_config, self._vocab(run))
        objective.generator = generator  # masking draws from it: resumable like augmentation
        # Skip-gram's noise distribution and pooling weights (and through them the encoder's),
        # or the encoder's own corpus statistics; a resumed run's checkpoint then restores the
        # ones it started with.
        observe = (getattr(objective, "observe_corpus", None)
                   or getattr(encoder, "observe_corpus", None))
        if observe is not None:
            observe(data.ids)
        return objective

    @staticmethod
    def _vocab(run):
        return vocab_of(load_tokenizer(run.tokenizer_path))

    def activation_bytes_per_item(self, views: int) -> int:
        """What autograd keeps per sequence and layer: a dozen (tokens x width) tensors (inputs,
        norms, q/k/v, projections, residuals), the feed-forward's two (tokens x 4 width), and
        the attention matrices with their softmax and dropout (heads x tokens^2), in float32;
        twice that at the peak, when the backward pass holds their gradients too. Measured on
        two cores: 136 texts x 2 views x 96 tokens on a 2 x 128 encoder peaked 1.3 GB above
        the process's resting size; this gives 1.0 GB."""
        if self.bert_config:
            shape = json.loads(self.bert_config)
            layers, width = shape.get("num_hidden_layers", 6), shape.get("hidden_size", 384)
            heads = shape.get("num_attention_heads", 12)
        else:
            layers, width, heads = self.layers, self.width, self.heads
        tokens = self.max_length
        if not layers:
            # Averaged word vectors under skip-gram: per token its input and output vectors and
            # five noise pieces' output vectors, the (tokens x tokens) scores and their masks,
            # with their gradients.
            return 2 * 4 * (8 * tokens * width + 3 * tokens * tokens)
        per_layer = 14 * tokens * width + 4 * heads * tokens * tokens
        return 2 * 4 * per_layer * layers * views

    def plan_facts(self) -> dict:
        facts = {"max_length": self.max_length}
        if self.bert_config:
            facts["encoder"] = "BERT model folder"
        else:
            facts.update(vocab_size=self.vocab_size, layers=self.layers, width=self.width,
                         heads=self.heads, lexical_buckets=self.lexical_buckets)
        return facts


def decoded_images(data_dir: Path, size: int, count: int, wanted: list[str] | None = None):
    """Up to `count` images spread over the folder (or the `wanted` item keys), decoded exactly
    as the app decodes them; returns (uint8 NHWC array, item keys)."""

    if wanted is not None:
        paths = [Path(data_dir) / item for item in wanted]
    else:
        listing = list_folder(Path(data_dir), IMAGE_EXTENSIONS, False)
        picks = np.unique(np.linspace(0, len(listing.paths) - 1,
                                      min(count * 2, len(listing.paths))).astype(int))
        paths = [listing.paths[i] for i in picks]
    images, names = [], []
    for path in paths:
        if wanted is None and len(images) >= count:
            break
        try:
            array, _ = decode_image(path, size)
        except (SkipItem, OSError):
            continue
        images.append(array)
        names.append(path.relative_to(data_dir).as_posix())
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), []
    return np.stack(images), names


def pixels_to_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels as the exported model takes them: float NCHW RGB in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


# A 224 px EfficientNet trains at ~3 images/s on two cores; 96 px at ~35.
PRETRAINED_CPU_SIZE = 96


def training_image_size(config, data_root: Path, device, pretrained=None, listing=None) -> int:
    return chosen_image_size(config, data_root, device, pretrained, listing)[0]


# From scratch on a minutes budget, a step at a lower resolution costs less, and on two cores
# steps were what the from-scratch runs lacked (bench/quality.py, issue 27): the plan takes the
# largest resolution whose predicted steps reach this many (0: resolution by the images alone).
STEPS_WANTED = 0
# A training step's cost per item against one forward and backward pass of the bare encoder per
# view at a batch of 16 (augmentation, the head and the optimiser add; a large batch saves).
STEP_OVERHEAD = 1.0


def chosen_image_size(config, data_root: Path, device, pretrained=None, listing=None,
                      backbone: str = "", views: int = 1) -> tuple[int, str]:
    """The training resolution and, when a measurement chose it, why."""
    if config.image_size:
        return config.image_size, ""
    if pretrained is not None:
        # The size the weights were trained at, unless the CPU cannot afford it.
        return (pretrained.input_size if device.type != "cpu" else PRETRAINED_CPU_SIZE), ""

    side = typical_side(data_root, listing=listing)
    # Native size for small images (28 px costs 40% less than 32 px on a CPU); large photos are
    # brought down to what the device can train on in a sitting.
    ceiling = 64 if device.type == "cpu" else 128
    size = int(min(max(24, round(side / 4) * 4), ceiling))
    budget_s = 60.0 * (config.minutes or (0.0 if config.epochs else _default_minutes(device)))
    if not STEPS_WANTED or not backbone or not budget_s:
        return size, ""
    items = len(listing.paths) if listing is not None else 0
    batch = config.batch_size or max(2, min(256, items // 4))
    sizes = [s for s in (size, 48, 32) if s <= size]
    return affordable_image_size(
        sorted(set(sizes), reverse=True),
        lambda s: STEP_OVERHEAD * views * encoder_seconds_per_item(backbone, s, device),
        budget_s, batch)


def _default_minutes(device) -> float:
    from sslstudio.core.run.config import CPU_MINUTES

    return CPU_MINUTES if device.type == "cpu" else 0.0


def affordable_image_size(sizes: list[int], seconds_per_item_at, budget_s: float,
                          batch: int) -> tuple[int, str]:
    """The first of `sizes` (largest first) whose predicted steps, 90% of the budget over a
    step's measured cost, reach STEPS_WANTED; else the smallest. With the reason, when it is not
    the first."""
    predicted = {}
    for size in sizes:
        predicted[size] = int(0.9 * budget_s / max(1e-9, batch * seconds_per_item_at(size)))
        if predicted[size] >= STEPS_WANTED:
            break
    chosen = size
    if chosen == sizes[0]:
        return chosen, ""
    return chosen, (f"image size {chosen}: at {sizes[0]} px the budget buys about "
                    f"{predicted[sizes[0]]} steps of {batch} (measured here), at {chosen} px "
                    f"about {predicted[chosen]}; from scratch, steps pay more than pixels "
                    f"below {STEPS_WANTED} steps")


def encoder_seconds_per_item(backbone: str, size: int, device, batch: int = 16) -> float:
    """One forward and backward pass of a fresh `backbone` at `size` px, per item, after a warm
    pass; the global random state is left as it was."""
    import time

    rng = torch.get_rng_state()
    try:
        encoder = build_backbone(backbone, size, None).to(device).train()
        inputs = torch.rand(batch, 3, size, size, device=device)
        took = 0.0
        for _ in range(2):
            started = time.perf_counter()
            encoder(inputs).float().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            took = time.perf_counter() - started
        return took / batch
    finally:
        torch.set_rng_state(rng)


def is_text_model_folder(weights: str) -> bool:
    return bool(weights) and is_model_folder(weights)


def pretrained_weights_file(name: str) -> Path:
    found = cached_weights(name)
    if found is None:
        raise DataError(f"{name} needs its pretrained weights: pick a .safetensors or .pth file "
                        f"(--weights FILE), or download them once with `sslstudio weights download "
                        f"{name}` (nothing is downloaded without asking)")
    return found


def _weights_first_used(run) -> str:
    """Where a resumed run's pretrained weights first came from, as its config recorded."""
    try:
        return run.settings().get("preprocess", {}).get("pretrained", {}).get("weights", "")
    except (OSError, ValueError):
        return ""
