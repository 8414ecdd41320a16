"""A text folder tokenized once into one array (N, max_length): the text counterpart of the
image cache, with the same small interface (len, labels, class_names, paths, batch).

Only that array grows with the folder: texts are cut as they are read, the tokenizer learns from
a bounded sample, lengths are measured on bounded prefixes, and a large folder's texts stay in
their files (see text_folder)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslstudio.core.data.scan import DataError
from sslstudio.core.events import ScanProgress
from sslstudio.core.tokenizer import CHARS_PER_TOKEN, token_lengths
from sslstudio.core.tokenizer import READ_BLOCK, take
from sslstudio.core.data.text_folder import load_text_folder
from sslstudio.core.run.folder import RunFolder
from sslstudio.core.tokenizer import configure, encode_all, load_tokenizer, train_tokenizer, vocab_of
from sslstudio.core.fileio import atomic_write_text

CPU_MAX_LENGTH = 128
GPU_MAX_LENGTH = 256
# The tokenizer learns its vocabulary from at most this many characters, drawn at random from
# the whole folder. A vocabulary of some thousands of pieces is settled by a few million words;
# training on all of a large folder took minutes and memory that grew with it.
TOKENIZER_SAMPLE_CHARS = 16 * 2**20


@dataclass
class TokenizedTexts:
    folder: object  # TextFolderData
    ids: np.ndarray  # uint16 (int32 for a vocabulary over 65536) (N, max_length), [PAD] = 0
    max_length: int
    modality: str = "text"
    grey: bool = False

    def __len__(self) -> int:
        return len(self.folder.texts)

    @property
    def root(self) -> Path:
        return self.folder.root

    @property
    def items(self) -> Sequence[str]:
        return self.folder.items

    @property
    def texts(self) -> Sequence[str]:
        return self.folder.texts

    @property
    def paths(self) -> Sequence[Path]:
        return self.folder.paths

    @property
    def labels(self) -> np.ndarray:
        return self.folder.labels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.folder.class_names

    @property
    def report(self):
        return self.folder.report

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def batch(self, indices: np.ndarray):
        import torch  # here, not at the top: datasets load (and are measured) without torch

        return torch.from_numpy(self.ids[np.asarray(indices)].astype(np.int64))


def auto_max_length(tokenizer, texts: Sequence[str], device_type: str) -> int:
    """Long enough for 95% of the texts, in steps of 8, within what the device trains well."""

    ceiling = CPU_MAX_LENGTH if device_type == "cpu" else GPU_MAX_LENGTH
    # Counting past the ceiling changes nothing, and would tokenize long documents whole.
    lengths = token_lengths(tokenizer, texts, max_chars=ceiling * CHARS_PER_TOKEN)
    wanted = int(np.percentile(lengths, 95)) if len(lengths) else 32
    return int(min(max(16, -(-wanted // 8) * 8), ceiling))


def tokenizer_sample(texts: Sequence[str], budget: int | None = None, seed: int = 0
                     ) -> Iterable[str]:
    """What the tokenizer trains on: every text of a folder within TOKENIZER_SAMPLE_CHARS, in
    order; else a seeded random draw of texts up to that many characters."""
    budget = TOKENIZER_SAMPLE_CHARS if budget is None else budget
    if isinstance(texts, list) and sum(map(len, texts)) <= budget:
        return texts
    return _random_texts(texts, budget, seed)


def _random_texts(texts: Sequence[str], budget: int, seed: int) -> Iterator[str]:
    order = np.random.default_rng(seed).permutation(len(texts))
    taken = 0
    for start in range(0, len(order), READ_BLOCK):
        for text in take(texts, np.sort(order[start:start + READ_BLOCK])):
            yield text
            taken += len(text)
            if taken >= budget:
                return


def load_text_data(data_dir: Path, text_field: str, labels_from_folders: bool, run_dir: Path,
                   tokenizer_kind: str = "wordpiece", vocab_size: int = 8000, max_length: int = 0,
                   device_type: str = "cpu", control=None) -> Iterator:
    """Scan, then tokenize with the run's tokenizer.json (trained on the folder and saved there
    when the run has none yet). Returns (TokenizedTexts, tokenizer, vocab)."""

    folder = yield from load_text_folder(Path(data_dir), text_field, labels_from_folders, control)
    tokenizer_path = RunFolder(run_dir).tokenizer_path
    if tokenizer_path.exists():
        tokenizer = load_tokenizer(tokenizer_path)
        padding = tokenizer.padding
        max_length = max_length or (padding or {}).get("length") or 0
    else:
        yield ScanProgress(0, len(folder.texts), 0, "", f"training a {tokenizer_kind} tokenizer on")
        tokenizer = train_tokenizer(tokenizer_sample(folder.texts), tokenizer_kind, vocab_size)
    if not max_length:
        max_length = auto_max_length(tokenizer, folder.texts, device_type)
    configure(tokenizer, max_length)
    try:
        vocab = vocab_of(tokenizer)
    except ValueError as error:
        raise DataError(f"{tokenizer_path}: {error}") from None
    if not tokenizer_path.exists():
        Path(run_dir).mkdir(parents=True, exist_ok=True)

        atomic_write_text(tokenizer_path, tokenizer.to_str())
    encoding = encode_all(tokenizer, folder.texts)
    try:
        while True:
            done, total = next(encoding)
            yield ScanProgress(done, total, 0, "", "tokenizing")
            if control is not None:
                control.checkpoint()
    except StopIteration as stop:
        ids = stop.value
    return TokenizedTexts(folder, ids, max_length), tokenizer, vocab
