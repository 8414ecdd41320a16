"""Jigsaw (Noroozi & Favaro 2016): cut the image into a 3x3 grid, shuffle the tiles by one of a
fixed set of permutations, and classify which. Each tile is encoded alone (the context-free
network), so tiles can only be placed by what they show."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sslstudio.core.config import knob
from sslstudio.core.objectives.base import Objective, ObjectiveConfig, register_objective
from sslstudio.core.objectives.heads import mlp_head

GRID = 3


def permutation_set(count: int, seed: int = 0, pool: int = 20000) -> np.ndarray:
    """`count` permutations of 9 tiles, far apart in Hamming distance (the paper's greedy rule,
    over a random pool instead of all 9! permutations)."""
    rng = np.random.default_rng(seed)
    candidates = np.array([rng.permutation(GRID * GRID) for _ in range(pool)])
    chosen = [np.arange(GRID * GRID)]
    distance = (candidates != chosen[0]).sum(1)
    for _ in range(count - 1):
        best = int(np.argmax(distance))
        chosen.append(candidates[best])
        distance = np.minimum(distance, (candidates != candidates[best]).sum(1))
    return np.stack(chosen)


def cut_tiles(images: torch.Tensor, tile_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(n, c, h, w) -> (n, 9, c, t, t): each cell cropped to `tile_fraction` of its side at a
    random offset, so neighbouring tiles never share an edge to match on."""
    n, c, h, w = images.shape
    cell = min(h, w) // GRID
    tile = max(1, int(round(cell * tile_fraction)))
    images = images[:, :, : cell * GRID, : cell * GRID]
    cells = images.reshape(n, c, GRID, cell, GRID, cell).permute(0, 2, 4, 1, 3, 5)
    cells = cells.reshape(n, GRID * GRID, c, cell, cell)
    slack = cell - tile
    dy, dx = (torch.randint(0, slack + 1, (2,), generator=generator, device=generator.device)
              .tolist() if slack else (0, 0))
    return cells[..., dy:dy + tile, dx:dx + tile]


@dataclass
class JigsawConfig(ObjectiveConfig):
    num_permutations: int = knob(100, low=2, high=1000,
                                 help="size of the permutation set to classify among")
    tile_fraction: float = knob(0.85, low=0.5, high=1.0,
                                help="tile side as a share of its grid cell (the gap hides edges)")
    head_hidden_dim: int = knob(512, low=8, high=8192, help="classifier head hidden width")


@register_objective
class Jigsaw(Objective):
    name = "jigsaw"
    summary = ("Pretext task: tell which shuffle of 3x3 tiles was applied. A classic baseline; "
               "wants images of 64 px or more.")
    config_cls = JigsawConfig

    def __init__(self, encoder, config: JigsawConfig, augment):
        super().__init__(encoder, config, augment)
        self.register_buffer("permutations",
                             torch.from_numpy(permutation_set(config.num_permutations)).long())
        self.head = mlp_head(encoder.feature_dim * GRID * GRID, config.head_hidden_dim,
                             config.num_permutations, 2)

    def forward(self, images: torch.Tensor):
        views = self.augment(images)
        tiles = cut_tiles(views, self.config.tile_fraction, self.augment.generator)
        n = tiles.shape[0]
        labels = torch.randint(0, self.config.num_permutations, (n,),
                               generator=self.augment.generator, device=self.augment.generator.device)
        labels = labels.to(images.device)
        order = self.permutations[labels]  # (n, 9): position i shows tile order[i]
        shuffled = tiles[torch.arange(n, device=images.device).unsqueeze(1), order]
        features = self.encoder(shuffled.flatten(0, 1))  # (9n, d)
        logits = self.head(features.reshape(n, -1))
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return F.cross_entropy(logits, labels), {"jigsaw_accuracy": accuracy}
