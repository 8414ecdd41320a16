"""LoRA: low-rank updates beside frozen Conv2d and Linear layers (Hu et al. 2021).

Layout and initialisation follow Hugging Face PEFT, so the saved adapter reads the same way:
`lora_A` (kaiming-uniform) then `lora_B` (zeros) scaled by alpha / rank, dropout on the input
of `lora_A`; for a convolution `lora_A` has the layer's kernel, stride and padding and `lora_B`
is 1x1. B starting at zero makes the adapted model equal the pretrained one at step 0, and
merging adds B @ A * scale into the base weight, after which the wrappers go away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.adapt.base import Classifier, register_adapter
from sslstudio.core.adapt.network import NetworkAdapter, NetworkConfig
from sslstudio.core.config import ConfigError, knob


class _LoRA(nn.Module):
    """base(x) + B(A(dropout(x))) * alpha / rank, with PEFT's initialisation of A and B."""

    def __init__(self, base: nn.Module, lora_A: nn.Module, lora_B: nn.Module,  # noqa: N803
                 rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.lora_A = lora_A
        self.lora_B = lora_B
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        b = self.lora_B.weight.flatten(1)  # (out, r)
        a = self.lora_A.weight.flatten(1)  # (r, in [* kh * kw])
        return (b @ a).view_as(self.base.weight) * self.scaling

    def merged(self) -> nn.Module:
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        return self.base


class LoRALinear(_LoRA):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__(base, nn.Linear(base.in_features, rank, bias=False),
                         nn.Linear(rank, base.out_features, bias=False), rank, alpha, dropout)


class LoRAConv2d(_LoRA):
    def __init__(self, base: nn.Conv2d, rank: int, alpha: float, dropout: float):
        # A is a convolution of the base's own kind: subclasses such as timm's Conv2dSame pad
        # in their forward (TensorFlow's "same", uneven at stride 2), and A must see the same
        # windows as the base for the update to line up with it and to merge into it.
        kind = type(base)
        extra = {"padding_mode": base.padding_mode} if kind is nn.Conv2d else {}
        lora_a = kind(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                      base.dilation, bias=False, **extra)
        super().__init__(base, lora_a, nn.Conv2d(rank, base.out_channels, 1, bias=False), rank, alpha,
                         dropout)


LORA_LAYERS = (LoRALinear, LoRAConv2d)


def _wanted(name: str, module: nn.Module, targets: list[str]) -> bool:
    if isinstance(module, nn.Conv2d):
        # Grouped (depthwise) convolutions have a weight per channel group; a low-rank update
        # across groups does not map onto them, and PEFT skips them too.
        kind_ok = module.groups == 1
        kind = "conv"
    elif isinstance(module, nn.Linear):
        kind_ok, kind = True, "linear"
    else:
        return False
    if not kind_ok:
        return False
    return any(t == kind or (t not in ("conv", "linear") and t in name) for t in targets)


def inject_lora(model: nn.Module, rank: int, alpha: float, dropout: float,
                targets: list[str]) -> list[str]:
    """Wrap the matching layers of `model` in place; returns their names. Base weights freeze."""
    chosen = [(name, module) for name, module in model.named_modules()
              if name and _wanted(name, module, targets)]
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapper = (LoRAConv2d if isinstance(module, nn.Conv2d) else LoRALinear)(module, rank, alpha, dropout)
        wrapper.to(module.weight.device)
        setattr(parent, child, wrapper)
    return [name for name, _ in chosen]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and remove the wrappers, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LORA_LAYERS):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.merged())
    return model


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter alone (PEFT's naming: <layer>.lora_A.weight, <layer>.lora_B.weight)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".lora_" in k}


@dataclass
class LoRAConfig(NetworkConfig):
    lr: float = knob(3e-3, low=1e-7, high=1.0, help="learning rate of the LoRA weights and the head")
    rank: int = knob(8, low=1, high=512, help="rank of each low-rank update")
    alpha: float = knob(16.0, low=0.01, high=4096.0, help="updates are scaled by alpha / rank")
    dropout: float = knob(0.0, low=0.0, high=0.9, help="dropout on the input of each LoRA update")
    target_layers: str = knob("conv,linear",
                              help="conv, linear, or comma-separated fragments of layer names")


@register_adapter("lora")
class LoRA(NetworkAdapter):
    """Low-rank updates on the encoder's Conv2d/Linear layers, base weights frozen; merged on save."""

    config_cls = LoRAConfig

    def targets(self) -> list[str]:
        targets = [t.strip() for t in self.config.target_layers.split(",") if t.strip()]
        return targets or ["conv", "linear"]

    def build(self):
        model = Classifier(self.task.new_encoder(), self.task.num_classes)
        wrapped = inject_lora(model.encoder, self.config.rank, self.config.alpha, self.config.dropout,
                              self.targets())
        if not wrapped:
            raise ConfigError(f"target_layers={self.config.target_layers!r} matches no Conv2d or "
                              f"Linear layer of {self.task.backbone}")
        for p in model.head.parameters():
            p.requires_grad_(True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        return model, [{"params": trainable, "lr": self.config.lr}]

    def finish(self, model: Classifier):
        adapter = lora_state(model.encoder)
        return merge_lora(model), {f"encoder.{k}": v for k, v in adapter.items()}
