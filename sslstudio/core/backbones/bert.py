"""A BERT encoder whose parameter names are Hugging Face's, so a model folder (config.json,
model.safetensors, tokenizer.json), such as a sentence-transformers model, loads into it
without `transformers`. Mean pooling over real tokens, as the sentence-transformers model
cards say."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.lexical import LexicalPart
from sslstudio.core.backbones.tuning import HeadAttention, InputPrompt, Site, TuningSites


@dataclass(frozen=True)
class BertShape:
    config_json: str  # the model folder's config.json, verbatim
    max_length: int  # tokens per text used here (at most the model's positions)
    lexical_buckets: int = 0  # the folder's own words read beside the pooled states (LexicalPart)
    lexical_dims: int = 0

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)


class _Embeddings(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        hidden = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], hidden, padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(c.get("type_vocab_size", 2), hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=c.get("layer_norm_eps", 1e-12))  # noqa: N815 - HF's name
        self.dropout = nn.Dropout(c.get("hidden_dropout_prob", 0.1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        x = (self.word_embeddings(ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(torch.zeros_like(ids)))
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(HeadAttention):
    def __init__(self, c: dict):
        super().__init__()
        hidden = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.dropout = c.get("attention_probs_dropout_prob", 0.1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, t, h = x.shape

        def split(layer):
            return layer(x).view(n, t, self.heads, h // self.heads).transpose(1, 2)

        out = self.attend(split(self.query), split(self.key), split(self.value), keep,
                          self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(n, t, h)

    def key_value_rows(self):
        return (self.key, slice(None)), (self.value, slice(None))


class _DenseNorm(nn.Module):
    """BERT's output sublayer: dense, dropout, residual, LayerNorm (post-norm)."""

    def __init__(self, width_in: int, c: dict):
        super().__init__()
        self.dense = nn.Linear(width_in, c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))  # noqa: N815
        self.dropout = nn.Dropout(c.get("hidden_dropout_prob", 0.1))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c["hidden_size"], c)

    def forward(self, x, keep):
        return self.output(self.self(x, keep), x)


class _Intermediate(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.act = nn.GELU()  # HF's "gelu" is the exact (erf) GELU; a module (IA)^3 can scale

    def forward(self, x):
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c["intermediate_size"], c)

    def forward(self, x, keep):
        attended = self.attention(x, keep)
        return self.output(self.intermediate(attended), attended)


class _Encoder(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))


class _Pooler(nn.Module):
    """Present in BERT checkpoints; kept so they load strictly, unused by mean pooling."""

    def __init__(self, c: dict):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])


class BertEncoder(LexicalPart, Backbone):
    """Training reads the pooled states; a probe (embed, adapt, export) reads the folder's own
    words beside them too (`read_for_probe`): beside MiniLM as it came they lifted every text set
    (bench/lexical_beside_pretrained.py), and they have no weights for an objective to train, so a
    loss that could see them would learn less about the encoder (two dropout views of a text share
    its words exactly)."""

    modality = "text"
    # MLM and NSP heads of full BERT checkpoints; buffers some versions save.
    ignorable_prefixes = ("cls.", "embeddings.position_ids")

    def __init__(self, shape: BertShape):
        super().__init__()
        c = shape.config
        if c.get("model_type", "bert") not in ("bert",):
            raise ValueError(f"model type {c.get('model_type')!r} is not BERT; SSL Studio reads "
                             "BERT-family folders (e.g. sentence-transformers' MiniLM)")
        self.shape = shape
        self.pad_id = c.get("pad_token_id", 0)
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler = _Pooler(c)
        self.token_width = self.feature_dim = c["hidden_size"]
        self.input_prompt: InputPrompt | None = None  # prompt tuning's, when a method sets one
        self.lexical_width = self.init_lexical_part(shape.lexical_buckets, shape.lexical_dims)
        self.reads_lexical_part = False

    def token_states(self, ids: torch.Tensor):
        keep = ids != self.pad_id
        x = self.embeddings(ids)
        if self.input_prompt is not None:
            x, keep = self.input_prompt.prepend(x, keep)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        if self.input_prompt is not None:
            x, keep = self.input_prompt.strip(x, keep)
        return x, keep

    def tuning_sites(self) -> TuningSites:
        layers = self.encoder.layer
        return TuningSites(
            attentions=[layer.attention.self for layer in layers],
            # Houlsby's place in a post-norm block: after each output projection, before the
            # residual sum and LayerNorm.
            sublayers=[Site(sub, "dense", self.token_width) for layer in layers
                       for sub in (layer.attention.output, layer.output)],
            activations=[Site(layer.intermediate, "act", layer.intermediate.dense.out_features,
                              reader=layer.output.dense) for layer in layers],
            token_width=self.token_width)

    def counted(self, ids: torch.Tensor) -> torch.Tensor:
        return ids != self.pad_id

    def read_for_probe(self) -> None:
        if self.lexical_width and not self.reads_lexical_part:
            self.reads_lexical_part = True
            self.feature_dim += self.lexical_width

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, keep = self.token_states(ids)
        weights = keep.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if not self.reads_lexical_part:
            return pooled
        return torch.cat([pooled, self.lexical_features(ids)], dim=1)


@register_backbone("pretrained_bert", "BERT-family encoder from a Hugging Face model folder "
                   "(config.json, weights, tokenizer.json), e.g. all-MiniLM-L6-v2", modality="text")
def build_bert(shape: BertShape) -> Backbone:
    return BertEncoder(shape)


def model_folder_weights(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise FileNotFoundError(f"{folder} has no model.safetensors or pytorch_model.bin")


def is_model_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").exists() and (path / "tokenizer.json").exists()
