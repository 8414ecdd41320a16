"""Text infilling by span corruption: hide whole spans of consecutive word pieces (lengths drawn
from a Poisson distribution, as in SpanBERT and T5) and predict every piece of each span. Harder
than masking single pieces, because a span's neighbours inside it are hidden too."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.masking import (TokenPredictionHead, corrupt, maskable,
                                               masked_token_loss)


@dataclass
class InfillConfig(ObjectiveConfig):
    lr: float = knob(5e-4, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    weight_decay: float = knob(0.01, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")
    mask_ratio: float = knob(0.15, low=0.01, high=0.8, help="share of word pieces hidden, in spans")
    mean_span: float = knob(3.0, low=1.0, high=20.0, help="mean span length (Poisson)")


def span_mask(ids: torch.Tensor, vocab, ratio: float, mean_span: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """Spans of maskable positions covering about `ratio` of each text's word pieces."""
    candidates = maskable(ids, vocab)
    lengths = candidates.sum(1)
    chosen = torch.zeros_like(candidates)
    cpu = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator,
                                                          device=generator.device if generator else "cpu")))
    for row in range(ids.shape[0]):
        n = int(lengths[row])
        if n == 0:
            continue
        budget = max(1, round(ratio * n))
        positions = torch.nonzero(candidates[row]).flatten().cpu()
        covered = torch.zeros(n, dtype=torch.bool)
        while int(covered.sum()) < budget:
            span = max(1, int(torch.poisson(torch.tensor([mean_span]), generator=cpu)))
            span = min(span, budget - int(covered.sum()))
            start = int(torch.randint(0, n - span + 1, (1,), generator=cpu))
            covered[start:start + span] = True
        chosen[row, positions[covered].to(ids.device)] = True
    return chosen


@register_objective
class Infill(Objective):
    name = "infill"
    summary = ("Text infilling: hides whole spans of words and predicts them (SpanBERT/T5 style). "
               "Learns longer-range meaning than mlm at the same cost.")
    config_cls = InfillConfig
    modalities = ("text",)
    divergence_hint = "lower lr"

    def __init__(self, encoder, config: InfillConfig, vocab):
        super().__init__(encoder, config, vocab)
        self.vocab = vocab
        self.head = TokenPredictionHead(encoder.feature_dim, vocab.size)
        self.generator: torch.Generator | None = None

    def forward(self, ids: torch.Tensor):
        chosen = span_mask(ids, self.vocab, self.config.mask_ratio, self.config.mean_span,
                           self.generator)
        # Inside spans every piece becomes [MASK] (no 10% random or kept): the span is unknown.
        corrupted = corrupt(ids, chosen, self.vocab, self.generator, mask_share=1.0, random_share=0.0)
        states, _ = self.encoder.token_states(corrupted)
        # The vocabulary projection only where a prediction is scored: ~15% of the positions.
        return masked_token_loss(self.head(states[chosen]), ids, chosen)
