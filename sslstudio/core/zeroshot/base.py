"""Zero-shot labels: items and class descriptions embedded in one space by a model that reads
both, and each item given the class whose description is nearest (cosine similarity, scaled
and softmaxed into a confidence). No labels are needed; the app shows the result as pre-labels
the user accepts or corrects.

One model type per kind of model folder, registered by name: a sentence encoder for texts
(`sentence.py`), CLIP for images (`clip.py`). Each says whether it recognises a path, loads a
data folder its way, and embeds a batch of items and a list of texts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch
from safetensors import SafetensorError

from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data import item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.events import EmbedProgress, ZeroShotFinished, ZeroShotPredictions
from sslstudio.core.locks import OutputLock
from sslstudio.core.outputs import check_output_file
from sslstudio.core.registry import Registry
from sslstudio.core.run.folder import write_predictions

BATCH = 64


class ZeroShotModel:
    modality: ClassVar[str] = ""
    # How a bare class name becomes the text that is embedded.
    default_template: ClassVar[str] = "{}"
    logit_scale: float = 20.0

    @classmethod
    def recognises(cls, path: Path) -> bool:
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        """What kind of folder this model type reads, for error messages."""
        raise NotImplementedError

    def load_items(self, data_dir: Path, control: RunControl) -> Iterator:
        """The data folder as the model reads it (`yield from`; yields scan progress)."""
        raise NotImplementedError

    def item_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings of a dataset batch."""
        raise NotImplementedError

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Unit-length embeddings of class descriptions, in the items' space."""
        raise NotImplementedError

    def encode_items(self, data, control: RunControl) -> Iterator:
        out = np.empty((len(data), 0), np.float32)
        for start in range(0, len(data), BATCH):
            indices = np.arange(start, min(len(data), start + BATCH))
            with torch.inference_mode():
                features = self.item_features(data.batch(indices)).float().cpu().numpy()
            if out.shape[1] == 0:
                out = np.empty((len(data), features.shape[1]), np.float32)
            out[indices] = features
            yield EmbedProgress(int(indices[-1]) + 1, len(data))
            control.checkpoint()
        return out

    def class_probabilities(self, items: np.ndarray, descriptions: list[str]) -> np.ndarray:
        with torch.inference_mode():
            classes = self.text_features(descriptions).float().cpu().numpy()
        logits = self.logit_scale * items @ classes.T
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


ZERO_SHOT_MODELS: Registry[type[ZeroShotModel]] = Registry("zero-shot model")


def register_zero_shot_model(name: str):
    return ZERO_SHOT_MODELS.register(name)


def open_zero_shot_model(path: Path, device: torch.device) -> ZeroShotModel:
    path = Path(path)
    for name in ZERO_SHOT_MODELS.names():
        model_cls = ZERO_SHOT_MODELS.get(name)
        if model_cls.recognises(path):
            try:
                return model_cls(path, device)
            except (SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as error:
                # A folder that looks like a model but whose files are damaged or of another kind.
                what = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)
                raise DataError(f"{path} looks like a model folder but cannot be read "
                                f"({what.splitlines()[0][:200]}); download it again, or pick "
                                "another folder") from None
    kinds = "; ".join(ZERO_SHOT_MODELS.get(n).description() for n in ZERO_SHOT_MODELS.names())
    raise DataError(f"{path} cannot give zero-shot labels: it needs a model that reads both the "
                    f"items and the class descriptions: {kinds}")


def class_descriptions(classes: list[str], template: str) -> tuple[list[str], list[str]]:
    """Class names and the text embedded for each: "name=description" gives both; a bare name
    is put into the template ("a photo of a {}.")."""
    names, descriptions = [], []
    for entry in classes:
        name, sep, description = entry.partition("=")
        name = name.strip()
        if not name:
            raise DataError(f"class {entry!r} has no name (give NAME or NAME=DESCRIPTION)")
        names.append(name)
        descriptions.append(description.strip() if sep and description.strip()
                            else template.replace("{}", name) if "{}" in template else name)
    if len(set(names)) != len(names):
        raise DataError(f"class names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if len(names) < 2:
        raise DataError("give at least two classes to choose between")
    return names, descriptions


@dataclass
class ZeroShotRequest:
    model: Path  # a model folder (CLIP, sentence encoder) or a text run
    data_dir: Path
    classes: list[str]  # "name" or "name=description"
    template: str | None = None  # default: the model type's
    out_csv: Path | None = None
    device: str = "auto"
    overwrite: bool = False


def zero_shot(request: ZeroShotRequest, control: RunControl | None = None) -> Iterator:
    """Yields scan and embedding progress, ZeroShotPredictions, then ZeroShotFinished."""
    control = control or RunControl()
    if not request.out_csv:
        yield from _zero_shot(request, control)
        return
    with OutputLock.acquire(Path(request.out_csv), "the labels file"):
        yield from _zero_shot(request, control)


def _zero_shot(request: ZeroShotRequest, control: RunControl) -> Iterator:
    if request.out_csv:
        check_output_file(Path(request.out_csv), overwrite=request.overwrite,
                          data_dirs=[Path(request.data_dir)], what="--out")
    started = time.monotonic()
    model = open_zero_shot_model(Path(request.model), resolve_device(request.device))
    names, descriptions = class_descriptions(list(request.classes),
                                             request.template or model.default_template)
    try:
        data = yield from model.load_items(Path(request.data_dir), control)
        if len(data) == 0:
            raise DataError(f"{request.data_dir} has no {model.modality} items to label")
        features = yield from model.encode_items(data, control)
        proba = model.class_probabilities(features, descriptions)
    except Cancelled:
        yield ZeroShotFinished("cancelled", str(request.model), message="stopped by the user")
        return
    items = item_keys(data)
    yield ZeroShotPredictions(np.array(items), tuple(names), tuple(descriptions), proba,
                              proba.argmax(1).astype(np.int64), proba.max(1).astype(np.float32))
    if request.out_csv:
        root = Path(data.root).resolve()
        write_predictions(Path(request.out_csv), [str(root / item) for item in items], names, proba)
    counts = np.bincount(proba.argmax(1), minlength=len(names))
    yield ZeroShotFinished("completed", str(request.model), str(request.out_csv or ""),
                           f"{len(items)} {model.modality} items in {time.monotonic() - started:.1f} s: "
                           + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
