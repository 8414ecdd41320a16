"""Unsupervised SimCSE (Gao et al. 2021): the same text through the encoder twice, with
different dropout, is the positive pair; the rest of the batch are negatives (InfoNCE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core import distributed
from sslstudio.core.config import knob
from sslstudio.core.objectives.base import ObjectiveConfig, Objective, register_objective
from sslstudio.core.objectives.heads import mlp_head


@dataclass
class SimCSEConfig(ObjectiveConfig):
    lr: float = knob(5e-4, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    weight_decay: float = knob(0.01, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")
    temperature: float = knob(0.05, low=0.005, high=2.0,
                              help="softmax temperature (the paper's 0.05)")
    projection_layers: int = knob(1, low=0, high=3,
                                  help="Linear layers of the training-only head over the pooled "
                                       "features (0: none)")


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """-log exp(sim(h_i, h_i')/t) / sum_j exp(sim(h_i, h_j')/t), averaged; with several
    processes the other processes' second views join the negatives."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    all_z2 = distributed.gather_with_grad(z2)
    logits = z1 @ all_z2.T / temperature
    targets = torch.arange(z1.shape[0], device=z1.device) + distributed.rank() * z1.shape[0]
    return F.cross_entropy(logits, targets)


@register_objective
class SimCSE(Objective):
    name = "simcse"
    summary = ("Contrastive sentence embeddings (SimCSE): two dropout views of each text are "
               "pulled together, the batch pushed apart. Gives similarity-ready features fast.")
    config_cls = SimCSEConfig
    modalities = ("text",)
    divergence_hint = "raise temperature or lower lr"
    collapse_hint = ("lower lr or raise augmentation_strength; more negatives help too (a larger "
                     "batch, or moco's queue)")
    views = 2  # each text is encoded twice per step
    smallest_batch = 8  # a pretrained text encoder's step is long on a CPU; 7 negatives still teach

    def __init__(self, encoder, config: SimCSEConfig, vocab):
        super().__init__(encoder, config, vocab)
        width = encoder.feature_dim
        self.projector = (mlp_head(width, width, width, config.projection_layers)
                          if config.projection_layers else torch.nn.Identity())

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, ids: torch.Tensor):
        # One pass over the doubled batch: each copy gets its own dropout masks.
        z = self.projector(self.encoder(torch.cat([ids, ids], 0)))
        z1, z2 = z.chunk(2)
        return simcse_loss(z1, z2, self.config.temperature), {}
