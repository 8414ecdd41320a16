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
from sslstudio.core.objectives.negatives import enqueue


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
    queue_size: int = knob(0, low=0, high=65536,
                           help="second views of past batches kept as extra negatives (0: the "
                                "batch alone); a batch of 8 on a CPU has only 7")


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                queue: torch.Tensor | None = None) -> torch.Tensor:
    """-log exp(sim(h_i, h_i')/t) / sum_j exp(sim(h_i, h_j')/t), averaged; with several
    processes the other processes' second views join the negatives, and so do the rows of
    `queue` (l2-normalised, no gradient) where there is one."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    candidates = distributed.gather_with_grad(z2)
    if queue is not None and len(queue):
        candidates = torch.cat([candidates, queue.to(candidates.dtype)], 0)
    logits = z1 @ candidates.T / temperature
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
                     "batch, or queue_size)")
    views = 2  # each text is encoded twice per step
    smallest_batch = 8  # a pretrained text encoder's step is long on a CPU; 7 negatives still teach

    def __init__(self, encoder, config: SimCSEConfig, vocab):
        super().__init__(encoder, config, vocab)
        width = encoder.feature_dim
        self.projector = (mlp_head(width, width, width, config.projection_layers)
                          if config.projection_layers else torch.nn.Identity())
        if config.queue_size:
            self.register_buffer("queue", torch.zeros(config.queue_size, width))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
            self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def head_outputs(self, features):
        return self.projector(features)

    def forward(self, ids: torch.Tensor):
        # One pass over the doubled batch: each copy gets its own dropout masks.
        z = self.projector(self.encoder(torch.cat([ids, ids], 0)))
        z1, z2 = z.chunk(2)
        if not self.config.queue_size:
            return simcse_loss(z1, z2, self.config.temperature), {}
        # A copy: the enqueue below must not alter what autograd saved.
        queue = self.queue[:int(self.queue_filled)].clone()
        loss = simcse_loss(z1, z2, self.config.temperature, queue)
        # Only a training step adds negatives: a pass without gradients (the temperature rule's
        # probes of one batch, the monitor) must leave them as they were.
        if self.training and torch.is_grad_enabled():
            self._enqueue(distributed.gather(F.normalize(z2.detach(), dim=1)))
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        written = enqueue(self.queue, self.queue_pointer, keys)
        self.queue_filled.copy_(torch.clamp(self.queue_filled + written, max=self.queue.shape[0]))
