"""The plan: every choice a run makes before its first step (backbone, resolution or sequence
length, batch, budget, device), with its reasons; resolved once, saved as [plan] in config.toml
and shown to the user.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sslstudio.core import distributed
from sslstudio.core.backbones import BACKBONES
from sslstudio.core.data import item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.data.scan import detect_modality
from sslstudio.core.devices import describe, resolve_device
from sslstudio.core.events import (
    RunWarning,
)
from sslstudio.core.labels import LABELS_FILE, LabelStore, parse_label_csv
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.modalities.text import is_text_model_folder
from sslstudio.core.preprocess import PREPROCESSES, Preprocess, objective_modalities
from sslstudio.core.run.config import TrainConfig, budget_minutes, own_cpu_minutes
from sslstudio.core.run.folder import RunFolder
from sslstudio.core.run.judge import kept_without_labels
from sslstudio.core.text import counted

DEFAULT_BATCH = 256
CPU_ACTIVATION_BUDGET = 512 << 20
# A minutes budget continuing a pretrained encoder should buy at least this many steps: one step
# of a large encoder at batch 256 can outlast a short budget on its own (8-16 steps in 5 minutes).
BUDGET_STEPS = 200
MONITOR_SHARE = 0.02  # of the budget, for one snapshot of the monitor's sample
MONITOR_FLOOR = 256  # items: below this the map and the probe say little
CALIBRATION_SHARE = 0.03  # of the budget, at most, spent timing steps before the first one
# What autograd may keep for one CPU step's backward pass (the peak is about twice this): a
# 224 px EfficientNet at batch 256 kept 20 GB and was killed by the system.
CPU_SAVED_BUDGET = 1 << 30



def run_modality(data_dir: Path, objective: str) -> str:
    """The kind of data a run of `objective` on `data_dir` reads: the objective's own, or, for one
    that trains on several, the kind the folder holds; a clear word when the folder holds another
    kind than the objective trains on. The folder is walked once for both."""
    kinds = objective_modalities(OBJECTIVES.get(objective))
    # A missing folder: the loader says what is wrong with it.
    found = detect_modality(Path(data_dir)) if Path(data_dir).is_dir() else ""
    modality = found if found in kinds else kinds[0]
    if found in PREPROCESSES.names() and found != modality:
        fitting = [n for n in OBJECTIVES.names() if found in objective_modalities(OBJECTIVES.get(n))]
        raise DataError(f"{data_dir} holds {found}s, and {objective} trains on {modality}s; "
                        f"choose {', '.join(fitting)}")
    return modality


def resolve_backbone(config: TrainConfig, device: torch.device, modality: str = "image") -> str:
    if config.backbone == "auto" and OBJECTIVES.get(config.objective).needs_teacher:
        # A student is small by purpose: the modality's small student, not its best encoder.
        return PREPROCESSES.get(modality).student_backbone
    if config.backbone != "auto":
        spec = BACKBONES.get(config.backbone)  # fails with the list of names
        if spec.modality != modality:
            fitting = [n for n in BACKBONES.names() if BACKBONES.get(n).modality == modality
                       and not n.startswith("bench_")]
            raise DataError(f"backbone {config.backbone} encodes {spec.modality}, and "
                            f"{config.objective} trains on {modality}; choose {', '.join(fitting)}")
        check_pairing(config.objective, config.backbone)
        return config.backbone
    return PREPROCESSES.get(modality).default_backbone(config, device)


def check_pairing(objective: str, backbone: str) -> None:
    """An objective that trains one kind of encoder (skip-gram: word vectors) takes no other,
    and that encoder trains under no other objective."""
    wants = getattr(OBJECTIVES.get(objective), "backbone", "")
    if wants and backbone != wants:
        raise DataError(f"{objective} trains the {wants} encoder, not {backbone}; leave the "
                        "backbone on auto")
    owners = [n for n in OBJECTIVES.names() if getattr(OBJECTIVES.get(n), "backbone", "") == backbone]
    if owners and objective not in owners and not OBJECTIVES.get(objective).trains_any_backbone:
        raise DataError(f"the {backbone} encoder trains only with {', '.join(owners)}")


# -- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    """Everything a run decides before its first step, and why; saved as `[plan]` in
    config.toml, printed by the CLI and shown by the app."""

    objective: str
    modality: str
    backbone: str
    device: str  # as the user reads it: "cpu (CPU, 2 cores)"
    world_size: int
    items: int  # usable items of the folder
    batch_size: int  # per process
    steps_per_epoch: int
    epochs: int  # the budget in passes over the data, or 0
    minutes: float  # the budget in wall-clock minutes, or 0
    weights: str  # where the encoder starts from; "" from scratch (or from the checkpoint)
    encoder_lr_scale: float  # the encoder's learning rate relative to the heads'
    monitor_items: int = 0  # the fixed sample the monitor embeds (map, collapse meter, probe)
    inputs: dict = field(default_factory=dict)  # the modality's part: resolution, sequence length
    reasons: tuple[str, ...] = ()  # why the automatic choices came out as they did

    @property
    def total_steps(self) -> int:
        """-1 when the budget is in minutes."""
        return self.epochs * self.steps_per_epoch if self.epochs else -1

    def to_table(self) -> dict:
        table = dataclasses.asdict(self)
        table["reasons"] = list(self.reasons)
        return table

    def describe(self) -> str:
        budget = (f"{counted(self.epochs, 'epoch')} of {counted(self.steps_per_epoch, 'step')}"
                  if self.epochs else counted(self.minutes, "minute"))
        # A yes/no fact reads as its name when true ("grey"), and is left out when false.
        inputs = ", ".join(k.replace("_", " ") if v is True else f"{k.replace('_', ' ')} {v}"
                           for k, v in self.inputs.items() if v is not False)
        start = f"from {self.weights}" if self.weights else "from scratch"
        text = (f"plan: {self.objective} on {self.backbone} ({start}), {inputs}; batch "
                f"{self.batch_size}, {budget}, on {self.device}")
        if self.world_size > 1:
            text += f" x{self.world_size} processes"
        return text + "".join(f"\n  {reason}" for reason in self.reasons)


def make_plan(config: TrainConfig, setup: "Setup", data, preprocess: Preprocess,
              weights, prepared=None) -> tuple[RunPlan, list[RunWarning]]:
    items = len(data) if prepared is None or prepared.items is None else len(prepared.items)
    per_rank = items // setup.world
    if per_rank < 2:
        raise DataError(f"{len(data)} usable {preprocess.item_noun} is too few to train on; at "
                        f"least {2 * setup.world} needed")
    warnings, reasons = [], list(getattr(data, "plan_notes", ()))
    # Auto batch: 256, but never so large that an epoch is a single step (small folders).
    batch_size = config.batch_size or min(DEFAULT_BATCH, max(2, per_rank // 4))
    if not config.batch_size and batch_size < DEFAULT_BATCH:
        reasons.append(f"batch {batch_size}: a quarter of the {per_rank} items, so that an epoch "
                       "has several steps")
    per_item = preprocess.activation_bytes_per_item(getattr(setup.objective_cls, "views", 1))
    if not config.batch_size and setup.device.type == "cpu" and per_item:
        # Activations grow with the batch, not the folder: a CPU run keeps them to a budget
        # that leaves a laptop usable (and a 1 GB folder training within 2 GB).
        fitting = max(8, CPU_ACTIVATION_BUDGET // per_item // 8 * 8)
        if fitting < batch_size:
            batch_size = fitting
            reasons.append(f"batch {batch_size}: what keeps a step's activations within "
                           f"{CPU_ACTIVATION_BUDGET >> 20} MiB on the CPU")
    if batch_size > per_rank:
        warnings.append(RunWarning("batch_reduced", f"batch size {batch_size} is larger than the "
                                   f"{per_rank} images per process; using {per_rank}"))
        batch_size = per_rank
    minutes = budget_minutes(config, setup.device.type, setup.modality)
    if minutes and not config.minutes:
        whose = (f"{config.objective}'s default for {setup.modality}s"
                 if own_cpu_minutes(config.objective, setup.modality) and setup.device.type == "cpu"
                 else "the default")
        reasons.append(f"budget {minutes:g} minutes: {whose} on a {setup.device.type.upper()}")
    if prepared is not None:
        reasons.extend(prepared.reasons)
        if minutes and prepared.seconds:
            # What the objective did first (a teacher's pass) was paid from the same budget.
            minutes = round(max(minutes / 20.0, minutes - prepared.seconds / 60.0), 2)
            reasons.append(f"{minutes:.2f} minutes left for the steps")
    pretrained = BACKBONES.get(setup.backbone).pretrained is not None or is_text_model_folder(config.weights)
    encoder_scale = config.backbone_lr_scale or (preprocess.continuing_lr_scale if pretrained else 1.0)
    if not config.backbone_lr_scale and pretrained:
        reasons.append(f"encoder learning rate x{encoder_scale:g}: a pretrained encoder is "
                       "continued, not rewritten")
    if weights and not (config.labels or config.labels_from_folders):
        # Said before the first step, not only at the end: the minutes are the user's.
        kept = kept_without_labels(setup.modality)
        if kept:
            reasons.append(kept)
    if config.backbone == "auto":
        reasons.append(f"backbone {setup.backbone}: the default for this device and data")
    plan = RunPlan(config.objective, setup.modality, setup.backbone, describe(setup.device),
                   setup.world, items, batch_size, per_rank // batch_size, config.epochs,
                   0.0 if config.epochs else minutes, str(weights or ""), encoder_scale,
                   min(len(data), config.monitor_items), preprocess.plan_facts(), tuple(reasons))
    return plan, warnings


def user_labels(path: Path, data) -> np.ndarray:
    """Class positions aligned to `data`'s items (-1: unlabelled) from a labels CSV (path,label)
    or a project's labels file: what the monitor's probe and the best-encoder rule judge by."""
    keys = item_keys(data)
    if path.name == LABELS_FILE:
        store = LabelStore(path, read_only=True)
        try:
            names = store.label_names()
        finally:
            store.close()
    else:
        names = parse_label_csv(path, data.root, set(keys)).labels
    position = {name: i for i, name in enumerate(sorted(set(names.values())))}
    return np.array([position.get(names.get(key), -1) for key in keys], np.int64)


def fit_to_budget(plan: RunPlan, config: TrainConfig, seconds_per_item: float,
                  smallest_batch: int, saved_bytes_per_item: float = 0.0,
                  memory_budget: int = 0, features_cost: float = 1.0) -> RunPlan:
    """The batch and the monitor's sample sized by a measured step, so that a minutes budget buys
    about BUDGET_STEPS steps, a step's memory stays within `memory_budget` (0: no limit) and the
    monitor costs a few percent of the budget. `features_cost` is what reading an item for its
    features costs against reading it for training, when the two differ (the monitor then
    encodes the sample both ways)."""
    if seconds_per_item <= 0:
        return plan
    reasons = list(plan.reasons)
    batch = plan.batch_size
    if not config.batch_size and memory_budget and saved_bytes_per_item:
        fitting = max(2, int(memory_budget // saved_bytes_per_item))
        if fitting < batch:
            batch = fitting
            reasons.append(f"batch {batch}: what keeps the activations a step holds within "
                           f"{memory_budget >> 20} MiB (measured: "
                           f"{saved_bytes_per_item / 2**20:.1f} MiB per item)")
    if not plan.minutes:
        return dataclasses.replace(plan, batch_size=batch, reasons=tuple(reasons),
                                   steps_per_epoch=(plan.items // plan.world_size) // batch)
    budget_s = plan.minutes * 60.0
    # Only a pretrained encoder being continued trades batch for steps: from scratch, small
    # batches learned less in the same minutes on every image set measured (bench/quality.py:
    # stamps, scripts, fashion-mnist lost 1.3-3.7 points at batch 16-97 against 193-256).
    if not config.batch_size and plan.weights:
        fitting = int(0.9 * budget_s / (BUDGET_STEPS * seconds_per_item))
        if fitting < batch:
            before = batch
            batch = max(min(smallest_batch, batch), fitting)
            reasons.append(
                f"batch {batch}: a step of {before} would take "
                f"{before * seconds_per_item:.1f} s here (measured), so "
                f"{plan.minutes:g} minutes would buy "
                f"{int(0.9 * budget_s / (before * seconds_per_item))} steps; "
                f"{batch} buys about {int(0.9 * budget_s / (batch * seconds_per_item))}")
    monitor_items = plan.monitor_items
    # A snapshot encodes each item once, without gradients: about a third of a training pass
    # per view.
    forward_s = seconds_per_item / (3.0 * max(1, plan_views(plan)))
    if features_cost != 1.0:
        forward_s *= 1.0 + features_cost
    affordable = int(MONITOR_SHARE * budget_s / forward_s)
    if affordable < monitor_items:
        monitor_items = max(min(MONITOR_FLOOR, monitor_items), affordable)
        reasons.append(f"monitor sample {monitor_items} items: what one snapshot embeds in about "
                       f"{100 * MONITOR_SHARE:g}% of the budget")
    return dataclasses.replace(plan, batch_size=batch,
                               steps_per_epoch=(plan.items // plan.world_size) // batch,
                               monitor_items=monitor_items, reasons=tuple(reasons))


def plan_views(plan: RunPlan) -> int:
    return getattr(OBJECTIVES.get(plan.objective), "views", 1)


@dataclass
class Setup:
    """Resolved before the data is read: where, what and with which encoder."""

    device: torch.device
    rank: int
    world: int
    objective_cls: type
    modality: str
    backbone: str
    run: RunFolder

    @classmethod
    def of(cls, config: TrainConfig) -> "Setup":
        rank, world = distributed.rank(), distributed.world_size()
        device = resolve_device(config.device)
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        objective_cls = OBJECTIVES.get(config.objective)
        modality = run_modality(Path(config.data), config.objective)
        return cls(device, rank, world, objective_cls, modality,
                   resolve_backbone(config, device, modality), RunFolder(config.run_dir))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def preprocess_type(self) -> type[Preprocess]:
        return PREPROCESSES.get(self.modality)
