"""Full fine-tuning: every weight trains, the backbone at a smaller learning rate than the head."""

from __future__ import annotations

from dataclasses import dataclass

from sslstudio.core.adapt.base import Classifier, register_adapter
from sslstudio.core.adapt.network import NetworkAdapter, NetworkConfig
from sslstudio.core.config import knob


@dataclass
class FinetuneConfig(NetworkConfig):
    backbone_lr_scale: float = knob(0.1, low=0.0, high=1.0,
                                    help="backbone learning rate as a share of the head's")


@register_adapter("finetune")
class Finetune(NetworkAdapter):
    """Every weight trains, with augmentation and a smaller backbone learning rate."""

    config_cls = FinetuneConfig

    def build(self):
        model = Classifier(self.task.new_encoder(), self.task.num_classes)
        encoder = [p for p in model.encoder.parameters()]
        groups = [{"params": list(model.head.parameters()), "lr": self.config.lr}]
        if self.config.backbone_lr_scale > 0:
            groups.append({"params": encoder, "lr": self.config.lr * self.config.backbone_lr_scale})
        else:
            for p in encoder:
                p.requires_grad_(False)
        return model, groups
