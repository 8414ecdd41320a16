"""Our engine against lightly's SimCLR example loop: same backbone, head, batch and resolution.

lightly is a benchmark-only dependency, never one of SSL Studio's. Run in an environment that
has both:

    python3 -m venv /tmp/lightly-venv
    /tmp/lightly-venv/bin/pip install "torch==2.14.1" "torchvision==0.29.1" lightly
    /tmp/lightly-venv/bin/pip install -e .
    /tmp/lightly-venv/bin/python bench/lightly_compare.py --data FOLDER [--steps 15]

lightly's loop is its examples/pytorch/simclr.py: torchvision ResNet-18 (ImageNet stem) without
its classifier, SimCLRProjectionHead(512, 512, 128), NTXentLoss, SGD at lr 0.06, batch 256,
SimCLRTransform at 32 px, a DataLoader with a worker per core. Ours runs the same model through
`sslstudio.core.run.train.train` (cache, batched augmentation, events, metrics, monitor): the backbone
is registered here under a bench-only name so both sides compute exactly the same network.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn


def lightly_rate(data: Path, steps: int, batch: int, size: int) -> float:
    from lightly.data import LightlyDataset
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms.simclr_transform import SimCLRTransform

    class SimCLR(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone
            self.projection_head = SimCLRProjectionHead(512, 512, 128)

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    model = SimCLR(nn.Sequential(*list(resnet.children())[:-1]))
    dataset = LightlyDataset(str(data), transform=SimCLRTransform(input_size=size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=os.cpu_count() or 1, persistent_workers=True)
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    times = []
    while len(times) <= steps:
        for (x0, x1), _, _ in loader:
            z0, z1 = model(x0), model(x1)
            loss = criterion(z0, z1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter())
            if len(times) > steps:
                break
    return (len(times) - 1) * batch / (times[-1] - times[0])


def register_lightly_backbone() -> str:
    from sslstudio.core.backbones.base import Backbone, register_backbone

    class TorchvisionResNet18(Backbone):
        def __init__(self, image_size: int):
            super().__init__()
            self.net = nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
            self.feature_dim = 512

        def forward(self, x):
            return self.net(x).flatten(1)

    name = "bench_resnet18_imagenet_stem"
    register_backbone(name, "lightly's example backbone (bench only)")(TorchvisionResNet18)
    return name


def engine_rate(data: Path, steps: int, batch: int, size: int, backbone: str) -> float:
    from sslstudio.core.events import StepMetrics
    from sslstudio.core.objectives.simclr import SimCLRConfig
    from sslstudio.core.run.train import train
    from sslstudio.core.run.config import TrainConfig

    objective = SimCLRConfig(optimizer="sgd", lr=0.06, weight_decay=0.0, temperature=0.5,
                             projection_hidden_dim=512, projection_dim=128, projection_layers=2)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data=str(data), out=out, objective="simclr", backbone=backbone,
                             image_size=size, batch_size=batch, epochs=1000, log_every_steps=1)
        times = []
        for event in train(config, objective):
            if isinstance(event, StepMetrics):
                times.append(time.perf_counter())
                if len(times) > steps:
                    break
    return (len(times) - 1) * batch / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    data = Path(args.data)
    backbone = register_lightly_backbone()
    ours = engine_rate(data, args.steps, args.batch_size, args.image_size, backbone)
    theirs = lightly_rate(data, args.steps, args.batch_size, args.image_size)
    print(f"{torch.get_num_threads()} threads; SimCLR, torchvision ResNet-18 (ImageNet stem), "
          f"batch {args.batch_size}, {args.image_size} px, {args.steps} steps timed")
    print(f"lightly example loop : {theirs:8.1f} images/s")
    print(f"SSL Studio engine    : {ours:8.1f} images/s")
    print(f"engine / lightly     : {ours / theirs:8.2f}")


if __name__ == "__main__":
    main()
