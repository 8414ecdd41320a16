"""torchvision ResNets with a stem that fits the input size."""

from __future__ import annotations

import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.tuning import Site, TuningSites


class ResNetBackbone(Backbone):
    ignorable_prefixes = ("fc.",)

    def __init__(self, factory, image_size: int):
        super().__init__()
        net = factory(weights=None, zero_init_residual=True)
        self.feature_dim = net.fc.in_features
        if image_size <= 64:
            # CIFAR-style stem: ImageNet's 7x7/2 conv and max-pool would leave a 32 px image 8 px
            # wide before the first block.
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity()
        elif image_size <= 128:
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net

    def tuning_sites(self) -> TuningSites:
        def width(stage: nn.Module) -> int:
            return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

        return TuningSites(sublayers=[Site(self.net, name, width(getattr(self.net, name)))
                                      for name in ("layer1", "layer2", "layer3", "layer4")],
                           channels=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("resnet18", "torchvision ResNet-18 (11 M params): the field's standard; best on a GPU")
def build_resnet18(image_size: int) -> Backbone:
    # torchvision is imported when a ResNet is built, not when the registry is read: importing it
    # pulls in torch._dynamo, a second on a laptop before the window can offer a run.
    from torchvision.models import resnet18

    return ResNetBackbone(resnet18, image_size)


@register_backbone("resnet50", "torchvision ResNet-50 (24 M params): for a GPU and large folders")
def build_resnet50(image_size: int) -> Backbone:
    from torchvision.models import resnet50

    return ResNetBackbone(resnet50, image_size)
