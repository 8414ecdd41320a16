"""A tokenizer trained on the user's folder with Hugging Face `tokenizers`, saved in the run as
tokenizer.json and used by every later step (embedding, adaptation, export).

Every sequence is [CLS] tokens [SEP], padded with [PAD] (id 0) to the run's max length, so a
batch is one int64 array and the encoder finds padding by id alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from tokenizers.processors import TemplateProcessing

from sslstudio.core.fileio import atomic_write_text

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID = 0
# A text is cut to max_length * CHARS_PER_TOKEN characters before it is encoded. The tokenizer
# tokenizes a whole text and only then truncates, at about 100 bytes a token, so an uncut long
# document costs memory for every token it has only to keep max_length of them. Prose takes 4 to
# 6 characters a token; only a run of tokens each longer than 32 characters could lose any.
CHARS_PER_TOKEN = 32
# Characters encoded in one call, which bounds encode_all's transient memory (the tokenizer's
# working copy of each token is about 100 bytes) whatever the texts and max_length.
ENCODE_CHUNK_CHARS = 2 * 2**20
# Texts fetched at a time before they are cut: a folder too large to keep its texts reads them
# back whole (up to text_files.MAX_DOCUMENT_CHARS each), so a few at a time.
READ_BLOCK = 64


@dataclass(frozen=True)
class TextVocab:
    """What objectives need to know about the vocabulary."""

    size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    # Word pieces that end a sentence (".", "!", "?" where the vocabulary has them): where
    # next-sentence prediction prefers to cut a text in two.
    sentence_end_ids: tuple[int, ...] = ()

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        return max(self.special_ids) + 1


def train_tokenizer(texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = 8000):
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
    ends = tuple(i for i in (tokenizer.token_to_id(t) for t in (".", "!", "?")) if i is not None)
    return TextVocab(tokenizer.get_vocab_size(), ids["[PAD]"], ids["[UNK]"], ids["[CLS]"],
                     ids["[SEP]"], ids["[MASK]"], ends)


def load_tokenizer(path: Path):
    return Tokenizer.from_file(str(path))


def token_lengths(tokenizer, texts: Sequence[str], sample: int = 2000, seed: int = 0,
                  max_chars: int | None = None) -> np.ndarray:
    """Token counts (with [CLS] and [SEP]) of a sample of texts, before any truncation; of their
    first `max_chars` characters when given (a caller with a length ceiling needs no more)."""
    rng = np.random.default_rng(seed)
    # Sorted: a folder too large to keep its texts reads them from disk, fastest in file order.
    picks = np.sort(rng.choice(len(texts), min(sample, len(texts)), replace=False))
    saved_truncation, saved_padding = tokenizer.truncation, tokenizer.padding
    tokenizer.no_truncation()
    tokenizer.no_padding()
    try:
        lengths = []
        for start in range(0, len(picks), READ_BLOCK):
            batch = take(texts, picks[start:start + READ_BLOCK])
            if max_chars:
                batch = [text[:max_chars] for text in batch]
            lengths.extend(len(e.ids) for e in tokenizer.encode_batch(batch))
        return np.array(lengths, dtype=np.int64)
    finally:
        if saved_truncation:
            tokenizer.enable_truncation(**{k: v for k, v in saved_truncation.items()
                                           if k in ("max_length", "stride", "strategy", "direction")})
        if saved_padding:
            tokenizer.enable_padding(**{k: v for k, v in saved_padding.items()
                                        if k in ("direction", "pad_id", "pad_type_id", "pad_token",
                                                 "length", "pad_to_multiple_of")})


def encode_all(tokenizer, texts: Sequence[str], chunk: int = 2048) -> Iterator:
    """Token ids (N, max_length) of every text; yields (done, total) as it goes.

    The array is the one thing that grows with N, so it is uint16 when the vocabulary fits (the
    default 8000 and BERT's 30522 do), half of int32, and filled in place chunk by chunk, where
    concatenating parts would briefly hold it twice."""
    total = len(texts)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 2**16 else np.int32
    truncation = tokenizer.truncation
    max_chars = truncation["max_length"] * CHARS_PER_TOKEN if truncation else None
    read = max(1, min(READ_BLOCK, ENCODE_CHUNK_CHARS // max_chars)) if max_chars else READ_BLOCK
    ids = None
    start = 0
    while start < total:
        # Up to `chunk` texts, fewer where they are long.
        batch, chars, stop = [], 0, start
        limit = min(total, start + chunk)
        while stop < limit and chars < ENCODE_CHUNK_CHARS:
            block = texts[stop:min(limit, stop + read)]
            if max_chars:
                block = [text[:max_chars] for text in block]
            batch.extend(block)
            chars += sum(map(len, block))
            stop += len(block)
        rows = np.array([e.ids for e in tokenizer.encode_batch(batch)], np.int32)
        if ids is None:
            ids = np.empty((total, rows.shape[1]), dtype)
        ids[start:stop] = rows
        yield stop, total
        start = stop
    return ids if ids is not None else np.zeros((0, 0), dtype)


def take(texts: Sequence[str], indices) -> list[str]:
    """texts[i] for each index; in one pass over the files for a folder read on demand."""
    if hasattr(texts, "take"):
        return texts.take(indices)
    return [texts[i] for i in indices]


def save_tokenizer_unpadded(source: Path, target: Path) -> None:
    """Copy a model's tokenizer without its padding and truncation length, so the run picks a
    length from its own texts (sentence-transformers ships 128 for texts often under 50)."""

    tokenizer = load_tokenizer(source)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    atomic_write_text(Path(target), tokenizer.to_str())
