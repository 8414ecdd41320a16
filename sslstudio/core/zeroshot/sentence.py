"""Zero-shot for texts with a sentence encoder: a BERT-family model folder such as
all-MiniLM-L6-v2, or a text run of this app (its encoder and tokenizer). Texts and class
descriptions are mean-pooled the same way, so "a positive review" lands near positive reviews.

The similarities are scaled by 20 before the softmax: the scale sentence-transformers trains
such encoders with (MultipleNegativesRankingLoss), so the confidences are on the scale the
model learned its similarities at. The ranking of classes does not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from sslstudio.core.backbones import build_backbone
from sslstudio.core.backbones.bert import BertShape, is_model_folder
from sslstudio.core.data.text_folder import load_text_folder
from sslstudio.core.data.text_tokens import TokenizedTexts, auto_max_length
from sslstudio.core.events import ScanProgress
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.folder import TOKENIZER_FILE, RunFolder
from sslstudio.core.tokenizer import configure, encode_all, load_tokenizer
from sslstudio.core.zeroshot.base import ZeroShotModel, register_zero_shot_model

# Tokens read per text from a model folder: what all-MiniLM-L6-v2 was trained on (128); its
# positions allow more, at a quadratic cost, for little on reviews and statements.
FOLDER_MAX_LENGTH = 128


def _is_text_run(path: Path) -> bool:
    """A run whose items are read through a tokenizer: class descriptions can be read too."""
    folder = RunFolder(path)
    if not folder.is_run() or not folder.has_checkpoint():
        return False
    try:
        preprocess = Preprocess.from_table(folder.preprocess_table())
    except (KeyError, ValueError, TypeError):
        return False
    return callable(getattr(preprocess, "tokenizer", None))


def _is_bert_folder(path: Path) -> bool:
    if not is_model_folder(path):
        return False
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type", "bert") == "bert"
    except (OSError, ValueError):
        return False


@register_zero_shot_model("sentence")
class SentenceZeroShot(ZeroShotModel):
    modality = "text"
    default_template = "{}"
    logit_scale = 20.0

    def __init__(self, path: Path, device: torch.device):
        self.path = Path(path)
        self.device = device
        if _is_text_run(self.path):
            from sslstudio.core.embed import load_encoder

            # A description and an item are compared in the space the encoder trained, not the
            # probe's readout (beside a pretrained encoder that adds the folder's own words,
            # which a probe weighs and a cosine to a one-line description would not).
            self.encoder, self.preprocess = load_encoder(self.path, device, as_trained=True)
            self.tokenizer = self.preprocess.tokenizer(self.path)
        else:
            config = json.loads((self.path / "config.json").read_text())
            length = min(FOLDER_MAX_LENGTH, int(config.get("max_position_embeddings", 512)))
            self.preprocess = None
            self.encoder = build_backbone("pretrained_bert", BertShape(json.dumps(config), length),
                                          self.path).to(device).eval()
            self.tokenizer = configure(load_tokenizer(self.path / TOKENIZER_FILE), length)

    @classmethod
    def recognises(cls, path: Path) -> bool:
        return _is_text_run(path) or _is_bert_folder(path)

    @classmethod
    def description(cls) -> str:
        return ("for texts, a sentence-encoder folder (BERT family, e.g. all-MiniLM-L6-v2) or a "
                "text run")

    def load_items(self, data_dir: Path, control) -> Iterator:
        if self.preprocess is not None:  # the run reads the folder as it trained (its caches)
            return (yield from self.preprocess.load(Path(data_dir), self.path, control))
        # A model folder is the user's: its tokenizer is read, nothing is written beside it.
        folder = yield from load_text_folder(Path(data_dir), control=control)
        # Padding costs as much as text: as long as 95% of the folder's texts need, at most 128.
        configure(self.tokenizer, min(FOLDER_MAX_LENGTH,
                                      auto_max_length(self.tokenizer, folder.texts, self.device.type)))
        encoding = encode_all(self.tokenizer, folder.texts)
        try:
            while True:
                done, total = next(encoding)
                yield ScanProgress(done, total, 0, "", "tokenizing")
                control.checkpoint()
        except StopIteration as stop:
            ids = stop.value
        return TokenizedTexts(folder, ids, self.tokenizer.truncation["max_length"])

    def item_features(self, batch):
        return nn.functional.normalize(self.encoder(batch.to(self.device)), dim=-1)

    def text_features(self, texts):
        ids = np.array([e.ids for e in self.tokenizer.encode_batch(texts)], np.int64)
        return nn.functional.normalize(self.encoder(torch.from_numpy(ids).to(self.device)), dim=-1)
