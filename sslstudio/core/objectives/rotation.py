"""RotNet (Gidaris et al. 2018): predict which of four rotations was applied. A pretext-task
baseline: cheap and stable, usually behind the Siamese methods."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.heads import mlp_head


def rotate_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image, and the rotation index (0..3, quarter turns) of each."""
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


@dataclass
class RotationConfig(ObjectiveConfig):
    head_hidden_dim: int = knob(256, low=8, high=8192, help="classifier head hidden width")


@register_objective
class Rotation(Objective):
    name = "rotation"
    summary = ("Pretext task: predict the rotation (0/90/180/270). A quick, stable baseline; "
               "useless where orientation carries no meaning (microscopy, satellites).")
    config_cls = RotationConfig

    def __init__(self, encoder, config: RotationConfig, augment):
        super().__init__(encoder, config, augment)
        self.head = mlp_head(encoder.feature_dim, config.head_hidden_dim, 4, 2)

    def forward(self, images: torch.Tensor):
        rotated, labels = rotate_batch(self.augment(images))
        logits = self.head(self.encoder(rotated))
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return F.cross_entropy(logits, labels), {"rotation_accuracy": accuracy}
