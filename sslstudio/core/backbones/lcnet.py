"""PP-LCNet at half width (timm's lcnet_050, from scratch): 0.6 M parameters of depthwise
convolutions, built for a CPU's latency. A distillation student where small_cnn is too plain:
it reads 96 px and more at a few milliseconds an image on two cores."""

from __future__ import annotations

import torch

from sslstudio.core.backbones.base import Backbone, register_backbone


class LCNet(Backbone):
    def __init__(self, image_size: int):
        super().__init__()
        import timm  # about a second to import; only the timm-built backbones need it

        self.net = timm.create_model("lcnet_050", pretrained=False, num_classes=0)
        # Its pooled output is the 1280-wide layer after the 256 features, as MobileNetV3's.
        self.feature_dim = int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("lcnet_050", "PP-LCNet x0.5 from scratch (0.6 M params, 1280-d): a fast CPU "
                   "student for distillation at 96 px", cpu_friendly=True)
def build_lcnet(image_size: int) -> Backbone:
    return LCNet(image_size)
