"""The features a run hands over (embed, adapt, export) are read the way a few-label probe reads
best (bench/features_choice.py), while training reads the encoder as it always did."""

from __future__ import annotations

import pytest
import torch

from sslstudio.core.backbones import build_backbone
from sslstudio.core.backbones.small_cnn import grid_pool


@pytest.mark.parametrize("side", [1, 2, 3, 4, 7, 8])
def test_grid_pooling_is_adaptive_average_pooling(side):
    features = torch.randn(2, 5, side, side + 1)
    expected = torch.nn.functional.adaptive_avg_pool2d(features, 2)  # (2, 5, 2, 2)
    cells = [expected[..., row, column] for row in range(2) for column in range(2)]
    assert torch.allclose(grid_pool(features, 2), torch.cat(cells, 1), atol=1e-6)


def test_a_small_cnn_reads_its_last_stage_on_a_grid_for_the_probe_only():
    encoder = build_backbone("small_cnn", 28).eval()
    x = torch.rand(3, 3, 28, 28)
    trained = encoder(x)
    assert trained.shape == (3, encoder.feature_dim) == (3, 128)
    encoder.read_for_probe()
    probe = encoder(x)
    assert probe.shape == (3, encoder.feature_dim) == (3, 512)
    # The four cells average to the pooled vector of training when the side is even.
    assert torch.allclose(probe.view(3, 4, 128).mean(1), trained, atol=1e-5)


def test_efficientnet_adds_two_earlier_stages_to_its_pooled_head():
    encoder = build_backbone("pretrained_efficientnet_lite0", 64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        trained = encoder(x)
        encoder.read_for_probe()
        probe = encoder(x)
    assert trained.shape == (2, 1280) and probe.shape == (2, encoder.feature_dim) == (2, 1280 + 40 + 112)
    assert torch.allclose(probe[:, :1280], trained, atol=1e-5)  # the head is what training saw


def test_encoders_without_a_measured_readout_read_as_trained():
    encoder = build_backbone("resnet18", 32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = encoder(x)
        encoder.read_for_probe()
        assert torch.equal(encoder(x), before)
