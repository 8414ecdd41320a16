"""Images: decoded once at the run's resolution, augmented on the device, normalised as the
encoder's weights or the folder's statistics say."""

from __future__ import annotations


import dataclasses

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch
from PIL import Image

from sslstudio.core.backbones import BACKBONES, build_backbone
from sslstudio.core.backbones.pretrained import cached_weights
from sslstudio.core.data import load_image_folder
from sslstudio.core.data.augment import (
    AugmentSettings,
    BatchAugment,
    normalize,
    resampled,
    seeded_crops,
    to_float,
)
from sslstudio.core.data.image_folder import typical_side
from sslstudio.core.data.images import IMAGE_EXTENSIONS, SkipItem, decode_image
from sslstudio.core.data.scan import DataError, list_folder
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.run.folder import RunFolder

from sslstudio.core.run.config import DEFAULT_OBJECTIVE, budget_minutes
from sslstudio.core.preprocess import (
    PREPROCESSES,
    Preprocess,
    PreprocessError,
)


# Pixels a CPU encodes at once. Small batches stay in the caches: 10,240 images through the
# small CNN on two cores, at 64 px: 2,200 images/s in batches of 16, 2,600 at 32 (this budget),
# 1,500 at 64, 1,100 at 512 (which held 460 MB more at its peak); at 28 px: 11,800 at 64, 8,200
# at 167 (this budget), 7,800 at 512.
INFERENCE_PIXELS_CPU = 32 * 64 * 64
# A teacher's further views of an image keep at least this share of it: what a crop of a quarter
# of a glyph or a stamp shows is not what the whole does, which the student must learn.
TEACHER_VIEW_MIN_AREA = 0.35


@PREPROCESSES.register("image")
@dataclass
class ImagePreprocess(Preprocess):
    modality: ClassVar[str] = "image"
    input_name: ClassVar[str] = "image"
    item_noun: ClassVar[str] = "images"
    default_objective: ClassVar[str] = DEFAULT_OBJECTIVE
    continuing_objective: ClassVar[str] = DEFAULT_OBJECTIVE
    # Continued with no labels for 5 minutes, EfficientNet-Lite0 against itself as it came: at
    # x0.1 stamps lost 3.1 points (scripts +15.1, xfig +1.6, app screenshots +3.2); at x0.03 none
    # lost (-0.0, +11.4, +2.8, +2.8), chosen with every image set held out by the best worst case
    # on the others, and the better held-out mean (+4.2 against +3.2 for the best mean rank's
    # picks; bench/continued_lr_scale.py); x0.01: -0.2, +7.9, +2.3, +2.8.
    continuing_lr_scale: ClassVar[float] = 0.03
    # small_cnn widened to 512 before pooling: its pooled 128 were too narrow to hold a teacher's
    # features (scripts 0.492 against 0.342 at 10 labels a class, stamps 0.675 against 0.646,
    # ahead on all five image sets; bench/distill.py and bench/distill_readout.py). Widened to
    # 1,280 instead (Lite0's width; 10 minutes, 32 px): stamps 0.680 against 0.677, scripts 0.541
    # against 0.529, xfig drawings 0.783 against 0.784, app screenshots 0.589 against 0.598, each
    # within the draws' noise, for 12-24% fewer steps and a larger file: not taken.
    student_backbone: ClassVar[str] = "small_cnn_expanded"
    pretrained_by_default_on_cpu: ClassVar[bool] = True
    image_size: int = 0
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    grey: bool = False
    class_names: tuple[str, ...] = ()
    pretrained: dict = field(default_factory=dict)  # where pretrained weights came from
    # The size features are read at, when it is not the training size: a pretrained encoder
    # trained on a CPU at 96 px still reads best at its own 224 (bench/quality.py).
    feature_size: int = 0

    RESIZE: ClassVar[str] = "shorter side to image_size, then centre crop"

    @classmethod
    def _from_table(cls, table: dict) -> "ImagePreprocess":
        return cls(int(table["image_size"]), [float(v) for v in table["mean"]],
                   [float(v) for v in table["std"]], bool(table.get("grey", False)),
                   tuple(table.get("class_names", ())), dict(table.get("pretrained", {})),
                   int(table.get("feature_size", 0)))

    def to_table(self) -> dict:
        table = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                 "channel_order": "RGB", "resize": self.RESIZE, "grey": self.grey,
                 "class_names": list(self.class_names)}
        if self.pretrained:
            table["pretrained"] = dict(self.pretrained)
        if self.feature_size and self.feature_size != self.image_size:
            table["feature_size"] = self.feature_size
        return table

    def for_features(self) -> "ImagePreprocess":
        if not self.feature_size or self.feature_size == self.image_size:
            return self
        return dataclasses.replace(self, image_size=self.feature_size, feature_size=0)

    def inference_batch(self, device, requested: int) -> int:
        if device.type != "cpu":
            return requested
        return int(max(16, min(requested, INFERENCE_PIXELS_CPU // max(1, self.image_size ** 2))))

    def features_cost(self) -> float:
        # A convnet's cost grows with the pixels it reads.
        features = self.for_features()
        return (features.image_size / self.image_size) ** 2 if features is not self else 1.0

    def feature_items(self, data, indices):
        return self.items_at(data, indices, self.for_features().image_size)

    def reread(self, data, indices, folder):
        return self.items_at(data, indices, self.image_size)

    @staticmethod
    def items_at(data, indices, size: int) -> torch.Tensor:
        """Items of an image dataset decoded at `size` px (the dataset's own copies when they
        are at that size)."""
        if size == data.image_size:
            return data.batch(indices)
        images = []
        for index in indices:
            try:
                images.append(decode_image(Path(data.paths[index]), size)[0])
            except (SkipItem, OSError):
                # Changed or gone since the scan: the training copy, enlarged, stands in.
                images.append(np.asarray(Image.fromarray(data.images[index]).resize(
                    (size, size), Image.BILINEAR)))
        return torch.from_numpy(np.stack(images))

    def encoder_shape(self) -> int:
        return self.image_size

    def teacher_view_crops(self, count, seed):
        return seeded_crops(count, seed, TEACHER_VIEW_MIN_AREA)

    def cropped(self, inputs, crops):
        return resampled(inputs, crops, inputs.shape[-1]).contiguous(memory_format=torch.channels_last)

    def load(self, data_dir, folder, control, labels_from_folders=False) -> Iterator:
        return (yield from load_image_folder(Path(data_dir), self.image_size, labels_from_folders,
                                             cache_dir=RunFolder(folder).data_cache_dir, control=control))

    def training_inputs(self, batch, device):
        return to_float(batch.to(device, non_blocking=True))

    def normalised(self, inputs):
        mean = torch.tensor(self.mean, device=inputs.device)
        std = torch.tensor(self.std, device=inputs.device)
        return normalize(inputs, mean, std).contiguous(memory_format=torch.channels_last)

    def prepare_model(self, model):
        # channels_last is faster for convolutions on CUDA and on the CPU's oneDNN.
        return model.to(memory_format=torch.channels_last)

    def export_normalisation(self):
        return list(self.mean), list(self.std)

    def export_description(self, files):
        size = self.image_size
        model_input = {
            "name": "image", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size],
            "channel_order": "RGB", "range": [0.0, 1.0], "normalization_in_model": True,
            "mean": list(self.mean), "std": list(self.std),
        }
        preprocess = {
            "modality": "image",
            "image_size": size,
            "exif_transpose": True,
            "mode": "RGB; greyscale replicated to 3 channels; transparency composited on white",
            "jpeg_draft": f"Pillow draft('RGB', ({2 * size}, {2 * size})) before loading JPEGs",
            "resize": f"shorter side to {size} px, Pillow bilinear with reducing_gap=3.0 "
                      "(other side rounded, at least the same size)",
            "crop": f"centre {size}x{size}: left = (width - {size}) // 2, top = (height - {size}) // 2",
            "scale": "uint8 / 255",
        }
        return model_input, preprocess

    def folder_inputs(self, data_dir, count, folder, wanted=None):
        images, names = decoded_images(Path(data_dir), self.image_size, count, wanted)
        return pixels_to_input(images), names

    def file_input(self, path, folder):
        try:
            array, _ = decode_image(Path(path), self.image_size)
        except SkipItem as reason:
            raise PreprocessError(f"cannot use {Path(path).name}: {reason}") from None
        return pixels_to_input(array[None]), {"image": array}

    def adaptation_augment(self, strength, grey, device, seed):
        settings = AugmentSettings.from_strength(strength, grey, self.image_size)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        return BatchAugment(settings, torch.tensor(self.mean, device=device),
                            torch.tensor(self.std, device=device), self.image_size, generator)

    @classmethod
    def default_backbone(cls, config, device) -> str:
        if device.type == "cpu" and not config.weights:
            # An ImageNet encoder already on disk beats anything two cores train from scratch.

            if cached_weights("pretrained_efficientnet_lite0") is not None:
                return "pretrained_efficientnet_lite0"
        return "small_cnn" if device.type == "cpu" else "resnet18"

    @classmethod
    def load_training_data(cls, config, backbone, device, run, control) -> Iterator:
        # Listed once: the size is read from a spread of the listed files, and a second walk of a
        # big folder would cost as much as reopening its cache.
        listing = list_folder(Path(config.data), IMAGE_EXTENSIONS, config.labels_from_folders)
        size, reason = chosen_image_size(config, Path(config.data), device,
                                         BACKBONES.get(backbone).pretrained, listing, backbone,
                                         OBJECTIVES.get(config.objective))
        data = yield from load_image_folder(Path(config.data), size, config.labels_from_folders,
                                            cache_dir=run.data_cache_dir, control=control,
                                            listing=listing)
        data.plan_notes = (reason,) if reason else ()
        return data

    @classmethod
    def for_training(cls, config, backbone, data, run, resume, device):
        info = BACKBONES.get(backbone).pretrained
        weights = config.weights or None
        pretrained = {}
        if info is not None:
            # The weights' own normalisation, not the folder's: that is what they expect.
            mean, std = [float(v) for v in info.mean], [float(v) for v in info.std]
            # A resumed run's checkpoint holds the weights; the original file may be gone.
            weights = None if resume else weights or pretrained_weights_file(backbone)
            pretrained = {"architecture": info.arch, "source": info.source, "licence": info.licence,
                          "weights": str(weights) if weights else _weights_first_used(run),
                          "trained_size": info.input_size, "interpolation": info.interpolation}
        else:
            mean, std = data.channel_stats(seed=config.seed)
        # Convolutions (and timm's ViTs, with dynamic sizes) read any size: features come at the
        # weights' own size even when the CPU trains smaller.
        feature_size = info.input_size if info is not None and info.input_size > data.image_size else 0
        preprocess = cls(data.image_size, mean, std, data.grey, tuple(data.class_names), pretrained,
                         feature_size)
        return preprocess, None if resume else weights

    def build_encoder(self, config, backbone, weights):
        encoder = build_backbone(backbone, self.image_size, weights)
        if self.pretrained:
            encoder.freeze_batchnorm = config.freeze_batchnorm != "no"
        elif config.freeze_batchnorm == "yes":
            encoder.freeze_batchnorm = True
        return encoder

    def make_objective(self, objective_cls, encoder, objective_config, config, data, run, device,
                       generator):

        # An objective that compares a view with fixed targets (distillation) says how strong
        # its one view is; the run's strength is for objectives that compare two views.
        strength = getattr(objective_config, "view_strength", config.augmentation_strength)
        settings = AugmentSettings.from_strength(strength, data.grey, self.image_size)
        augment = BatchAugment(settings, self.mean, self.std, self.image_size, generator)
        augment.mean, augment.std = augment.mean.to(device), augment.std.to(device)
        return objective_cls(encoder, objective_config, augment)

    def plan_facts(self) -> dict:
        facts = {"image_size": self.image_size, "grey": self.grey}
        if self.feature_size and self.feature_size != self.image_size:
            facts["feature_size"] = self.feature_size
        return facts


def decoded_images(data_dir: Path, size: int, count: int, wanted: list[str] | None = None):
    """Up to `count` images spread over the folder (or the `wanted` item keys), decoded exactly
    as the app decodes them; returns (uint8 NHWC array, item keys)."""

    if wanted is not None:
        paths = [Path(data_dir) / item for item in wanted]
    else:
        listing = list_folder(Path(data_dir), IMAGE_EXTENSIONS, False)
        picks = np.unique(np.linspace(0, len(listing.paths) - 1,
                                      min(count * 2, len(listing.paths))).astype(int))
        paths = [listing.paths[i] for i in picks]
    images, names = [], []
    for path in paths:
        if wanted is None and len(images) >= count:
            break
        try:
            array, _ = decode_image(path, size)
        except (SkipItem, OSError):
            continue
        images.append(array)
        names.append(path.relative_to(data_dir).as_posix())
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), []
    return np.stack(images), names


def pixels_to_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels as the exported model takes them: float NCHW RGB in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


# A 224 px EfficientNet trains at ~3 images/s on two cores; 96 px at ~35.
PRETRAINED_CPU_SIZE = 96


def training_image_size(config, data_root: Path, device, pretrained=None, listing=None) -> int:
    return chosen_image_size(config, data_root, device, pretrained, listing)[0]


# From scratch on a minutes budget, a step at a lower resolution costs less, and on two cores
# steps were what the from-scratch runs lacked: the plan takes the largest resolution whose
# predicted steps reach this many (0: resolution by the images alone), unless the objective names
# its own (`Objective.steps_wanted`: distillation's). Measured with SimCLR on small_cnn, 5 minutes
# on two cores (bench/quality.py, issue 27): 64 px bought 158-231 steps, 32 px 514-709, and 32 px
# scored higher at 10 labels a class on every set whose images are larger than 32 px (stamps
# +2.2 points, xfig drawings +0.2, scripts +1.1, app screenshots +1.4), and was chosen with each
# of them held out.
STEPS_WANTED = 500
# A run's cost per item over its budget (steps, monitor, checkpoints) against one forward and
# backward pass of the bare encoder per view at a batch of 16: 0.88 at 64 px, 0.88-1.1 at 32 px
# (stamps and scripts, two cores), so the passes predict the steps as they are.
STEP_OVERHEAD = 1.0


def chosen_image_size(config, data_root: Path, device, pretrained=None, listing=None,
                      backbone: str = "", objective=None) -> tuple[int, str]:
    """The training resolution and, when a measurement chose it, why."""
    if config.image_size:
        return config.image_size, ""
    if pretrained is not None:
        # The size the weights were trained at, unless the CPU cannot afford it.
        return (pretrained.input_size if device.type != "cpu" else PRETRAINED_CPU_SIZE), ""

    side = typical_side(data_root, listing=listing)
    # Native size for small images (28 px costs 40% less than 32 px on a CPU); large photos are
    # brought down to what the device can train on in a sitting.
    ceiling = 64 if device.type == "cpu" else 128
    size = int(min(max(24, round(side / 4) * 4), ceiling))
    budget_s = 60.0 * budget_minutes(config, device.type, "image")
    own_target = getattr(objective, "steps_wanted", None)
    steps_wanted = STEPS_WANTED if own_target is None else own_target
    if not steps_wanted or not backbone or not budget_s:
        return size, ""
    views = getattr(objective, "views", 1)
    items = len(listing.paths) if listing is not None else 0
    batch = config.batch_size or max(2, min(256, items // 4))
    sizes = [size] + [s for s in (96, 64, 48, 32) if s < size]
    if len(sizes) == 1:
        return size, ""
    return affordable_image_size(
        sorted(set(sizes), reverse=True),
        lambda s: STEP_OVERHEAD * views * encoder_seconds_per_item(backbone, s, device),
        budget_s, batch, steps_wanted)


def affordable_image_size(sizes: list[int], seconds_per_item_at, budget_s: float,
                          batch: int, steps_wanted: int | None = None) -> tuple[int, str]:
    """The first of `sizes` (largest first) whose predicted steps, 90% of the budget over a
    step's measured cost, reach `steps_wanted` (STEPS_WANTED when None); else the smallest. With
    the reason, when it is not the first."""
    steps_wanted = STEPS_WANTED if steps_wanted is None else steps_wanted
    predicted = {}
    for size in sizes:
        predicted[size] = int(0.9 * budget_s / max(1e-9, batch * seconds_per_item_at(size)))
        if predicted[size] >= steps_wanted:
            break
    chosen = size
    if chosen == sizes[0]:
        return chosen, ""
    return chosen, (f"image size {chosen}: at {sizes[0]} px the budget buys about "
                    f"{predicted[sizes[0]]} steps of {batch} (measured here), at {chosen} px "
                    f"about {predicted[chosen]}; steps paid more than pixels below "
                    f"{steps_wanted} steps on the dev sets")


def encoder_seconds_per_item(backbone: str, size: int, device, batch: int = 16) -> float:
    """One forward and backward pass of a fresh `backbone` at `size` px, per item, after a warm
    pass; the global random state is left as it was."""
    import time

    rng = torch.get_rng_state()
    try:
        encoder = build_backbone(backbone, size, None).to(device).train()
        inputs = torch.rand(batch, 3, size, size, device=device)
        took = 0.0
        for _ in range(2):
            started = time.perf_counter()
            encoder(inputs).float().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            took = time.perf_counter() - started
        return took / batch
    finally:
        torch.set_rng_state(rng)


def pretrained_weights_file(name: str) -> Path:
    found = cached_weights(name)
    if found is None:
        raise DataError(f"{name} needs its pretrained weights: pick a .safetensors or .pth file "
                        f"(--weights FILE), or download them once with `sslstudio weights download "
                        f"{name}` (nothing is downloaded without asking)")
    return found


def _weights_first_used(run) -> str:
    """Where a resumed run's pretrained weights first came from, as its config recorded."""
    try:
        return run.preprocess_table().get("pretrained", {}).get("weights", "")
    except (OSError, ValueError):
        return ""
