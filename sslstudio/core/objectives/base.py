"""What every objective shares: its config knobs, the optimizer it wants, and its interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslstudio.core.config import knob
from sslstudio.core.registry import Registry


@dataclass
class ObjectiveConfig:
    optimizer: str = knob("adamw", choices=("adamw", "sgd"),
                          help="adamw is robust at small batch; sgd (momentum 0.9) as in the papers")
    lr: float = knob(2e-3, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    weight_decay: float = knob(1e-4, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")


@dataclass
class ContrastiveConfig(ObjectiveConfig):
    """The knobs every InfoNCE method shares: temperature and the projection head's shape."""

    temperature: float = knob(0.5, low=0.01, high=2.0,
                              help="softmax temperature: lower separates harder, too low diverges")
    projection_hidden_dim: int = knob(512, low=16, high=8192, help="projection head hidden width")
    projection_dim: int = knob(128, low=8, high=4096, help="projection head output width")
    projection_layers: int = knob(2, low=1, high=4, help="Linear layers in the projection head")


@dataclass
class Preparation:
    """Work an objective did before the plan (a teacher's pass over the folder), and what the
    plan must know of it."""

    seconds: float = 0.0  # spent out of a minutes budget
    items: np.ndarray | None = None  # the items training draws from (None: every item)
    reasons: tuple[str, ...] = ()  # for the plan line
    payload: object = None  # what `Objective.attach` takes


class Objective(nn.Module):
    """A self-supervised task around an encoder.

    `forward(inputs)` takes a batch as the modality's Preprocess makes it (images: a float NCHW
    batch in [0, 1] straight from the cache; texts: token ids) and returns (loss, metrics);
    augmentation happens inside, because each method wants its own views.
    """

    name: str = ""
    summary: str = ""  # one line: what it does and when to pick it
    config_cls: type = ObjectiveConfig
    modalities: tuple[str, ...] = ("image",)
    views = 1  # how many times a step encodes each item (for the memory a step needs)
    divergence_hint: str = "lower lr"
    # Whether small, aligned features mean collapse. Skip-gram's vectors start tiny and aligned
    # by design and its negatives keep them apart, so the meter would cry wolf there.
    can_collapse = True
    # What to change when the meter says collapsed. Non-contrastive and pretext objectives have
    # nothing that pushes features apart; contrastive ones do, so their advice differs.
    collapse_hint = "lower lr, raise augmentation_strength, or use moco or simclr, which cannot collapse this way"
    smallest_batch = 16  # the least a budget-sized batch may shrink to (in-batch negatives)
    # The steps a minutes budget should buy before the plan gives up pixels for them (the image
    # modality's STEPS_WANTED, chosen on SimCLR from scratch, when None).
    steps_wanted: int | None = None
    # A run's budget on a CPU by modality, when it names neither epochs nor minutes (where a
    # modality is not named here, CPU_MINUTES). Read, never changed.
    cpu_minutes: dict[str, float] = {}
    # forward(inputs, item_indices) rather than forward(inputs): targets stored per item.
    reads_item_indices = False
    trains_any_backbone = False  # also those another objective owns (skip-gram's word vectors)
    needs_teacher = False
    # Whether the run's features are read as the backbone reads them for a few-label probe
    # (`Backbone.read_for_probe`: small_cnn's last stage on a 2x2 grid) or as training made them.
    reads_features_for_probe = True

    def __init__(self, encoder: nn.Module, config, lent):
        super().__init__()
        self.encoder = encoder
        self.config = config
        # What the data's modality lends the objective to make its inputs: an augmentation that
        # makes a view of a batch (images; texts for objectives that compare views) or a text
        # vocabulary (which pieces are special, how to mask). `Preprocess.make_objective` says which.
        self.lent = lent

    @property
    def augment(self):
        """The augmentation that makes a view of a batch, for objectives that compare views."""
        return self.lent

    @classmethod
    def prepare(cls, config, objective_config, setup, data, preprocess, control) -> Iterator:
        """Work the objective needs before the plan, as progress events; returns a Preparation
        for `attach`, or None."""
        return (yield from ())

    def attach(self, prepared: Preparation, device) -> None:
        """Take what `prepare` made, before the optimizer is built."""

    def reference_features(self, indices: np.ndarray) -> np.ndarray | None:
        """Features to compare the encoder with on the monitor's sample (a teacher's; NaN rows
        for items it has none of), or None."""
        return None

    def closing_note(self, monitor, device) -> str:
        """What the run's end should say of this objective's result ("": nothing)."""
        return ""

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step with training progress in [0, 1]."""

    def head_outputs(self, features: torch.Tensor) -> torch.Tensor | None:
        """The projection of features used by the loss, for the collapse meter (None: no head)."""
        return None

    def param_groups(self, weight_decay: float) -> list[dict]:
        decay, no_decay = [], []
        for param in self.parameters():
            if not param.requires_grad:
                continue
            # Biases and norm scales gain nothing from decay and BYOL/SimSiam suffer from it.
            (no_decay if param.ndim <= 1 else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(cls: type[Objective]) -> type[Objective]:
    OBJECTIVES.register(cls.name)(cls)
    return cls


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = momentum * target + (1 - momentum) * online, for parameters. The target keeps
    its own BatchNorm statistics, which its own forward passes in train mode update."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
