"""The teacher of a distillation run: any encoder the app can load, frozen, reading items its own
way (its resolution and normalisation, or its own tokenizer). Its features of the folder's items
are computed once, before the student's first step, and kept in the run folder, so the budget
pays for them once and a resumed run reads them back.

What can teach: a finished run's folder (the user's own encoder), a Hugging Face BERT-family
model folder (all-MiniLM-L6-v2), a CLIP model folder (its image tower; the app downloads one
only after a yes), a pretrained image backbone by name (its weights on disk), or a weights file
of one of those architectures.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core import distributed
from sslstudio.core.backbones import BACKBONES, WeightsError, build_backbone
from sslstudio.core.backbones.bert import BertShape, is_model_folder
from sslstudio.core.zeroshot.clip import is_clip_folder
from sslstudio.core.backbones.pretrained import cached_weights
from sslstudio.core.backbones.weights import check_weights_file
from sslstudio.core.control import RunControl
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import ScanProgress
from sslstudio.core.fileio import atomic_write_bytes
from sslstudio.core.preprocess import PREPROCESSES, Preprocess
from sslstudio.core.run.folder import RunFolder

# Items the teacher encodes at once (fewer where a CPU's activation budget says so).
TEACHER_CHUNK = 64
# Text teachers read at most this many of their own tokens (all-MiniLM-L6-v2 was trained at 128).
TEACHER_MAX_LENGTH = 128


@dataclass
class Teacher:
    name: str  # as the user gave it
    description: str  # what it is, in the plan line and the export's metadata
    encoder: torch.nn.Module
    preprocess: Preprocess  # how it reads an item
    folder: Path  # where its preprocessing's files lie (a text teacher's tokenizer)

    @property
    def feature_dim(self) -> int:
        return int(self.encoder.feature_dim)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.encoder.parameters())

    @torch.inference_mode()
    def encode(self, data, indices: np.ndarray, device, crops: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Features (len(indices), D) of items of `data` (the student's dataset), each read
        again as the teacher reads it (and cropped by `crops`, one per item, where given)."""
        items = self.preprocess.reread(data, indices, self.folder)
        inputs = self.preprocess.model_inputs(items, device)
        if crops is not None:
            inputs = self.preprocess.cropped(inputs, crops.to(inputs.device))
        return self.encoder(inputs).float()

    @torch.inference_mode()
    def encode_strings(self, strings: list[str], device) -> torch.Tensor:
        """Features of short strings (a static student's vocabulary), for text teachers."""
        return self.encoder(self.preprocess.string_inputs(strings, self.folder).to(device)).float()


def load_teacher(spec: str, modality: str, device) -> Teacher:
    """The teacher `spec` names, in eval mode on `device`; a clear word when it cannot teach a
    student of `modality`."""
    spec = str(spec).strip()
    if not spec:
        raise DataError("distillation needs a teacher: a finished run's folder, a BERT model "
                        "folder, a pretrained backbone's name or its weights file (--teacher)")
    path = Path(spec).expanduser()
    if path.is_dir() and RunFolder(path).is_run():
        teacher = _run_teacher(path, device)
    elif path.is_dir() and is_clip_folder(path):
        teacher = _clip_teacher(path)
    elif path.is_dir() and is_model_folder(path):
        teacher = _bert_teacher(path)
    elif path.is_dir():
        raise DataError(f"{path} is neither a run folder (config.toml and a checkpoint) nor a "
                        "BERT or CLIP model folder (config.json, tokenizer.json and the weights)")
    elif spec in BACKBONES.names() and BACKBONES.get(spec).pretrained is not None:
        teacher = _backbone_teacher(spec, cached_weights(spec), spec)
    elif path.is_file():
        teacher = _weights_file_teacher(path)
    elif spec in BACKBONES.names():
        raise DataError(f"{spec} has no pretrained weights to teach with; name a pretrained "
                        f"backbone ({', '.join(pretrained_backbones())}), a run folder or a "
                        "model folder")
    else:
        raise DataError(f"teacher not found: {spec} (a run folder, a BERT model folder, a "
                        f"pretrained backbone such as {', '.join(pretrained_backbones()[:2])}, or "
                        "a weights file)")
    if teacher.preprocess.modality != modality:
        raise DataError(f"{spec} encodes {teacher.preprocess.modality}s and the folder holds "
                        f"{modality}s: a teacher must read what the student reads")
    teacher.encoder.requires_grad_(False)
    teacher.encoder.to(device).eval()
    return teacher


def pretrained_backbones() -> list[str]:
    return [n for n in BACKBONES.names() if BACKBONES.get(n).pretrained is not None]


def _run_teacher(path: Path, device) -> Teacher:
    from sslstudio.core.embed import load_encoder

    encoder, preprocess = load_encoder(path, device)
    backbone = RunFolder(path).read_config()[0].backbone
    return Teacher(str(path), f"the run {path.name} ({backbone})", encoder, preprocess, path)


def _bert_teacher(path: Path) -> Teacher:
    config_json = (path / "config.json").read_text()
    length = min(TEACHER_MAX_LENGTH, int(json.loads(config_json).get("max_position_embeddings",
                                                                     TEACHER_MAX_LENGTH)))
    text = PREPROCESSES.get("text")
    preprocess = text(max_length=length, bert_config=config_json,
                      tokenizer_file=str((path / "tokenizer.json").resolve()))
    encoder = build_backbone("pretrained_bert", BertShape(config_json, length), path)
    return Teacher(str(path), f"{path.name} (BERT model folder)", encoder, preprocess, path)


class ClipImageTower(torch.nn.Module):
    """A CLIP's image encoder and its projection: the embedding its zero-shot reads."""

    def __init__(self, clip):
        super().__init__()
        self.vision_model, self.visual_projection = clip.vision_model, clip.visual_projection
        self.feature_dim = clip.visual_projection.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(images))


def _clip_teacher(path: Path) -> Teacher:
    from sslstudio.core.zeroshot.clip import image_normalisation, load_clip

    try:
        clip = load_clip(path)
    except WeightsError as error:
        raise DataError(f"teacher {error}") from None
    size = int(clip.config.vision["image_size"])
    mean, std = image_normalisation(path)
    preprocess = PREPROCESSES.get("image")(image_size=size, mean=list(mean), std=list(std),
                                           pretrained={"architecture": "clip", "weights": str(path)})
    return Teacher(str(path), f"{path.name} (CLIP image tower at {size} px)", ClipImageTower(clip),
                   preprocess, path)


def _backbone_teacher(name: str, weights: Path | None, spec: str) -> Teacher:
    info = BACKBONES.get(name).pretrained
    if weights is None:
        raise DataError(f"{name} needs its pretrained weights to teach: download them once with "
                        f"`sslstudio weights download {name}` (nothing is downloaded without "
                        "asking), or give their file")
    preprocess = PREPROCESSES.get("image")(image_size=info.input_size, mean=list(info.mean),
                                           std=list(info.std),
                                           pretrained={"architecture": info.arch,
                                                       "weights": str(weights)})
    encoder = build_backbone(name, info.input_size, weights)
    encoder.read_for_probe()
    return Teacher(spec, f"{name} at {info.input_size} px", encoder, preprocess, Path(weights).parent)


def _weights_file_teacher(path: Path) -> Teacher:
    """The pretrained architecture whose parameters the file fits."""
    try:
        check_weights_file(path)
    except WeightsError as error:
        raise DataError(f"teacher {error}") from None
    for name in pretrained_backbones():
        try:
            return _backbone_teacher(name, path, str(path))
        except WeightsError:
            continue
    raise DataError(f"{path.name} fits none of the pretrained architectures "
                    f"({', '.join(pretrained_backbones())}); give a run folder or a model folder")


# -- the teacher's pass over the folder -------------------------------------------------------
@dataclass
class TeacherTargets:
    """What the student learns to reproduce: the teacher's features of `indices` (items of the
    run's dataset), with what they cost."""

    indices: np.ndarray  # int64, sorted
    features: np.ndarray  # float16 (len(indices), D)
    seconds: float  # spent encoding them in this process (0 when read back from the run)
    teacher: str
    description: str
    parameter_bytes: int
    latency_ms: float = float("nan")  # one item through the teacher, PyTorch, this machine
    onnx_ms: float = float("nan")  # the same through onnxruntime (CPU)
    onnx_mb: float = float("nan")  # the teacher's ONNX file
    # Features of further views of each item (images: seeded crops), and those crops, which the
    # student is shown at its own resolution: (len(indices), views, D) and (..., views, 2, 3).
    view_features: np.ndarray | None = None
    view_crops: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def save(self, path: Path, keys: list[str]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, indices=self.indices, features=self.features,
                 keys=np.array([keys[i] for i in self.indices]), teacher=np.array(self.teacher),
                 description=np.array(self.description),
                 parameter_bytes=np.array(self.parameter_bytes),
                 latency_ms=np.array(self.latency_ms), onnx_ms=np.array(self.onnx_ms),
                 onnx_mb=np.array(self.onnx_mb),
                 **({} if self.view_features is None else
                    {"view_features": self.view_features, "view_crops": self.view_crops}))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def read(cls, path: Path, keys: list[str], teacher: str) -> "TeacherTargets | None":
        """The targets a run saved, if they are of this teacher and these items still."""
        try:
            with np.load(path) as saved:
                if str(saved["teacher"]) != teacher:
                    return None
                indices = saved["indices"].astype(np.int64)
                if len(indices) and (indices.max() >= len(keys) or
                                     [keys[i] for i in indices] != list(saved["keys"])):
                    return None
                figures = [float(saved[name]) if name in saved else float("nan")
                           for name in ("latency_ms", "onnx_ms", "onnx_mb")]
                views = ((saved["view_features"], saved["view_crops"]) if "view_features" in saved
                         else (None, None))
                return cls(indices, saved["features"], 0.0, teacher, str(saved["description"]),
                           int(saved["parameter_bytes"]), *figures, *views)
        except (OSError, KeyError, ValueError):
            return None


def teacher_targets(teacher: Teacher, data, device, control: RunControl, budget_s: float,
                    share: float, seed: int, chunk: int = 0, views: int = 1) -> Iterator:
    """The teacher's features of the items a `share` of `budget_s` affords (every item when it
    does; 0: no limit), a seeded spread of the folder otherwise; then, where the share has room
    for whole rounds more and the modality crops, up to `views` - 1 seeded crops of each of them.
    Times the first chunk to decide; yields progress; returns TeacherTargets. Under torchrun the
    processes share the work (chunk k of the seeded order is encoded by rank k mod world) and rank
    0's timing decides for all, so every process gets the same targets."""
    started = time.monotonic()
    total = len(data)
    world, rank = distributed.world_size(), distributed.rank()
    order = np.random.default_rng(seed).permutation(total)
    chunk = teacher.preprocess.inference_batch(torch.device(device), chunk or TEACHER_CHUNK)
    features: list[np.ndarray] = []
    batches: list[np.ndarray] = []
    wanted = total
    start = rank * chunk  # where this process's next chunk starts
    done = 0  # items this process has encoded
    decided = not (budget_s and share)
    while start < wanted or not decided:
        batch = np.sort(order[start:start + chunk])
        if len(batch):
            features.append(teacher.encode(data, batch, device).cpu().numpy().astype(np.float16))
            batches.append(batch)
        done += len(batch)
        start += world * chunk
        if not decided:
            decided = True
            per_item = distributed.from_rank_zero((time.monotonic() - started) / max(1, done),
                                                  torch.device(device))
            first_round = min(total, world * chunk)
            wanted = int(min(total, max(first_round, share * budget_s * world / per_item)))
            # Leaving out a few items saves seconds and costs the student their lessons.
            wanted = total if wanted >= 0.8 * total else wanted
        yield ScanProgress(min(done * world, wanted), wanted, 0, "", "the teacher is encoding",
                           noun="items")
        control.checkpoint()
    shares = distributed.gather_objects((batches, features))
    covered = np.concatenate([b for rank_batches, _ in shares for b in rank_batches])
    taken = np.concatenate([f for _, rank_features in shares for f in rank_features])
    positions = np.argsort(covered)
    covered, taken = covered[positions], taken[positions]
    view_features = crops = None
    if views > 1:
        plain_s = distributed.from_rank_zero(time.monotonic() - started, torch.device(device))
        rounds = views - 1
        if budget_s and share:
            rounds = min(rounds, int((share * budget_s - plain_s) // max(plain_s, 1e-9)))
        if rounds > 0:
            crops = teacher.preprocess.teacher_view_crops(len(covered) * rounds, seed + 1)
        if crops is not None:
            crops = crops.view(len(covered), rounds, 2, 3)
            view_features = yield from _views_of(teacher, data, covered, crops, device, control,
                                                 chunk)
    # The forward pass alone, as the student's is timed: decoding a large photo would dwarf it.
    one = teacher.preprocess.model_inputs(teacher.preprocess.reread(data, covered[:1], teacher.folder),
                                          device)
    with torch.inference_mode():
        latency_ms = batch_one_ms(lambda: teacher.encoder(one), device)
    from sslstudio.core.onnx_file import onnx_figures  # onnx and onnxruntime: only when teaching

    # Exported once here, for the run's closing comparison (which the first process writes);
    # it is part of the pass's cost.
    onnx_ms, onnx_mb = onnx_figures(teacher.encoder, one) if rank == 0 else (float("nan"),) * 2
    return TeacherTargets(covered.astype(np.int64), taken, time.monotonic() - started,
                          teacher.name, teacher.description, teacher.parameter_bytes(), latency_ms,
                          onnx_ms, onnx_mb, view_features,
                          None if view_features is None else crops.numpy())


def _views_of(teacher: Teacher, data, covered: np.ndarray, crops: torch.Tensor, device,
              control: RunControl, chunk: int) -> Iterator:
    """(len(covered), views, D) features of each covered item's crops, float16; the processes
    share the chunks as the plain pass does."""
    world, rank = distributed.world_size(), distributed.rank()
    views = crops.shape[1]
    rows = np.arange(len(covered))
    jobs = [(view, rows[start:start + chunk]) for view in range(views)
            for start in range(0, len(covered), chunk)]
    mine = []
    for number, (view, chunk_rows) in enumerate(jobs):
        if number % world == rank:
            features = teacher.encode(data, covered[chunk_rows], device, crops[chunk_rows, view])
            mine.append((view, chunk_rows, features.cpu().numpy().astype(np.float16)))
        yield ScanProgress(number + 1, len(jobs), 0, "", "the teacher is encoding crops of each "
                           "item", noun="chunks")
        control.checkpoint()
    out = None
    for rank_parts in distributed.gather_objects(mine):
        for view, chunk_rows, features in rank_parts:
            if out is None:
                out = np.zeros((len(covered), views, features.shape[1]), np.float16)
            out[chunk_rows, view] = features
    return out


def batch_one_ms(encode_one, device, repeats: int = 5) -> float:
    """Median milliseconds of `encode_one()` after a warm call."""
    encode_one()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode_one()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))
