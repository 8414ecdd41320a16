"""Next-sentence prediction (Devlin et al. 2019): is the second segment of a pair the text that
followed the first in the same document, or a segment of another document? Classified from the
pooled encoding, alone or together with masked language modelling on the same pairs, as BERT
was trained.

Pairs are made from the batch: each text is cut in two, at a sentence end where it has one
after its first word pieces (else at a random word piece in its middle, so one-sentence snippets
still give a pair: the question is then whether the second half continues the first). Half of
the pairs keep their own second segment (label 1); the others take the second segment of
another text of the batch (label 0). Each pair is [CLS] first [SEP] second [SEP].

Later work (RoBERTa, Liu et al. 2019) found that NSP adds little over MLM alone;
bench/nsp_vs_mlm.py measures whether that holds on the user's kind of data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.masking import TokenPredictionHead, corrupt, masked_token_loss
from sslstudio.core.objectives.mlm import choose_positions


@dataclass
class NSPConfig(ObjectiveConfig):
    lr: float = knob(5e-4, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    weight_decay: float = knob(0.01, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")
    mlm_weight: float = knob(1.0, low=0.0, high=10.0,
                             help="weight of masked language modelling on the same pairs "
                                  "(0: next-sentence prediction alone; 1: both, as BERT)")
    mask_ratio: float = knob(0.15, low=0.01, high=0.8, help="share of word pieces MLM predicts")


def sentence_pairs(ids: torch.Tensor, vocab, generator: torch.Generator | None):
    """Pairs from a batch of [CLS] text [SEP] rows: (pair ids of the same shape, label per row:
    1 where the second segment is the row's own continuation, 0 where it is another row's)."""
    rows, length = ids.shape
    cpu = ids.cpu()
    real = cpu != vocab.pad_id
    ends = torch.tensor(vocab.sentence_end_ids or [-1], dtype=cpu.dtype)
    draw = torch.rand(rows, 3, generator=generator, device=ids.device).cpu()
    first, second = [], []
    for row in range(rows):
        body = cpu[row][real[row]][1:-1]  # without [CLS] and [SEP]
        n = len(body)
        if n < 2:
            first.append(body)
            second.append(body[:0])
            continue
        # A cut after a sentence end that leaves both sides non-empty; else a middle word piece.
        cuts = (torch.nonzero(torch.isin(body[:-1], ends)).flatten() + 1).tolist()
        if cuts:
            cut = cuts[int(draw[row, 0] * len(cuts))]
        else:
            low, high = max(1, n // 3), max(1, (2 * n) // 3)
            cut = low + int(draw[row, 0] * (high - low + 1))
            cut = min(max(cut, 1), n - 1)
        first.append(body[:cut])
        second.append(body[cut:])
    labels = (draw[:, 1] < 0.5).long() if rows > 1 else torch.ones(rows, dtype=torch.long)
    # Another row's second segment: a random shift of the rows, never zero.
    shift = 1 + int(draw[0, 2] * (rows - 1)) if rows > 1 else 0
    out = torch.full((rows, length), vocab.pad_id, dtype=cpu.dtype)
    for row in range(rows):
        tail = second[row] if labels[row] == 1 else second[(row + shift) % rows]
        a = first[row][:max(1, length - 3 - len(tail))] if len(first[row]) else first[row]
        b = tail[:length - 3 - len(a)]
        pair = torch.cat([torch.tensor([vocab.cls_id]), a, torch.tensor([vocab.sep_id]), b,
                          torch.tensor([vocab.sep_id])]).to(cpu.dtype)
        out[row, :len(pair)] = pair
    return out.to(ids.device), labels.to(ids.device)


@register_objective
class NSP(Objective):
    name = "nsp"
    summary = ("Next-sentence prediction (BERT): does the second segment continue the first? With "
               "masked language modelling by default. Later work found it adds little over MLM alone.")
    config_cls = NSPConfig
    modalities = ("text",)
    divergence_hint = "lower lr"

    def __init__(self, encoder, config: NSPConfig, vocab):
        super().__init__(encoder, config, vocab)
        self.vocab = vocab
        self.classifier = nn.Linear(encoder.feature_dim, 2)
        self.head = TokenPredictionHead(encoder.feature_dim, vocab.size) if config.mlm_weight > 0 else None
        self.generator: torch.Generator | None = None

    def forward(self, ids: torch.Tensor):
        pairs, labels = sentence_pairs(ids, self.vocab, self.generator)
        metrics = {}
        if self.head is not None:
            chosen = choose_positions(pairs, self.vocab, self.config.mask_ratio, self.generator)
            states, keep = self.encoder.token_states(corrupt(pairs, chosen, self.vocab, self.generator))
            mlm_loss, metrics = masked_token_loss(self.head(states[chosen]), pairs, chosen)
            weights = keep.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        else:
            mlm_loss = None
            pooled = self.encoder(pairs)
        logits = self.classifier(pooled)
        loss = F.cross_entropy(logits.float(), labels)
        with torch.no_grad():
            metrics["nsp_accuracy"] = (logits.argmax(1) == labels).float().mean()
        if mlm_loss is not None:
            loss = loss + self.config.mlm_weight * mlm_loss
        return loss, metrics
