"""CLIP (Radford et al. 2021) from a Hugging Face model folder (config.json, model.safetensors or
pytorch_model.bin, tokenizer.json), with Hugging Face's parameter names so such a folder loads
without `transformers`: an image tower and a text tower projected into one space.

Zero-shot for images: each class's description goes through the text tower ("a photo of a
{class}." by default, the template the paper found better than the bare name), each image
through the image tower, and the class is the nearest description by cosine similarity scaled by
the model's learned temperature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from sslstudio.core.backbones.weights import WeightsError
from sslstudio.core.backbones.bert import model_folder_weights
from sslstudio.core.data import load_image_folder
from sslstudio.core.data.augment import normalize, to_float
from sslstudio.core.data.scan import DataError
from sslstudio.core.zeroshot.base import ZeroShotModel, register_zero_shot_model

# The defaults of Hugging Face's CLIPConfig (ViT-B/32): a config.json may leave any of them out.
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                     layer_norm_eps=1e-5, eos_token_id=2, pad_token_id=1)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, image_size=224, patch_size=32, num_channels=3,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipConfig:
    text: dict
    vision: dict
    projection_dim: int = 512
    logit_scale_init: float = 2.6592

    @classmethod
    def from_json(cls, config: dict) -> "ClipConfig":
        return cls({**TEXT_DEFAULTS, **config.get("text_config", {})},
                   {**VISION_DEFAULTS, **config.get("vision_config", {})},
                   int(config.get("projection_dim", 512)),
                   float(config.get("logit_scale_init_value", 2.6592)))


def _activation(name: str) -> nn.Module:
    if name == "quick_gelu":
        return _QuickGELU()
    if name in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="none" if name == "gelu" else "tanh")
    raise WeightsError(f"CLIP activation {name!r} is not supported (quick_gelu or gelu)")


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Attention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        width = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, t, w = x.shape

        def split(layer):
            return layer(x).view(n, t, self.heads, w // self.heads).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(split(self.q_proj), split(self.k_proj),
                                                         split(self.v_proj), attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, w))


class _Mlp(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.activation = _activation(c["hidden_act"])
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class _Layer(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, c: dict):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.self_attn = _Attention(c)
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.mlp = _Mlp(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Encoder(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class _TextEmbeddings(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.token_embedding = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.token_embedding(ids) + self.position_embedding(positions)[None]


class ClipTextModel(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.config = c
        self.embeddings = _TextEmbeddings(c)
        self.encoder = _Encoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled state: the final LayerNorm's output at each text's end-of-text token."""
        t = ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        # A query sees earlier tokens that are not padding (True: may attend).
        mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
        states = self.final_layer_norm(self.encoder(self.embeddings(ids), mask))
        return states[torch.arange(len(ids), device=ids.device), end_positions(ids, self.config)]


def end_positions(ids: torch.Tensor, c: dict) -> torch.Tensor:
    """Where each text's end-of-text token is. Configs saved with eos_token_id 2 (the original
    OpenAI conversions) mark it by the largest id instead, as Hugging Face's model does."""
    eos = c.get("eos_token_id", 2)
    if eos == 2:
        return ids.argmax(-1)
    return (ids == eos).int().argmax(-1)


class _VisionEmbeddings(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        width, patch = c["hidden_size"], c["patch_size"]
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.patch_embedding = nn.Conv2d(c["num_channels"], width, patch, stride=patch, bias=False)
        patches = (c["image_size"] // patch) ** 2
        self.position_embedding = nn.Embedding(patches + 1, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(len(images), 1, -1)
        return torch.cat([cls, patches], 1) + self.position_embedding.weight[None]


class ClipVisionModel(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.embeddings = _VisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])  # HF's spelling
        self.encoder = _Encoder(c)
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        states = self.encoder(self.pre_layrnorm(self.embeddings(images)))
        return self.post_layernorm(states[:, 0])


class Clip(nn.Module):
    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        self.text_model = ClipTextModel(config.text)
        self.vision_model = ClipVisionModel(config.vision)
        self.text_projection = nn.Linear(config.text["hidden_size"], config.projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.vision["hidden_size"], config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init))

    def encode_text(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text_projection(self.text_model(ids, attention_mask)), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.visual_projection(self.vision_model(images)), dim=-1)


# The CLIP the app offers to fetch, only after the user agrees: OpenAI's ViT-B/32 in Hugging
# Face's layout, the files zero-shot reads and nothing else.
CLIP_DOWNLOAD = {"repo": "openai/clip-vit-base-patch32", "title": "CLIP ViT-B/32", "size": "about 605 MB", "megabytes": 605, "licence": "MIT",
                 "files": ("config.json", "model.safetensors", "tokenizer.json",
                           "preprocessor_config.json")}


def cached_clip_folder() -> Path | None:
    """The CLIP folder already in the Hugging Face cache, if any (the one the app downloads)."""
    from sslstudio.core.backbones.pretrained import hf_cache_dir

    repo = hf_cache_dir() / ("models--" + CLIP_DOWNLOAD["repo"].replace("/", "--"))
    try:
        snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    return snapshot if is_clip_folder(snapshot) and (snapshot / "tokenizer.json").exists() else None


def download_clip() -> Path:
    """Fetch CLIP_DOWNLOAD's files into the Hugging Face cache; returns the model folder. Only
    on the user's explicit request; raises OSError with advice when offline."""
    from sslstudio.core.backbones.pretrained import download_model_folder

    folder = download_model_folder(CLIP_DOWNLOAD, "copy a CLIP folder (config.json, model.safetensors, "
                                                  "tokenizer.json) here and choose it")
    if not is_clip_folder(folder):
        raise OSError(f"{folder} was downloaded but is not a CLIP folder")
    return folder


def is_clip_folder(path: Path) -> bool:
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "clip"


def load_clip(folder: Path) -> Clip:
    """The model of a Hugging Face CLIP folder, weights loaded strictly (buffers some versions
    save, such as position ids, are left out)."""
    config = ClipConfig.from_json(json.loads((Path(folder) / "config.json").read_text()))
    model = Clip(config)
    try:
        weights_file = model_folder_weights(folder)
    except FileNotFoundError as error:
        raise WeightsError(str(error)) from None
    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{weights_file} does not fit a CLIP of its config.json "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


@register_zero_shot_model("clip")
class ClipZeroShot(ZeroShotModel):
    modality = "image"
    default_template = "a photo of a {}."

    def __init__(self, folder: Path, device: torch.device):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        check_clip_folder(self.folder)
        self.device = device
        self.model = load_clip(folder).to(device)
        self.image_size = int(self.model.config.vision["image_size"])
        self.mean, self.std = image_normalisation(self.folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        length = int(self.model.config.text["max_position_embeddings"])
        self.tokenizer.enable_truncation(max_length=length)
        pad_id = self.tokenizer.token_to_id("<|endoftext|>")
        self.tokenizer.enable_padding(pad_id=self.model.config.text.get("pad_token_id", 1)
                                      if pad_id is None else pad_id)
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100))

    @classmethod
    def recognises(cls, path: Path) -> bool:
        return is_clip_folder(path)

    @classmethod
    def description(cls) -> str:
        return "a CLIP model folder (Hugging Face layout: config.json, model.safetensors, tokenizer.json)"

    def load_items(self, data_dir: Path, control) -> Iterator:
        # No cache: the model folder is the user's, and nothing of ours goes in it.
        data = yield from load_image_folder(Path(data_dir), self.image_size, control=control)
        return data

    def item_features(self, batch: torch.Tensor) -> torch.Tensor:
        images = to_float(batch.to(self.device))
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, device=self.device)
        std = torch.tensor(self.std, device=self.device)
        return self.model.encode_image(normalize(images, mean, std))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], device=self.device)
        mask = torch.tensor([e.attention_mask for e in encodings], device=self.device)
        return self.model.encode_text(ids, mask)


def image_normalisation(folder: Path) -> tuple[tuple, tuple]:
    """The folder's preprocessor_config.json mean and std, else OpenAI's."""
    try:
        config = json.loads((folder / "preprocessor_config.json").read_text())
        mean, std = tuple(config["image_mean"]), tuple(config["image_std"])
        if len(mean) == 3 and len(std) == 3 and all(math.isfinite(v) and v > 0 for v in std):
            return mean, std
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return OPENAI_MEAN, OPENAI_STD


def check_clip_folder(folder: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        if not (Path(folder) / name).exists():
            raise DataError(f"{folder} has no {name}: a CLIP folder needs config.json, its weights "
                            "and tokenizer.json (Hugging Face layout)")

