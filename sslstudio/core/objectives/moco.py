"""MoCo v2 (He et al. 2020; Chen et al. 2020): a momentum key encoder and a queue of negatives,
so the number of negatives does not depend on the batch size. Symmetrised over the two views."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslstudio.core import distributed
from sslstudio.core.config import knob
from sslstudio.core.objectives.base import (ContrastiveConfig, Objective, ema_update,
                                            register_objective)
from sslstudio.core.objectives.heads import mlp_head
from sslstudio.core.objectives.negatives import enqueue


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with the key of the same image as positive (index 0) and the queue as negatives.
    q, k: (n, d) l2-normalised; queue: (K, d) l2-normalised."""
    positive = (q * k).sum(1, keepdim=True)
    negative = q @ queue.T
    logits = torch.cat([positive, negative], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@dataclass
class MoCoConfig(ContrastiveConfig):
    temperature: float = knob(0.2, low=0.01, high=2.0,
                              help="softmax temperature (MoCo v2's 0.2: the queue adds negatives)")
    queue_size: int = knob(4096, low=16, high=262144,
                           help="negatives kept from past batches; larger is harder and slower")
    momentum: float = knob(0.99, low=0.5, high=0.99999,
                           help="key encoder EMA; closer to 1 changes keys more slowly")


@register_objective
class MoCo(Objective):
    name = "moco"
    summary = ("Contrastive with a momentum encoder and a queue of negatives, so small batches "
               "work. Among the strongest with few labels on longer (GPU) runs.")
    config_cls = MoCoConfig
    divergence_hint = "raise temperature or lower lr"
    collapse_hint = "lower lr or raise augmentation_strength; a longer queue gives more negatives"

    def __init__(self, encoder, config: MoCoConfig, augment):
        super().__init__(encoder, config, augment)
        self.projector = mlp_head(encoder.feature_dim, config.projection_hidden_dim,
                                  config.projection_dim, config.projection_layers)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for param in [*self.key_encoder.parameters(), *self.key_projector.parameters()]:
            param.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(config.queue_size,
                                                              config.projection_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, images: torch.Tensor):
        v1, v2 = self.augment(images), self.augment(images)
        q = F.normalize(self.projector(self.encoder(torch.cat([v1, v2]))), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_encoder(torch.cat([v1, v2]))), dim=1)
        q1, q2 = q.chunk(2)
        k1, k2 = k.chunk(2)
        queue = self.queue.clone()  # the enqueue below must not alter what autograd saved
        loss = 0.5 * (moco_loss(q1, k2, queue, self.config.temperature)
                      + moco_loss(q2, k1, queue, self.config.temperature))
        self._enqueue(distributed.gather(k))
        return loss, {}

    def _enqueue(self, keys: torch.Tensor) -> None:
        enqueue(self.queue, self.queue_pointer, keys)

    def after_step(self, progress: float) -> None:
        ema_update(self.key_encoder, self.encoder, self.config.momentum)
        ema_update(self.key_projector, self.projector, self.config.momentum)
