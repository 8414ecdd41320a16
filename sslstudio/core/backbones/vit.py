"""A small Vision Transformer whose patch size follows the image size (64 tokens at 32-64 px)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.tuning import HeadAttention, InputPrompt, Site, TuningSites


class Attention(HeadAttention):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        # Separate Linear layers (not one fused in-projection parameter) so adapters can wrap them.
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = self.attend(q, k, v, None)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))

    def key_value_rows(self):
        d = self.proj.in_features
        return (self.qkv, slice(d, 2 * d)), (self.qkv, slice(2 * d, 3 * d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(Backbone):
    def __init__(self, image_size: int, dim: int = 192, depth: int = 6, heads: int = 3):
        super().__init__()
        self.patch = max(2, image_size // 8) if image_size <= 64 else 16
        self.grid = max(1, image_size // self.patch)
        self.patch_embed = nn.Conv2d(3, dim, self.patch, self.patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.feature_dim = dim
        self.input_prompt: InputPrompt | None = None  # prompt tuning's, when a method sets one
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        if (grid_h, grid_w) == (self.grid, self.grid):
            return self.pos_embed
        # Other input sizes (jigsaw tiles, a different resolution) get interpolated positions.
        pos = self.pos_embed.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.patch:
            x = F.interpolate(x, size=(self.patch, self.patch), mode="bilinear", align_corners=False)
        tokens = self.patch_embed(x)
        grid_h, grid_w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2) + self._positions(grid_h, grid_w)
        if self.input_prompt is None:
            return self.norm(self.blocks(tokens)).mean(1)
        tokens, _ = self.input_prompt.prepend(tokens, None)
        tokens, _ = self.input_prompt.strip(self.blocks(tokens), None)
        return self.norm(tokens).mean(1)

    def tuning_sites(self) -> TuningSites:
        dim = self.feature_dim
        return TuningSites(
            attentions=[block.attn for block in self.blocks],
            sublayers=[Site(block, name, dim) for block in self.blocks for name in ("attn", "mlp")],
            activations=[Site(block.mlp, "1", block.mlp[0].out_features, reader=block.mlp[2])
                         for block in self.blocks],
            token_width=dim)


@register_backbone("vit_tiny", "ViT, 6 blocks 192 wide (2.7 M params), patch = image size / 8")
def build_vit_tiny(image_size: int) -> Backbone:
    return VisionTransformer(image_size)
