"""A tokenizer trained on the user's folder with Hugging Face `tokenizers`, saved in the run as
tokenizer.json and used by every later step (embedding, adaptation, export).

Every sequence is [CLS] tokens [SEP], padded with [PAD] (id 0) to the run's max length, so a
batch is one int64 array and the encoder finds padding by id alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID = 0
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TextVocab:
    """What objectives need to know about the vocabulary."""

    size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        return max(self.special_ids) + 1


def train_tokenizer(texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = 8000):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                            min_frequency=2, show_progress=False)
    elif kind == "bpe":
        # Byte-level BPE: any text encodes without [UNK], case and accents kept.
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose wordpiece or bpe")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def configure(tokenizer, max_length: int):
    """[CLS] ... [SEP], truncated and padded to `max_length` (the same in training and export)."""
    from tokenizers.processors import TemplateProcessing

    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = TemplateProcessing(single="[CLS] $A [SEP]",
                                                  special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]", length=max_length)
    return tokenizer


def vocab_of(tokenizer) -> TextVocab:
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    if ids["[PAD]"] != PAD_ID or None in ids.values():
        raise ValueError("the tokenizer lacks SSL Studio's special tokens ([PAD] must be id 0)")
    return TextVocab(tokenizer.get_vocab_size(), ids["[PAD]"], ids["[UNK]"], ids["[CLS]"],
                     ids["[SEP]"], ids["[MASK]"])


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def token_lengths(tokenizer, texts: list[str], sample: int = 2000, seed: int = 0) -> np.ndarray:
    """Token counts (with [CLS] and [SEP]) of a sample of texts, before any truncation."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(texts), min(sample, len(texts)), replace=False)
    saved_truncation, saved_padding = tokenizer.truncation, tokenizer.padding
    tokenizer.no_truncation()
    tokenizer.no_padding()
    try:
        return np.array([len(e.ids) for e in tokenizer.encode_batch([texts[i] for i in picks])])
    finally:
        if saved_truncation:
            tokenizer.enable_truncation(**{k: v for k, v in saved_truncation.items()
                                           if k in ("max_length", "stride", "strategy", "direction")})
        if saved_padding:
            tokenizer.enable_padding(**{k: v for k, v in saved_padding.items()
                                        if k in ("direction", "pad_id", "pad_type_id", "pad_token",
                                                 "length", "pad_to_multiple_of")})


def encode_all(tokenizer, texts: list[str], chunk: int = 2048) -> Iterator:
    """Token ids (N, max_length) int32 of every text; yields (done, total) as it goes."""
    parts = []
    for start in range(0, len(texts), chunk):
        encodings = tokenizer.encode_batch(texts[start:start + chunk])
        parts.append(np.array([e.ids for e in encodings], np.int32))
        yield min(len(texts), start + chunk), len(texts)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.int32)


def save_tokenizer_unpadded(source: Path, target: Path) -> None:
    """Copy a model's tokenizer without its padding and truncation length, so the run picks a
    length from its own texts (sentence-transformers ships 128 for texts often under 50)."""
    from sslstudio.core.fileio import atomic_write_text

    tokenizer = load_tokenizer(source)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    atomic_write_text(Path(target), tokenizer.to_str())
