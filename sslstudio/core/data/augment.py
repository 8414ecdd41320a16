"""Image augmentation for whole batches on the training device, parameters drawn per sample.

Crop, scale, aspect and flip are one affine sampling grid per sample (a single grid_sample for
the batch); brightness, contrast, saturation, hue and grayscale are all linear in RGB, so they
fold into one 3x3 matrix and offset per sample (a single batched matmul). Blur is a grouped
separable convolution with a kernel per sample. No Python loop runs over the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ITU-R 601 luma, the weights torchvision's grayscale uses.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentSettings:
    crop_min_scale: float
    jitter_prob: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grayscale_prob: float
    blur_prob: float
    flip_prob: float

    @classmethod
    def from_strength(cls, strength: float, grey_data: bool, image_size: int) -> "AugmentSettings":
        """One knob in [0, 1]: 0 is the identity, 1 is SimCLR's full recipe."""
        s = min(max(float(strength), 0.0), 1.0)
        colour = 0.0 if grey_data else 1.0  # saturation, hue and grayscale do nothing to grey data
        return cls(
            crop_min_scale=1.0 - 0.92 * s,
            jitter_prob=0.8 if s > 0 else 0.0,
            brightness=0.4 * s,
            contrast=0.4 * s,
            saturation=0.4 * s * colour,
            hue=0.1 * s * colour,
            grayscale_prob=0.2 * s * colour,
            # Blur erases most of a 32 px image; SimCLR leaves it out at CIFAR size too.
            blur_prob=0.5 * s if image_size >= 64 else 0.0,
            flip_prob=0.5 if s > 0 else 0.0,
        )


def crop_transforms(width, height, centre_x, centre_y, flip) -> torch.Tensor:
    """(n, 2, 3) affine maps of crops (width and height as shares of the image, centres in
    [-1, 1], flip -1 or 1) for `resampled`."""
    theta = torch.zeros(len(width), 2, 3, device=width.device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    return theta


def resampled(images: torch.Tensor, theta: torch.Tensor, output_size: int) -> torch.Tensor:
    """Each image's crop (an affine map, relative to the image, so the same crop at any
    resolution) resized to output_size."""
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], output_size,
                                                  output_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def seeded_crops(count: int, seed: int, min_area: float) -> torch.Tensor:
    """(count, 2, 3) crops drawn as `BatchAugment.geometric` draws them (area in [min_area, 1],
    aspect 3/4..4/3, a flip every other time on average), from `seed` alone: a teacher's view
    of an item that its student can be shown again at its own resolution."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(5, count, generator=generator)
    area = min_area + (1.0 - min_area) * draws[0]
    log_area = torch.log(area)
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draws[1]
    ratio = torch.exp(torch.maximum(torch.minimum(log_ratio, -log_area), log_area))
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    flip = torch.where(draws[4] < 0.5, -1.0, 1.0)
    return crop_transforms(width, height, (2 * draws[2] - 1) * (1 - width),
                           (2 * draws[3] - 1) * (1 - height), flip)


def to_float(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return batch_uint8.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


class BatchAugment:
    """Produce random views of a float NCHW batch in [0, 1]; returns normalised views."""

    def __init__(self, settings: AugmentSettings, mean, std, output_size: int,
                 generator: torch.Generator):
        self.settings = settings
        self.output_size = output_size
        self.generator = generator
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)

    def _uniform(self, n: int, low: float, high: float, device) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=device) * (high - low) + low

    def _bernoulli(self, n: int, p: float, device) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=device) < p

    def __call__(self, images: torch.Tensor, output_size: int | None = None) -> torch.Tensor:
        views = self.geometric(images, output_size or self.output_size)
        views = self.colour(views)
        views = self.blur(views)
        views = normalize(views, self.mean.to(views.device), self.std.to(views.device))
        return views.contiguous(memory_format=torch.channels_last)

    def geometric(self, images: torch.Tensor, output_size: int) -> torch.Tensor:
        """Random resized crop (area in [crop_min_scale, 1], aspect 3/4..4/3) and h-flip."""
        n, device, s = images.shape[0], images.device, self.settings
        area = self._uniform(n, s.crop_min_scale, 1.0, device)
        log_ratio = self._uniform(n, math.log(3 / 4), math.log(4 / 3), device)
        # A crop of area a fits only with aspect in [a, 1/a]; clamping there keeps the area.
        log_area = torch.log(area)
        ratio = torch.exp(torch.maximum(torch.minimum(log_ratio, -log_area), log_area))
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        # Centre anywhere the crop stays inside the image; coordinates are in [-1, 1].
        centre_x = (self._uniform(n, -1.0, 1.0, device)) * (1.0 - width)
        centre_y = (self._uniform(n, -1.0, 1.0, device)) * (1.0 - height)
        flip = torch.where(self._bernoulli(n, s.flip_prob, device), -1.0, 1.0)
        return resampled(images, crop_transforms(width, height, centre_x, centre_y, flip), output_size)

    def colour(self, images: torch.Tensor) -> torch.Tensor:
        s = self.settings
        if s.jitter_prob == 0 and s.grayscale_prob == 0:
            return images
        n, device = images.shape[0], images.device
        eye = torch.eye(3, device=device).expand(n, 3, 3)
        luma = torch.tensor(LUMA, device=device)
        grey_matrix = luma.view(1, 3).expand(3, 3)  # every output channel = luma
        jitter = self._bernoulli(n, s.jitter_prob, device).float().view(n, 1, 1)

        def factor(amount: float) -> torch.Tensor:
            return self._uniform(n, max(0.0, 1 - amount), 1 + amount, device).view(n, 1, 1)

        # Brightness, then saturation (blend with grey), then hue (rotation about the grey axis):
        # each is a matrix, so their product applies all three at once.
        brightness = eye * factor(s.brightness)
        sat = factor(s.saturation)
        saturation = sat * eye + (1 - sat) * grey_matrix
        hue = _hue_rotation(self._uniform(n, -s.hue, s.hue, device) * 2 * math.pi)
        colour_matrix = hue @ saturation @ brightness
        # Contrast blends with the jittered image's mean grey level m: x' = c x + (1 - c) m.
        flat = images.flatten(2)  # (n, 3, HW)
        mean_rgb = flat.mean(2, keepdim=True)  # (n, 3, 1)
        mean_grey = luma.view(1, 1, 3) @ colour_matrix @ mean_rgb  # (n, 1, 1)
        contrast = factor(s.contrast)
        matrix = jitter * (contrast * colour_matrix) + (1 - jitter) * eye
        offset = jitter * ((1 - contrast) * mean_grey).expand(n, 3, 1)
        to_grey = self._bernoulli(n, s.grayscale_prob, device).float().view(n, 1, 1)
        grey_eye = to_grey * grey_matrix + (1 - to_grey) * eye
        matrix = grey_eye @ matrix
        offset = grey_eye @ offset
        out = torch.baddbmm(offset, matrix, flat).view_as(images)
        return out.clamp_(0.0, 1.0)

    def blur(self, images: torch.Tensor) -> torch.Tensor:
        s = self.settings
        if s.blur_prob == 0:
            return images
        n, c, h, w = images.shape
        device = images.device
        apply = self._bernoulli(n, s.blur_prob, device)
        # Sigma in SimCLR's range (0.1..2.0 at 224 px), scaled to this image size.
        scale = h / 224
        sigma = self._uniform(n, 0.1 * scale, 2.0 * scale, device).clamp(min=1e-3)
        radius = max(1, int(math.ceil(3 * 2.0 * scale)))
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
        kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = kernel / kernel.sum(1, keepdim=True)
        identity = (offsets == 0).float().expand(n, -1)
        kernel = torch.where(apply.view(-1, 1), kernel, identity)
        kernel = kernel.repeat_interleave(c, dim=0)  # (n*c, k)
        x = images.reshape(1, n * c, h, w)
        x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
        x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
        x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)
        return x.view(n, c, h, w)


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """RGB matrices rotating hue by `angle` radians about the grey axis (per sample)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    n = angle.shape[0]
    one_third = 1.0 / 3.0
    root = math.sqrt(one_third)
    a = cos + (1 - cos) * one_third
    b = one_third * (1 - cos) - root * sin
    c = one_third * (1 - cos) + root * sin
    matrix = torch.stack([
        torch.stack([a, b, c], -1),
        torch.stack([c, a, b], -1),
        torch.stack([b, c, a], -1),
    ], 1)
    return matrix.view(n, 3, 3)
