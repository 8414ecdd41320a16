from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslstudio.core.monitor import collapse_metrics, effective_rank, knn_accuracy, project_2d


def test_collapse_meter_tells_healthy_from_collapsed():
    torch.manual_seed(0)
    healthy = collapse_metrics(torch.randn(500, 64), None)
    assert healthy["embedding_std"] == pytest.approx(1 / 8, rel=0.1)
    assert healthy["embedding_std_reference"] == pytest.approx(1 / 8)
    assert healthy["effective_rank"] > 50 and abs(healthy["mean_cosine"]) < 0.02
    collapsed = collapse_metrics(torch.ones(500, 64) + 1e-4 * torch.randn(500, 64), None)
    assert collapsed["embedding_std"] < 0.01 * healthy["embedding_std"] * 10
    assert collapsed["mean_cosine"] > 0.99


def test_effective_rank_counts_the_dimensions_used():
    torch.manual_seed(0)
    three = torch.randn(400, 3) @ torch.randn(3, 32)
    assert effective_rank(three) < 3.01
    assert effective_rank(torch.randn(400, 32)) > 25


def test_knn_accuracy_on_separable_and_random_labels():
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 5
    labels = torch.arange(4).repeat_interleave(30)
    features = centres[labels] + torch.randn(120, 16)
    assert knn_accuracy(features, labels) == 1.0
    shuffled = labels[torch.randperm(120)]
    assert knn_accuracy(features, shuffled) < 0.5
    assert np.isnan(knn_accuracy(features, torch.full((120,), -1)))


def test_projection_is_aligned_to_the_previous_snapshot():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 10)) * np.array([5, 3] + [0.1] * 8)
    first = project_2d(features, None)
    angle = 2.0
    rotation = np.eye(10)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    second = project_2d(features @ rotation * 1.7, first)  # same geometry, new axes and scale
    assert np.abs(second - first).max() < 1e-3
    unaligned = project_2d(features @ rotation, None)
    assert np.abs(unaligned - first).max() > 0.1


def test_a_loss_that_sits_at_zero_is_said_once_and_shown_with_its_exponent():
    """A continued MiniLM printed "loss 0.0000" at all 216 steps and lost 6 points (issue 27):
    the line shows such a loss as it is, and the run says once that it informs nothing."""
    from sslstudio.core.objectives.simcse import SimCSE
    from sslstudio.core.text import format_loss
    from sslstudio.core.run.judge import FlatLoss

    assert format_loss(3.2e-6) == "3.2e-06" and format_loss(0.25) == "0.2500" and format_loss(0.0) == "0.0000"
    flat = FlatLoss()
    assert not any(flat.sat_at_zero(0.5, step) for step in range(100))
    assert not any(flat.sat_at_zero(1e-5, step) for step in range(100, 100 + FlatLoss.LOGS - 1))
    assert not flat.sat_at_zero(0.2, 200)  # a loss that comes back starts the count again
    said = [step for step in range(300, 400) if flat.sat_at_zero(1e-6, step)]
    assert said == [300 + FlatLoss.LOGS - 1]  # once, after LOGS low logs in a row
    message = flat.message(8, SimCSE)
    assert "since step 300" in message and "batch of 8" in message and "simcse" in message
    assert not flat.sat_at_zero(float("nan"), 500)


def test_uniformity_is_the_log_mean_gaussian_potential_over_pairs():
    from sslstudio.core.monitor import uniformity

    unit = torch.nn.functional.normalize(torch.randn(12, 5), dim=1)
    pairs = [math.exp(-2.0 * float(((unit[i] - unit[j]) ** 2).sum()))
             for i in range(12) for j in range(12) if i != j]
    assert uniformity(unit) == pytest.approx(math.log(sum(pairs) / len(pairs)), rel=1e-6)
    assert uniformity(unit[:1].repeat(6, 1)) == pytest.approx(0.0, abs=1e-9)  # all in one place


def test_spectrum_alpha_reads_the_eigenvalue_decay():
    from sslstudio.core.monitor import singular_values, spectrum_alpha

    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(64, 64, generator=generator, dtype=torch.float64))
    for alpha in (0.5, 1.0, 2.0):
        scale = torch.arange(1, 65, dtype=torch.float64) ** (-alpha / 2)  # eigenvalues i^-alpha
        features = (basis * scale) @ basis.T  # square, so its Gram has exactly those eigenvalues
        assert spectrum_alpha(singular_values(features)) == pytest.approx(alpha, rel=1e-6)
    torch.testing.assert_close(singular_values(features),
                               torch.linalg.svdvals(features), rtol=1e-6, atol=1e-9)


def test_an_encoders_batchnorms_fold_into_its_convolutions_for_snapshots_with_the_same_features():
    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.backbones.base import folded_for_inference
    from sslstudio.core.backbones.text_transformer import TextShape

    torch.manual_seed(0)
    encoder = build_backbone("small_cnn", 32)
    x = torch.rand(16, 3, 32, 32)
    for _ in range(3):  # running statistics that are not the identity
        encoder(x * 3.0 + 1.0)
    assert folded_for_inference(encoder) is None, "a training encoder's BatchNorms normalise by the batch"
    encoder.eval()
    folded = folded_for_inference(encoder)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        expected, got = encoder(x), folded(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert encoder.training is False and any(
        isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules()), "the encoder itself is untouched"
    # Nothing to fold: no BatchNorm (word vectors), or a graph torch.fx does not trace.
    assert folded_for_inference(build_backbone("word_vectors", TextShape(vocab_size=50, max_length=8,
                                                                          width=8)).eval()) is None
    assert folded_for_inference(build_backbone("pretrained_efficientnet_lite0", 32).eval()) is None
