"""SimSiam (Chen & He 2021): BYOL without the momentum target; stop-gradient alone prevents
collapse."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.heads import mlp_head


def simsiam_loss(p1, z1, p2, z2) -> torch.Tensor:
    """Symmetrised negative cosine, each target z behind a stop-gradient."""
    return -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=1).mean()
                   + F.cosine_similarity(p2, z1.detach(), dim=1).mean())


@dataclass
class SimSiamConfig(ObjectiveConfig):
    projection_hidden_dim: int = knob(1024, low=16, high=8192, help="projector hidden width")
    projection_dim: int = knob(1024, low=8, high=8192, help="projector output width")
    prediction_hidden_dim: int = knob(256, low=8, high=8192,
                                      help="predictor bottleneck width (a quarter of the output)")


@register_objective
class SimSiam(Objective):
    name = "simsiam"
    summary = ("Non-contrastive without a momentum network: the simplest Siamese method. "
               "Needs long training; watch the collapse meter.")
    config_cls = SimSiamConfig
    divergence_hint = "lower lr"

    def __init__(self, encoder, config: SimSiamConfig, augment):
        super().__init__(encoder, config, augment)
        self.projector = mlp_head(encoder.feature_dim, config.projection_hidden_dim,
                                  config.projection_dim, 3, last_batch_norm=True)
        self.predictor = mlp_head(config.projection_dim, config.prediction_hidden_dim,
                                  config.projection_dim, 2)

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, images: torch.Tensor):
        views = torch.cat([self.augment(images), self.augment(images)])
        z = self.projector(self.encoder(views))
        p = self.predictor(z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        return simsiam_loss(p1, z1, p2, z2), {}
