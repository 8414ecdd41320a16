"""What the backbone list in Run setup and `sslstudio train --help` says of each encoder is what
building it gives: a user picks between them by these figures."""

from __future__ import annotations

import re

import pytest

from sslstudio.core.backbones import BACKBONES, build_backbone
from sslstudio.core.backbones.base import count_parameters

# Built from scratch at a small size; the pretrained entries' figures are their published ones
# (the classifier included), which a headless encoder does not hold.
SCRATCH_IMAGE_BACKBONES = [name for name in BACKBONES.names()
                           if BACKBONES.get(name).modality == "image"
                           and not BACKBONES.get(name).pretrained]


@pytest.mark.parametrize("name", SCRATCH_IMAGE_BACKBONES)
def test_an_image_backbone_has_the_parameters_its_description_says(name):
    said = re.search(r"([0-9.]+) M params", BACKBONES.get(name).description)
    assert said, f"{name}: the description names no size"
    millions = count_parameters(build_backbone(name, 32)) / 1e6
    # Rounded as a person writes it: two significant figures below 10 M, whole millions above.
    assert abs(millions - float(said.group(1))) <= max(0.05 * millions, 0.01), (name, millions)
