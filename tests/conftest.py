from __future__ import annotations

import os

# Under pytest-xdist each worker gets its share of the cores for torch's and numpy's threads
# (and so do the programs a test starts): two workers of two threads each on two cores spend
# their time waiting on one another. Set before numpy or torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 24,
                      seed: int = 0) -> Path:
    """Small class-per-subfolder folder whose classes differ in colour and texture."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3), np.float32)
            base[..., c % 3] = 160
            stripes = (np.arange(size) // (2 + c) % 2) * 60
            base += stripes[None, :, None] if c % 2 else stripes[:, None, None]
            noise = rng.normal(0, 20, (size, size, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def run_to_end(generator):
    """A job's return value and every event it yielded."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return stop.value, events


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def no_threads_left_behind():
    before = set(threading.enumerate())
    yield
    # QThreads that ran Python code show up as dummy threads that Python never forgets;
    # the GUI tests check those through JobWorker instead.
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and not isinstance(t, threading._DummyThread)]
    for thread in leftover:
        thread.join(timeout=5)
    leftover = [t.name for t in leftover if t.is_alive()]
    assert not leftover, f"threads outlived the test: {leftover}"


os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_text_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Two classes of short reviews with different vocabularies, as .txt files and a .jsonl."""
    rng = np.random.default_rng(seed)
    words = {"good": "great wonderful moving funny brilliant charming superb delight".split(),
             "bad": "dull boring awful tedious messy flat weak lifeless".split()}
    common = "the film story actors plot scenes director music".split()
    for label, vocabulary in words.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            picked = list(rng.choice(vocabulary, 4)) + list(rng.choice(common, 5))
            rng.shuffle(picked)
            (folder / f"{i:03d}.txt").write_text(" ".join(picked) + ".")
    return root


@pytest.fixture
def text_folder(tmp_path: Path) -> Path:
    return make_text_folder(tmp_path / "texts")


def fake_snapshot_download(hub: Path, fill, asked: list):
    """huggingface_hub.snapshot_download as it leaves the cache (the snapshot folder, filled by
    `fill`, and refs/main naming it), recording what was asked for; no network."""

    def download(repo, allow_patterns=None):
        asked.append((repo, sorted(allow_patterns)))
        root = hub / ("models--" + repo.replace("/", "--"))
        fill(root / "snapshots" / "abc")
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text("abc")
        return str(root / "snapshots" / "abc")

    return download


def make_bert_folder(folder, texts):
    """A tiny BERT model folder as Hugging Face saves one (config.json, tokenizer.json,
    model.safetensors), its tokenizer trained on `texts`; returns its state dict."""
    import json

    import torch
    from safetensors.torch import save_file

    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.backbones.bert import BertShape
    from sslstudio.core.tokenizer import train_tokenizer

    folder.mkdir(parents=True)
    tokenizer = train_tokenizer(texts, "wordpiece", 300)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"model_type": "bert", "vocab_size": tokenizer.get_vocab_size(), "hidden_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
              "pad_token_id": 0, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(1)
    model = build_backbone("pretrained_bert", BertShape(json.dumps(config), 32))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["embeddings.position_ids"] = torch.arange(64)[None]  # as Hugging Face saves it
    save_file(state, str(folder / "model.safetensors"))
    return state


def reference_lexical(ids, special: set[int], buckets: int) -> np.ndarray:
    """TF-IDF of hashed pieces and neighbouring pairs, written out text by text: sublinear term
    frequency 1 + log tf, smooth idf log((1 + n) / (1 + df)) + 1 over these texts, unit rows."""
    def bucket(key: int) -> int:
        return key * 2654435761 % buckets

    counts = np.zeros((len(ids), buckets))
    for row, text in enumerate(ids.tolist()):
        kept = [t if t not in special else None for t in text]
        for t in kept:
            if t is not None:
                counts[row, bucket(t)] += 1
        for a, b in zip(kept, kept[1:]):
            if a is not None and b is not None:
                counts[row, bucket((a * 1000003 + b) % 2147483647)] += 1
    documents = (counts > 0).sum(0)
    idf = np.log((1 + len(ids)) / (1 + documents)) + 1
    tf = np.where(counts > 0, 1 + np.log(np.maximum(counts, 1)), 0)
    weighted = tf * idf
    return weighted / np.linalg.norm(weighted, axis=1, keepdims=True)
