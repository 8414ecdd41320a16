"""Masked-token prediction shared by mlm and infill: a prediction head over the encoder's token
states, the loss over the masked positions, and its metrics (accuracy, perplexity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenPredictionHead(nn.Module):
    """BERT's: dense, GELU, LayerNorm, then a projection to the vocabulary."""

    def __init__(self, width: int, vocab_size: int):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.decoder = nn.Linear(width, vocab_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(states))))


def maskable(ids: torch.Tensor, vocab) -> torch.Tensor:
    """Positions that hold a real word piece (not padding, [CLS], [SEP] or [UNK])."""
    special = torch.tensor(vocab.special_ids, device=ids.device)
    return ~torch.isin(ids, special)


def corrupt(ids: torch.Tensor, chosen: torch.Tensor, vocab, generator: torch.Generator | None,
            mask_share: float = 0.8, random_share: float = 0.1) -> torch.Tensor:
    """BERT's 80/10/10: of the chosen positions, most become [MASK], some a random word piece,
    the rest stay as they are (so the model cannot trust unmasked tokens blindly)."""
    draw = torch.rand(ids.shape, device=ids.device, generator=generator)
    to_mask = chosen & (draw < mask_share)
    to_random = chosen & (draw >= mask_share) & (draw < mask_share + random_share)
    random_tokens = torch.randint(vocab.first_regular_id, vocab.size, ids.shape, device=ids.device,
                                  generator=generator)
    out = torch.where(to_mask, torch.full_like(ids, vocab.mask_id), ids)
    return torch.where(to_random, random_tokens, out)


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor):
    """Mean cross-entropy over the chosen positions, and (accuracy, perplexity) for the curves.
    `logits` is (B, L, V) for every position, or (K, V) for the K chosen positions only."""
    picked_logits = logits[chosen] if logits.dim() == 3 else logits
    picked_targets = targets[chosen]
    if picked_targets.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, {"masked_accuracy": 0.0, "perplexity": 1.0}
    loss = F.cross_entropy(picked_logits.float(), picked_targets)
    with torch.no_grad():
        accuracy = (picked_logits.argmax(-1) == picked_targets).float().mean()
    return loss, {"masked_accuracy": accuracy, "perplexity": torch.exp(loss.detach())}
