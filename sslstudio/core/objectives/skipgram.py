"""Skip-gram with negative sampling (Mikolov et al. 2013), over word pieces as fastText's subwords
(Bojanowski et al. 2017): each piece's input vector predicts the pieces around it against pieces
drawn from the corpus's unigram distribution ^ 0.75. The encoder is the averaged input vectors
(`word_vectors`); the output vectors are this objective's own and are not exported."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslstudio.core.backbones.word_vectors import WORD_VECTORS
from sslstudio.core.config import knob
from sslstudio.core.data.scan import DataError
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective


@dataclass
class SkipGramConfig(ObjectiveConfig):
    lr: float = knob(1e-2, low=1e-6, high=10.0, help="peak learning rate, reached after warmup")
    # Decay pulls every row towards zero at every step, rare pieces' most of all.
    weight_decay: float = knob(0.0, low=0.0, high=1.0,
                               help="decay on weights (not on biases or norm layers)")
    window: int = knob(5, low=1, high=20,
                       help="context pieces on each side, at most (each centre draws 1..window)")
    negatives: int = knob(5, low=1, high=50, help="noise pieces per centre piece")
    subsample: float = knob(1e-3, low=0.0, high=1.0,
                            help="word2vec's frequent-piece threshold t (0: keep every piece)")
    smoothing: float = knob(1e-3, low=0.0, high=1.0,
                            help="pooling weight a / (a + p(piece)); 0: a plain mean")


def skipgram_loss(centre: torch.Tensor, output_weight: torch.Tensor, ids: torch.Tensor,
                  valid: torch.Tensor, reach: torch.Tensor, negatives: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over (centre i, context j) pairs, 0 < |i - j| <= reach[i], both valid, of
    -log σ(u_j·v_i) - Σ_k log σ(-u_k·v_i), with the noise pieces k = negatives[i] (K per centre,
    shared by its contexts). centre: (B, L, D) input vectors v; returns (loss, pair count)."""
    context = output_weight[ids]
    # Every centre against every piece of its text in one product: (B, L, L) scores cost less
    # than a gather per pair, or a shifted product per offset (whose slices' backward dominated).
    scores = centre @ context.transpose(1, 2)
    position = torch.arange(ids.shape[1], device=ids.device)
    distance = (position[None, :] - position[:, None]).abs()
    counted = (valid[:, :, None] & valid[:, None, :] & (distance > 0)
               & (distance <= reach[..., None]))
    positive = (F.softplus(-scores) * counted).sum()
    pairs = counted.sum(2).to(centre.dtype)
    noise = (centre.unsqueeze(2) * output_weight[negatives]).sum(-1)
    negative = (F.softplus(noise).sum(-1) * pairs).sum()
    count = pairs.sum()
    return (positive + negative) / count.clamp(min=1.0), count


@register_objective
class SkipGram(Objective):
    name = "skipgram"
    summary = ("Skip-gram word-piece vectors (word2vec/fastText), averaged per text. Learns "
               "useful text features in minutes on a CPU; no word order beyond the window.")
    config_cls = SkipGramConfig
    modalities = ("text",)
    backbone = WORD_VECTORS  # the encoder it trains (its `token_vectors`)
    divergence_hint = "lower lr"
    can_collapse = False

    def __init__(self, encoder, config: SkipGramConfig, vocab):
        super().__init__(encoder, config, vocab)
        if not hasattr(encoder, "token_vectors"):
            raise DataError(f"skipgram trains the {WORD_VECTORS} backbone (backbone auto picks it)")
        self.vocab = vocab
        self.output = nn.Embedding(vocab.size, encoder.token_width)
        nn.init.zeros_(self.output.weight)
        regular = torch.ones(vocab.size)
        regular[list(vocab.special_ids)] = 0.0
        # Until the corpus is seen: uniform noise, no subsampling. Buffers, so that a resumed
        # run draws from the distribution it started with.
        self.register_buffer("noise", regular.clone())
        self.register_buffer("keep", regular.clone())
        self.generator: torch.Generator | None = None

    def observe_corpus(self, ids: np.ndarray) -> None:
        """Noise distribution, subsampling and the encoder's pooling weights from the tokenized
        corpus (N, L)."""
        regular = self.keep.cpu() > 0
        counts, frequency = piece_frequencies(ids, regular)
        noise, keep = noise_and_keep(counts, frequency, regular, self.config.subsample)
        self.noise.copy_(noise)
        self.keep.copy_(keep)
        self.encoder.token_weight.copy_(pooling_weights(frequency, regular, self.config.smoothing))
        self.encoder.observe_corpus(ids)

    def forward(self, ids: torch.Tensor):
        ids, valid, reach, negatives = sampled_windows(ids, self.keep, self.noise, self.config.window,
                                                       self.config.negatives, self.generator)
        loss, pairs = skipgram_loss(self.encoder.token_vectors(ids), self.output.weight, ids,
                                    valid, reach, negatives)
        return loss, {"pairs": pairs.detach()}


def piece_frequencies(ids: np.ndarray, regular: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each piece's count in the tokenized corpus (N, L) and its share of all regular pieces
    (special pieces and padding count for nothing)."""
    counts = np.bincount(np.asarray(ids).ravel(), minlength=len(regular))[:len(regular)]
    counts = torch.where(regular, torch.from_numpy(counts.astype(np.float64)), 0.0)
    return counts, counts / counts.sum().clamp(min=1.0)


def noise_and_keep(counts: torch.Tensor, frequency: torch.Tensor, regular: torch.Tensor,
                   subsample: float) -> tuple[torch.Tensor, torch.Tensor]:
    """word2vec's noise distribution (counts ^ 0.75) and each piece's chance of being kept,
    sqrt(t/f) + t/f at most 1 (every regular piece, with no subsampling)."""
    seen = regular & (counts > 0)
    keep = regular.double()
    if subsample:
        keep = torch.where(seen, ((subsample / frequency).sqrt() + subsample / frequency).clamp(max=1.0),
                           keep)
    return counts.pow(0.75), keep


def pooling_weights(frequency: torch.Tensor, regular: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Smooth inverse frequency a / (a + p(piece)) (Arora et al. 2017); special pieces ([CLS],
    [SEP], ...) mark every text alike and weigh nothing."""
    weight = smoothing / (smoothing + frequency) if smoothing else torch.ones_like(frequency)
    return torch.where(regular, weight, 0.0)


def sampled_windows(ids: torch.Tensor, keep: torch.Tensor, noise: torch.Tensor, window: int,
                    negatives: int, generator: torch.Generator | None):
    """A step's draws for `skipgram_loss`: frequent pieces dropped by their keep chance (the
    rest close up, so windows reach past them, as word2vec's do), each centre's reach in
    1..window, and `negatives` noise pieces per centre. Returns (ids, valid, reach, negatives)."""
    draw = torch.rand(ids.shape, device=ids.device, generator=generator)
    taken = draw < keep[ids]
    order = torch.sort((~taken).to(torch.int8), dim=1, stable=True).indices
    length = max(1, int(taken.sum(1).max()))
    order = order[:, :length]
    ids, valid = ids.gather(1, order), taken.gather(1, order)
    reach = torch.randint(1, window + 1, ids.shape, device=ids.device, generator=generator)
    drawn = torch.multinomial(noise, ids.numel() * negatives, replacement=True, generator=generator)
    return ids, valid, reach, drawn.view(*ids.shape, negatives)
