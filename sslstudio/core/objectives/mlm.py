"""Masked language modelling (Devlin et al. 2019): hide a share of the word pieces and predict
them from the rest."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.masking import (TokenPredictionHead, corrupt, maskable,
                                               masked_token_loss)


@dataclass
class MLMConfig(ObjectiveConfig):
    lr: float = knob(5e-4, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    weight_decay: float = knob(0.01, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")
    mask_ratio: float = knob(0.15, low=0.01, high=0.8, help="share of word pieces to predict")


def choose_positions(ids: torch.Tensor, vocab, ratio: float, generator) -> torch.Tensor:
    """Each maskable position independently with probability `ratio`, at least one per text."""
    candidates = maskable(ids, vocab)
    draw = torch.rand(ids.shape, device=ids.device, generator=generator)
    chosen = candidates & (draw < ratio)
    # A short text could draw nothing; its least-drawn candidate is taken instead.
    empty = ~chosen.any(1) & candidates.any(1)
    if empty.any():
        fallback = torch.where(candidates, draw, torch.full_like(draw, 2.0)).argmin(1)
        chosen[empty, fallback[empty]] = True
    return chosen


@register_objective
class MLM(Objective):
    name = "mlm"
    summary = ("Masked language modelling: predicts hidden word pieces from their context (BERT). "
               "Learns vocabulary and syntax; features need a probe or fine-tuning to shine.")
    config_cls = MLMConfig
    modalities = ("text",)
    divergence_hint = "lower lr"

    def __init__(self, encoder, config: MLMConfig, vocab):
        super().__init__(encoder, config, vocab)
        self.vocab = vocab
        self.head = TokenPredictionHead(encoder.feature_dim, vocab.size)
        self.generator: torch.Generator | None = None

    def forward(self, ids: torch.Tensor):
        chosen = choose_positions(ids, self.vocab, self.config.mask_ratio, self.generator)
        states, _ = self.encoder.token_states(corrupt(ids, chosen, self.vocab, self.generator))
        # The vocabulary projection only where a prediction is scored: ~15% of the positions.
        return masked_token_loss(self.head(states[chosen]), ids, chosen)
