"""SimCLR (Chen et al. 2020): two views per image, NT-Xent over the 2N views of the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core import distributed
from sslstudio.core.objectives.base import ContrastiveConfig, Objective, register_objective
from sslstudio.core.objectives.heads import mlp_head


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent for this rank's pairs, with every other view on every rank as a negative."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    all_z1, all_z2 = distributed.gather_with_grad(z1), distributed.gather_with_grad(z2)
    offset = distributed.rank() * n
    candidates = torch.cat([all_z1, all_z2], 0)  # (2 * world * n, d)
    total = all_z1.shape[0]
    anchors = torch.cat([z1, z2], 0)  # (2n, d)
    logits = anchors @ candidates.T / temperature
    local = torch.arange(n, device=z1.device) + offset
    self_index = torch.cat([local, local + total])
    positive_index = torch.cat([local + total, local])
    logits[torch.arange(2 * n, device=z1.device), self_index] = float("-inf")
    return F.cross_entropy(logits, positive_index)


@dataclass
class SimCLRConfig(ContrastiveConfig):
    pass


@register_objective
class SimCLR(Objective):
    name = "simclr"
    summary = ("Contrastive: pulls two views of an image together and pushes the rest of the batch "
               "apart. The fastest learner on a CPU in minutes (the default); more items a batch give it more "
               "negatives (256+ where memory allows).")
    config_cls = SimCLRConfig
    divergence_hint = "raise temperature or lower lr"
    collapse_hint = ("lower lr or raise augmentation_strength; more negatives help too (a larger "
                     "batch, or moco's queue)")

    def __init__(self, encoder, config: SimCLRConfig, augment):
        super().__init__(encoder, config, augment)
        self.projector = mlp_head(encoder.feature_dim, config.projection_hidden_dim,
                                  config.projection_dim, config.projection_layers)

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, images: torch.Tensor):
        views = torch.cat([self.augment(images), self.augment(images)], 0)
        z = self.projector(self.encoder(views))
        z1, z2 = z.chunk(2)
        return nt_xent_loss(z1, z2, self.config.temperature), {}
