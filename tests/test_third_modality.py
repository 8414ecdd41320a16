"""A third kind of data added the way docs/architecture.md says, in two files' worth of code and
nothing else: a modality (here `VectorPreprocess`, with its loader) and a backbone that reads it
(`vector_mlp`). A folder of .npy vectors is then told from images and texts, trains under SimCLR
(which the modality adopts: it hands SimCLR an augmentation), and embeds, adapts and exports
through the same CLI as images and texts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from sslstudio.core.backbones.base import BACKBONES, Backbone, register_backbone
from sslstudio.core.data.scan import (
    FILE_KINDS,
    DataError,
    ScanReport,
    detect_modality,
    list_folder,
    register_file_kind,
)
from sslstudio.core.events import ScanFinished
from sslstudio.core.preprocess import PREPROCESSES, Preprocess, PreprocessError

VECTORS = "vectors"
SUFFIXES = frozenset({".npy"})


# -- the modality's file ----------------------------------------------------------------------
@dataclasses.dataclass
class VectorData:
    """The dataset interface every loader returns: len, items, labels, batch(indices)."""

    root: Path
    items: list[str]
    vectors: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    report: ScanReport

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices) -> torch.Tensor:
        return torch.from_numpy(self.vectors[np.asarray(indices)])


def read_vector(path: Path, dim: int | None = None) -> np.ndarray:
    vector = np.load(path, allow_pickle=False).astype(np.float32).ravel()
    if dim is not None and vector.shape[0] != dim:
        raise ValueError(f"{vector.shape[0]} values, not {dim}")
    return vector


def load_vector_folder(root: Path, labels_from_folders: bool, control=None):
    listing = list_folder(Path(root), SUFFIXES, labels_from_folders)
    items, vectors, labels, skipped = [], [], [], list(listing.skipped)
    dim = None
    for path, label in zip(listing.paths, listing.labels):
        relative = path.relative_to(listing.root).as_posix()
        try:
            vector = read_vector(path, dim)
        except (OSError, ValueError) as error:
            skipped.append((relative, f"unreadable vector: {error}"))
            continue
        dim = vector.shape[0]
        items.append(relative)
        vectors.append(vector)
        labels.append(label)
    if not items:
        raise DataError(f"no .npy vectors in {root}")
    report = ScanReport(str(listing.root), len(listing.paths), len(items), listing.ignored, skipped)
    yield ScanFinished(len(listing.paths), len(items), len(skipped), report.skipped_by_reason(), 0.0)
    return VectorData(listing.root, items, np.stack(vectors), np.asarray(labels),
                      listing.class_names, report)


@dataclasses.dataclass
class VectorPreprocess(Preprocess):
    modality: ClassVar[str] = VECTORS
    input_name: ClassVar[str] = "vector"
    item_noun: ClassVar[str] = "vectors"
    default_objective: ClassVar[str] = "simclr"
    continuing_objective: ClassVar[str] = "simclr"
    adopts_objectives: ClassVar[tuple[str, ...]] = ("simclr",)
    dim: int = 0
    mean: list[float] = dataclasses.field(default_factory=list)
    std: list[float] = dataclasses.field(default_factory=list)
    class_names: tuple[str, ...] = ()

    @classmethod
    def _from_table(cls, table):
        return cls(int(table["dim"]), [float(v) for v in table["mean"]],
                   [float(v) for v in table["std"]], tuple(table.get("class_names", ())))

    def to_table(self):
        return {"modality": VECTORS, "dim": self.dim, "mean": list(self.mean),
                "std": list(self.std), "class_names": list(self.class_names)}

    def encoder_shape(self):
        return self.dim

    def load(self, data_dir, folder, control, labels_from_folders=False):
        return (yield from load_vector_folder(Path(data_dir), labels_from_folders, control))

    def training_inputs(self, batch, device):
        return batch.to(device)

    def normalised(self, inputs):
        mean = torch.tensor(self.mean, device=inputs.device)
        return (inputs - mean) / torch.tensor(self.std, device=inputs.device)

    def export_normalisation(self):
        return list(self.mean), list(self.std)

    def export_description(self, files):
        return ({"name": "vector", "dtype": "float32", "shape": ["batch", self.dim],
                 "normalization_in_model": True},
                {"modality": VECTORS, "read": "numpy.load, flattened, float32"})

    def folder_inputs(self, data_dir, count, folder, wanted=None):
        data = _run_to_end(load_vector_folder(Path(data_dir), False))
        picks = (np.array([data.items.index(w) for w in wanted if w in data.items]) if wanted
                 is not None else np.unique(np.linspace(0, len(data) - 1, min(count, len(data))).astype(int)))
        return data.vectors[picks], [data.items[i] for i in picks]

    def file_input(self, path, folder):
        try:
            vector = read_vector(Path(path), self.dim)
        except (OSError, ValueError) as error:
            raise PreprocessError(f"cannot use {Path(path).name}: {error}") from None
        return vector[None], {"vector": vector}

    def adaptation_augment(self, strength, grey, device, seed):
        return Jitter(strength, seed)

    @classmethod
    def default_backbone(cls, config, device):
        return "vector_mlp"

    @classmethod
    def load_training_data(cls, config, backbone, device, run, control):
        return (yield from load_vector_folder(Path(config.data), config.labels_from_folders, control))

    @classmethod
    def for_training(cls, config, backbone, data, run, resume, device):
        mean, std = data.vectors.mean(0), data.vectors.std(0) + 1e-6
        return cls(data.vectors.shape[1], mean.tolist(), std.tolist(), tuple(data.class_names)), None

    def make_objective(self, objective_cls, encoder, objective_config, config, data, run, device,
                       generator):
        normalise = self.normalised
        jitter = Jitter(config.augmentation_strength, generator=generator)
        return objective_cls(encoder, objective_config, lambda batch: jitter(normalise(batch)))

    def plan_facts(self):
        return {"dim": self.dim}


class Jitter:
    """Two views of a vector: Gaussian noise and dropped coordinates."""

    def __init__(self, strength: float, seed: int = 0, generator: torch.Generator | None = None):
        self.strength = strength
        self.generator = generator or torch.Generator().manual_seed(seed)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(batch.shape, generator=self.generator) * 0.3 * self.strength
        keep = torch.rand(batch.shape, generator=self.generator) > 0.2 * self.strength
        return (batch + noise.to(batch.device)) * keep.to(batch.device)


def _run_to_end(generator):
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


# -- the backbone's file ----------------------------------------------------------------------
class VectorMLP(Backbone):
    modality = VECTORS

    def __init__(self, dim: int, feature_dim: int = 32):
        super().__init__()
        self.feature_dim = feature_dim
        self.net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, feature_dim))

    def forward(self, x):
        return self.net(x)


# -- what the app does with it, unchanged -----------------------------------------------------
@pytest.fixture
def vectors_modality():
    """The two files' registrations, as importing them would make them, for this test only:
    the registries are the app's, and other tests (parametrized over every backbone) must not
    see the toy."""
    register_file_kind(VECTORS, SUFFIXES)
    PREPROCESSES.register(VECTORS)(VectorPreprocess)
    register_backbone("vector_mlp", "a two-layer MLP for feature vectors", modality=VECTORS,
                      cpu_friendly=True)(lambda dim: VectorMLP(int(dim)))
    try:
        yield
    finally:
        PREPROCESSES.unregister(VECTORS)
        BACKBONES.unregister("vector_mlp")
        FILE_KINDS.pop(VECTORS, None)


def make_vector_folder(root: Path, per_class: int = 40, dim: int = 16) -> Path:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, dim))
    for c, name in enumerate(("alpha", "beta", "gamma")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            np.save(root / name / f"{i:03d}.npy", (centres[c] + rng.normal(0, 1, dim)).astype(np.float32))
    (root / "README.txt").write_text("vectors of three kinds\n")
    (root / "alpha" / "broken.npy").write_bytes(b"not a numpy file")
    return root


def test_a_folder_of_vectors_trains_embeds_adapts_and_exports(tmp_path, vectors_modality):
    from sslstudio.cli import default_objective_for, main

    data = make_vector_folder(tmp_path / "vectors")
    assert detect_modality(data) == VECTORS
    assert default_objective_for(data) == "simclr"
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "3",
                 "--batch-size", "32", "--quiet"]) == 0
    config = (run / "config.toml").read_text()
    assert 'modality = "vectors"' in config and 'backbone = "vector_mlp"' in config
    skipped = (run / "skipped.csv").read_text()
    assert "broken.npy" in skipped  # a bad file is reported, the rest trains

    feats = tmp_path / "feats.npy"
    assert main(["embed", str(run), "--data", str(data), "--out", str(feats)]) == 0
    features = np.load(feats)
    assert features.shape == (120, 32) and np.isfinite(features).all()
    keys = feats.with_suffix(".paths.txt").read_text().splitlines()
    labels = np.array([Path(k).parent.name for k in keys])
    # Three well-separated clusters: nearest neighbours in the trained features agree.
    normed = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = normed @ normed.T
    np.fill_diagonal(similarity, -np.inf)
    assert (labels[similarity.argmax(1)] == labels).mean() > 0.9

    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("path,label\n" + "".join(
        f"{name}/{i:03d}.npy,{name}\n" for name in ("alpha", "beta", "gamma") for i in range(5)))
    adapted = tmp_path / "adapted"
    assert main(["adapt", str(run), "--data", str(data), "--labels", str(labels_csv),
                 "--out", str(adapted)]) == 0
    model = tmp_path / "export" / "vectors.onnx"
    assert main(["export", str(adapted), "--out", str(model), "--data", str(data)]) == 0
    info = json.loads(model.with_suffix(".json").read_text())
    assert info["preprocess"]["modality"] == VECTORS and info["class_names"] == ["alpha", "beta", "gamma"]

    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sample = np.load(data / "beta" / "007.npy")[None]
    outputs = session.run(None, {session.get_inputs()[0].name: sample})
    assert info["class_names"][int(np.argmax(outputs[0]))] == "beta"
