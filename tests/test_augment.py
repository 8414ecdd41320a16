from __future__ import annotations

import torch

from sslstudio.core.data.augment import AugmentSettings, BatchAugment


def _augment(strength: float, grey: bool = False, size: int = 32, seed: int = 0) -> BatchAugment:
    settings = AugmentSettings.from_strength(strength, grey, size)
    return BatchAugment(settings, [0.0] * 3, [1.0] * 3, size, torch.Generator().manual_seed(seed))


def _photo(size: int = 32) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([x, y, (x * y) ** 0.5]).unsqueeze(0)


def test_copies_of_one_image_in_a_batch_get_different_views():
    batch = _photo().repeat(8, 1, 1, 1)
    views = _augment(0.8)(batch)
    flat = views.flatten(1)
    for i in range(8):
        for j in range(i + 1, 8):
            assert (flat[i] - flat[j]).abs().max() > 1e-3, (i, j)


def test_each_stage_draws_per_sample_parameters():
    batch = _photo().repeat(6, 1, 1, 1)
    augment = _augment(1.0)
    geometric = augment.geometric(batch, 32).flatten(1)
    assert len({tuple(v[:20].round(decimals=4).tolist()) for v in geometric}) == 6
    colour = augment.colour(batch).flatten(1)
    assert len({round(float(v.mean()), 5) for v in colour}) > 1


def test_strength_zero_is_the_identity():
    batch = torch.rand(4, 3, 16, 16)
    out = _augment(0.0, size=16)(batch)
    assert torch.allclose(out, batch, atol=1e-5)


def test_views_stay_in_range_and_shape():
    batch = torch.rand(5, 3, 40, 40)
    augment = BatchAugment(AugmentSettings.from_strength(1.0, False, 40), [0.5] * 3, [0.25] * 3, 40,
                           torch.Generator().manual_seed(1))
    out = augment(batch, output_size=24)
    assert out.shape == (5, 3, 24, 24)
    raw = out * 0.25 + 0.5
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_grey_data_gets_no_colour_jitter():
    settings = AugmentSettings.from_strength(1.0, True, 32)
    assert settings.saturation == settings.hue == settings.grayscale_prob == 0
    grey = _photo()[:, :1].repeat(6, 3, 1, 1)
    out = BatchAugment(settings, [0.0] * 3, [1.0] * 3, 32, torch.Generator().manual_seed(0))(grey)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)


def test_blur_smooths_and_keeps_mean():
    settings = AugmentSettings(1.0, 0.0, 0, 0, 0, 0, 0.0, 1.0, 0.0)
    augment = BatchAugment(settings, [0.0] * 3, [1.0] * 3, 224, torch.Generator().manual_seed(0))
    noise = torch.rand(3, 3, 224, 224)
    blurred = augment.blur(noise)
    assert blurred.std() < noise.std() * 0.9
    assert torch.allclose(blurred.mean(), noise.mean(), atol=1e-2)


def test_same_seed_same_views():
    batch = torch.rand(4, 3, 32, 32)
    assert torch.equal(_augment(0.7, seed=5)(batch), _augment(0.7, seed=5)(batch))
