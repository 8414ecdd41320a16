"""BYOL (Grill et al. 2020): an online network predicts an EMA target network's projection of
another view. No negatives; the predictor and the slowly moving target prevent collapse."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import (Objective, ObjectiveConfig, ema_update,
                                            register_objective)
from sslstudio.core.objectives.heads import mlp_head


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, z) averaged over the batch; the target carries no gradient."""
    p = F.normalize(prediction, dim=1)
    z = F.normalize(target.detach(), dim=1)
    return (2 - 2 * (p * z).sum(1)).mean()


def target_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: from `base` at the start to 1 at the end, along a cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


@dataclass
class BYOLConfig(ObjectiveConfig):
    momentum: float = knob(0.99, low=0.5, high=0.99999,
                           help="target EMA at the start; rises to 1 along a cosine")
    projection_hidden_dim: int = knob(1024, low=16, high=8192, help="projector hidden width")
    projection_dim: int = knob(256, low=8, high=4096, help="projector output width")
    prediction_hidden_dim: int = knob(1024, low=16, high=8192, help="predictor hidden width")
    weight_decay: float = knob(1e-5, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")


@register_objective
class BYOL(Objective):
    name = "byol"
    summary = ("Non-contrastive: predicts a slowly moving target network's view, no negatives. "
               "Among the strongest with few labels given hours; slow to start in minutes on a CPU.")
    config_cls = BYOLConfig
    divergence_hint = "lower lr"

    def __init__(self, encoder, config: BYOLConfig, augment):
        super().__init__(encoder, config, augment)
        self.projector = mlp_head(encoder.feature_dim, config.projection_hidden_dim,
                                  config.projection_dim, 2)
        self.predictor = mlp_head(config.projection_dim, config.prediction_hidden_dim,
                                  config.projection_dim, 2)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for param in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            param.requires_grad_(False)

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, images: torch.Tensor):
        views = torch.cat([self.augment(images), self.augment(images)])
        p1, p2 = self.predictor(self.projector(self.encoder(views))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(views)).chunk(2)
        loss = 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))
        return loss, {}

    def after_step(self, progress: float) -> None:
        momentum = target_momentum(self.config.momentum, progress)
        ema_update(self.target_encoder, self.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)
