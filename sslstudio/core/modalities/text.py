"""Texts: token ids through the run's tokenizer (trained on the folder, or a BERT folder's own)."""

from __future__ import annotations



import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch

from sslstudio.core.backbones.bert import BertShape, is_model_folder
from sslstudio.core.backbones.lexical import DIMS_BESIDE_PRETRAINED, DIMS_BESIDE_WORD_VECTORS
from sslstudio.core.backbones.text_transformer import TextShape
from sslstudio.core.backbones.word_vectors import WORD_VECTORS
from sslstudio.core.control import run_to_end
from sslstudio.core.data.text_folder import load_text_folder
from sslstudio.core.data.text_tokens import load_text_data
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.run.folder import TOKENIZER_FILE
from sslstudio.core.tokenizer import (
    PAD_ID,
    configure,
    take,
    load_tokenizer,
    save_tokenizer_unpadded,
    vocab_of,
)

from sslstudio.core.preprocess import (
    PREPROCESSES,
    Preprocess,
    PreprocessError,
)


@PREPROCESSES.register("text")
@dataclass
class TextPreprocess(Preprocess):
    """Token ids through the run's tokenizer. The encoder is either the app's own Transformer
    (its vocabulary size, layers, width and heads) or a BERT model folder (its config.json)."""

    modality: ClassVar[str] = "text"
    input_name: ClassVar[str] = "input_ids"
    item_noun: ClassVar[str] = "texts"
    # From scratch on a CPU, skip-gram word vectors learn in minutes what a Transformer does not
    # (bench/quality.py); a pretrained encoder is continued with SimCSE, since skip-gram trains an
    # encoder of its own.
    default_objective: ClassVar[str] = "skipgram"
    continuing_objective: ClassVar[str] = "simcse"
    student_backbone: ClassVar[str] = WORD_VECTORS
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
    # Word vectors and pretrained BERT (LexicalPart): hashed TF-IDF buckets in the features
    # (0: none), reduced by an SVD of the folder's to this many (0: raw buckets).
    lexical_buckets: int = 0
    lexical_dims: int = 0

    @classmethod
    def _from_table(cls, table: dict) -> "TextPreprocess":
        bert = table.get("architecture") == "bert"
        return cls(int(table["max_length"]), table.get("text_field", "text"),
                   tuple(table.get("class_names", ())),
                   0 if bert else int(table.get("vocab_size", 0)), int(table.get("layers", 0)),
                   int(table.get("width", 0)), int(table.get("heads", 0)),
                   table.get("bert_config", "") if bert else "", dict(table.get("pretrained", {})),
                   table.get("tokenizer", TOKENIZER_FILE), int(table.get("lexical_buckets", 0)),
                   int(table.get("lexical_dims", 0)))

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
            table["lexical_dims"] = self.lexical_dims
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

    def reread(self, data, indices, folder):
        texts = take(data.texts, np.asarray(indices))
        encodings = self.tokenizer(folder).encode_batch(list(texts))
        return torch.tensor([e.ids for e in encodings], dtype=torch.int64)

    def string_inputs(self, strings, folder):
        tokenizer = self.tokenizer(folder)
        # A piece alone is a few tokens: padding it to the full length would cost 10x.
        encodings = tokenizer.encode_batch(list(strings))
        width = max(2, max(sum(1 for i in e.ids if i != PAD_ID) for e in encodings))
        return torch.tensor([e.ids[:width] for e in encodings], dtype=torch.int64)

    def vocabulary_strings(self, folder):
        tokenizer = load_tokenizer(Path(folder) / self.tokenizer_file)
        return [tokenizer.id_to_token(i) or "" for i in range(tokenizer.get_vocab_size())]

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
            lexical = cls._lexical_part(config, run, resume, DIMS_BESIDE_PRETRAINED)
            return (cls(bert_config=config_json, pretrained={"folder": str(config.weights)},
                        **lexical, **common), config.weights)
        vocab = cls._vocab(run)
        cpu = device.type == "cpu"
        # Two cores train a 2 x 128 encoder ~16x faster than BERT-mini's 4 x 256: in five minutes
        # that is 20 epochs of a 13,000-text folder instead of 1.
        # An objective may ask for its own width (distillation's static student: its teacher's).
        width = (config.text_width or getattr(OBJECTIVES.get(config.objective), "text_width", 0)
                 or (128 if cpu else 384))
        # Averaged word vectors have no layers or heads, only a width.
        attention = backbone != WORD_VECTORS
        preprocess = cls(vocab_size=vocab.size,
                         layers=(config.text_layers or (2 if cpu else 6)) if attention else 0,
                         width=width,
                         heads=(config.text_heads or max(1, width // 64)) if attention else 0,
                         **({} if attention else cls._lexical_part(config, run, resume,
                                                                   DIMS_BESIDE_WORD_VECTORS)),
                         **common)
        return preprocess, config.weights or None

    @staticmethod
    def _lexical_part(config, run, resume: bool, default_dims: int) -> dict:
        """A resumed run keeps the features it started with: runs from before the lexical part
        recorded none, and their checkpoints hold no bucket weights; runs from before its SVD
        kept the raw buckets."""
        if not resume:
            return {"lexical_buckets": config.lexical_buckets,
                    "lexical_dims": (config.lexical_dims or default_dims) if config.lexical_buckets else 0}
        try:
            table = run.preprocess_table()
            return {"lexical_buckets": int(table.get("lexical_buckets", 0)),
                    "lexical_dims": int(table.get("lexical_dims", 0))}
        except (OSError, ValueError):
            return {"lexical_buckets": 0, "lexical_dims": 0}

    def encoder_shape(self):
        if self.bert_config:
            return BertShape(self.bert_config, self.max_length, self.lexical_buckets,
                             self.lexical_dims)

        return TextShape(self.vocab_size, self.max_length, self.layers, self.width, self.heads,
                         lexical_buckets=self.lexical_buckets, lexical_dims=self.lexical_dims)

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
                         heads=self.heads)
        facts.update(lexical_buckets=self.lexical_buckets, lexical_dims=self.lexical_dims)
        return facts


def is_text_model_folder(weights: str) -> bool:
    return bool(weights) and is_model_folder(weights)
