"""What every adaptation method shares: its config, the task it is given, the classifier it
produces, and the registry that finds it by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import torch
from torch import nn

from sslstudio.core.backbones import build_backbone
from sslstudio.core.backbones.tuning import sites_of
from sslstudio.core.config import knob
from sslstudio.core.control import RunControl
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.registry import Registry


@dataclass
class AdaptConfig:
    repeats: int = knob(0, low=0, high=100,
                        help="cross-validation repeats for the estimate; 0: the method's default")


class Classifier(nn.Module):
    """Encoder then a linear head: normalised images in, logits out. What is saved and exported."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


@dataclass
class AdaptTask:
    """Everything a method needs, prepared once and shared by every fold."""

    data: object  # the dataset as the run's encoder reads it (any modality: images, token ids, ...)
    targets: np.ndarray  # int64 class position per item, -1 where unlabelled
    class_names: tuple[str, ...]
    features: np.ndarray  # (N, D) float32 of the pretrained encoder, eval preprocessing
    backbone: str
    preprocess: Preprocess  # how the run's encoder reads an item
    encoder_state: dict  # the pretrained weights, CPU tensors
    device: torch.device
    seed: int = 0
    probe_readout: bool = True  # read for a probe, as its objective says (features_read_for_probe)
    feature_mean: np.ndarray = field(init=False)
    feature_std: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # Statistics of every item, labelled or not: unsupervised, so using them is not a leak.
        self.feature_mean = self.features.mean(0)
        self.feature_std = np.maximum(self.features.std(0), 1e-6)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def new_encoder(self) -> nn.Module:
        encoder = build_backbone(self.backbone, self.preprocess.encoder_shape())
        encoder.load_state_dict(self.encoder_state)
        if self.probe_readout:  # as the features the task was prepared with
            encoder.read_for_probe()
        return encoder

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """Training input on the device: float NCHW in [0, 1] (not yet normalised), or token ids."""
        return self.preprocess.training_inputs(self.data.batch(np.asarray(indices)), self.device)

    def normalised(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.preprocess.normalised(inputs)


@dataclass
class Fitted:
    """A method's result on one training set."""

    classifier: Classifier | None  # on the task's device, eval mode; None for estimate folds
    val_proba: np.ndarray  # (n_val, C) probabilities on the validation items; n_val may be 0
    predict: object  # callable(indices) -> (n, C) probabilities, the fastest way this method has
    extra_state: dict = field(default_factory=dict)  # tensors saved beside the model (LoRA)


class Adapter:
    name = ""
    config_cls: type = AdaptConfig
    default_repeats = 2
    trains_network = True
    # Said beside the method's estimate when measurements showed cross-validation misleads for it.
    estimate_caution = ""

    def __init__(self, task: AdaptTask, config):
        self.task = task
        self.config = config

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of the model this method trains."""
        raise NotImplementedError

    @classmethod
    def unfit_reason(cls, sites) -> str | None:
        """Why this method cannot adapt an encoder with these `TuningSites`; None if it can."""
        return None

    @classmethod
    def restore(cls, encoder: nn.Module, config) -> nn.Module:
        """A freshly built encoder shaped as this method saves a trained one, so that the saved
        weights load into it. Most methods save a plain encoder (LoRA merges)."""
        return encoder

    def fit(self, train: np.ndarray, val: np.ndarray, control: RunControl) -> Generator:
        """Train on items `train`; yield AdaptProgress; return a Fitted. The estimate's folds
        and the final fit train alike: nothing is chosen by looking at `val`."""
        raise NotImplementedError


ADAPTERS: Registry[type[Adapter]] = Registry("adaptation method")


def register_adapter(name: str):
    def decorator(cls: type[Adapter]) -> type[Adapter]:
        cls.name = name
        return ADAPTERS.register(name)(cls)

    return decorator


def unfit_methods(encoder: nn.Module) -> dict[str, str]:
    """The methods that cannot adapt `encoder`, each with the reason."""
    sites = sites_of(encoder)
    reasons = {name: ADAPTERS.get(name).unfit_reason(sites) for name in ADAPTERS.names()}
    return {name: reason for name, reason in reasons.items() if reason}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(1, keepdims=True)
