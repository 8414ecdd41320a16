"""The run's settings, apart from the objective's own knobs. Saved as config.toml in the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslstudio.core import config as cfg
from sslstudio.core.config import knob

# The image modality's default, which a config names before its data is seen; each modality's
# own defaults are its class's (`core/modalities/`).
DEFAULT_OBJECTIVE = "simclr"
CPU_MINUTES = 5.0
GPU_MINUTES = 30.0


def default_minutes(device_type: str, objective: str = "", modality: str = "") -> float:
    """The budget of a run that names neither epochs nor minutes: on a CPU the objective's own
    for the modality where it names one, else the device's."""
    if device_type != "cpu":
        return GPU_MINUTES
    return own_cpu_minutes(objective, modality) or CPU_MINUTES


def own_cpu_minutes(objective: str, modality: str) -> float | None:
    # Imported when asked: reading a run's settings should not load torch and every objective.
    from sslstudio.core.objectives import OBJECTIVES

    if objective not in OBJECTIVES:
        return None
    return OBJECTIVES.get(objective).cpu_minutes.get(modality)


def budget_minutes(config: "TrainConfig", device_type: str, modality: str = "") -> float:
    """A run's wall-clock budget in minutes: its own, the default when it names neither epochs
    nor minutes, 0 when its budget is in epochs."""
    if config.epochs:
        return 0.0
    return config.minutes or default_minutes(device_type, config.objective, modality)


@dataclass
class TrainConfig:
    data: str = ""
    out: str = ""
    objective: str = DEFAULT_OBJECTIVE
    backbone: str = knob("auto", help="encoder; auto: on a CPU EfficientNet-Lite0 if its ImageNet "
                                      "weights are on disk, else small_cnn; resnet18 on a GPU")
    weights: str = knob("", help="start the backbone from this .safetensors or .pth state dict")
    teacher: str = knob("", help="distill: the encoder the student learns from: a run folder, a "
                                 "BERT model folder, a pretrained backbone's name or its weights "
                                 "file")
    device: str = knob("auto", help="auto, cpu, cuda:N or mps")
    # Images under 8 px are skipped by the scan as unusable; a run may not train on less either.
    image_size: int = knob(0, low=8, high=1024, auto=0,
                           help="training resolution in px; 0: from the data (32-64 on a CPU)")
    batch_size: int = knob(0, low=0, high=65536, help="items per step per process; 0: up to 256, sized by timed steps to the memory and the budget")
    epochs: int = knob(0, low=0, high=100000, help="passes over the data; 0: use minutes")
    minutes: float = knob(0.0, low=0.0, high=1e6,
                          help="wall-clock budget; with epochs 0 too: 5 on a CPU, 30 on a GPU")
    augmentation_strength: float = knob(0.8, low=0.0, high=1.0,
                                        help="crop scale, colour jitter, blur, grayscale, flip")
    warmup_fraction: float = knob(0.05, low=0.0, high=0.5, help="share of the budget spent warming up lr")
    seed: int = knob(0, low=0, high=2**31 - 1, help="random seed for order, augmentation and init")
    labels_from_folders: bool = knob(False, help="first-level subfolder names are labels (for the kNN monitor)")
    labels: str = knob("", help="labels to judge the encoder by: a labels CSV (path,label) or a "
                                "project's labels.sqlite; the monitor's probe uses them and the "
                                "run keeps the encoder that scored best")
    checkpoint_minutes: float = knob(1.0, low=0.05, high=1440.0, help="save a checkpoint this often")
    monitor_seconds: float = knob(5.0, low=0.5, high=3600.0,
                                  help="embed the fixed sample (map, collapse meter, kNN) this often")
    monitor_items: int = knob(2000, low=16, high=5000, help="size of the fixed sample for the map")
    log_every_steps: int = knob(0, low=0, high=100000, help="metrics every N steps; 0: about 5 a second")
    grad_clip: float = knob(0.0, low=0.0, high=1000.0, help="clip the gradient norm; 0: off")
    backbone_lr_scale: float = knob(0.0, low=0.0, high=1.0,
                                    help="encoder learning rate as a share of the head's; 0: for "
                                         "a pretrained encoder 0.03 (images) or 0.1 (texts), so "
                                         "that it keeps what it knows; else 1")
    freeze_batchnorm: str = knob("auto", choices=("auto", "yes", "no"),
                                 help="keep a pretrained encoder's BatchNorm statistics; auto: yes "
                                      "for pretrained encoders")
    # Text folders only.
    text_field: str = knob("text", help="text: the field of .jsonl records / .csv columns to read")
    tokenizer: str = knob("wordpiece", choices=("wordpiece", "bpe"),
                          help="text: tokenizer trained on the folder (wordpiece lowercases; "
                               "byte-level bpe keeps case and never meets an unknown character)")
    vocab_size: int = knob(8000, low=500, high=200000, help="text: tokenizer vocabulary size")
    max_length: int = knob(0, low=0, high=4096,
                           help="text: tokens per text; 0: 95% of the texts fit (at most 128 on a CPU)")
    text_layers: int = knob(0, low=0, high=48, help="text: Transformer layers; 0: 2 on a CPU, 6 on a GPU")
    text_width: int = knob(0, low=0, high=4096, help="text: Transformer width; 0: 128 on a CPU, 384 on a GPU")
    text_heads: int = knob(0, low=0, high=64, help="text: attention heads; 0: width / 64")
    # Raw buckets lost with each text dev set held out (bench/text_lexical.py). Reduced by the
    # folder's SVD they won: every reduced candidate (4,096 or 16,384 buckets, 32 or 64
    # dimensions) is ahead of skip-gram alone on all five text sets, within 0.2 points of one
    # another on average at 10 labels a class (0.570-0.572, against 0.545); 4,096 to 32 wins with
    # every set held out at 1 label a class, and costs a quarter of 16,384's time and file (a
    # static student: 0.14-0.22 ms a text in onnxruntime against 0.29-0.49 ms).
    # Distillation's static students keep it too: with it, source code 0.880 against 0.829,
    # German man pages 0.461 against 0.448, WordNet glosses 0.615 against 0.607, debates 0.502
    # against 0.500, film reviews 0.576 against 0.574 (bench/distill.py runs, 5 minutes).
    # Beside a pretrained encoder 64 dimensions win instead (`lexical.DIMS_BESIDE_PRETRAINED`).
    lexical_buckets: int = knob(4096, low=0, high=1 << 20,
                                help="text, word vectors and pretrained encoders: hashed TF-IDF "
                                     "buckets of pieces and pairs read beside the encoder's own "
                                     "features (0: none)")
    lexical_dims: int = knob(0, low=0, high=1024,
                             help="text: the buckets reduced to this many dimensions by an SVD "
                                  "of the folder's own (latent semantic analysis); 0: 32 beside "
                                  "word vectors, 64 beside a pretrained encoder")

    @property
    def run_dir(self) -> Path:
        return Path(self.out)


def save_run_config(path: Path, train: TrainConfig, objective: Any, preprocess: dict,
                    plan: dict | None = None, data: dict | None = None) -> None:
    tables = {"train": cfg.to_dict(train), "objective": cfg.to_dict(objective),
              "preprocess": preprocess}
    if plan:
        tables["plan"] = plan
    if data:
        tables["data"] = data
    cfg.write_toml(path, tables)


def load_run_config(path: Path):
    from sslstudio.core.objectives import OBJECTIVES

    data = cfg.read_toml(path)
    train = cfg.from_dict(TrainConfig, data.get("train", {}))
    objective_cls = OBJECTIVES.get(train.objective)
    objective = cfg.from_dict(objective_cls.config_cls, data.get("objective", {}))
    return train, objective, data.get("preprocess", {})

