"""Self-supervised pretraining as a generator of events.

The life of a run, top to bottom: `train` checks the run folder; `_train` loads the folder and
resolves a `RunPlan` (every choice made before the first step, saved in config.toml and shown
to the user), builds the model, optimizer and loop state from it, then `_TrainingLoop.run` takes
the steps. Every yield is a place where pause and cancel act. A modality's differences (how
data is loaded, the encoder's input, what the objective draws its views from) live in its
`Preprocess` type, not here.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sslstudio.core import distributed
from sslstudio.core.backbones import BACKBONES
from sslstudio.core.backbones.bert import is_model_folder
from sslstudio.core.backbones.weights import check_weights_file
from sslstudio.core.checkpoint import (
    LoopState,
    encoder_info,
    load_checkpoint,
    save_checkpoint,
    save_encoder,
)
from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data import DataIdentity, absolute_data_path, item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.data.text_folder import detect_modality
from sslstudio.core.devices import describe, resolve_device
from sslstudio.core.events import (
    Checkpointed,
    EmbeddingSnapshot,
    RunFinished,
    RunStarted,
    RunWarning,
    StepMetrics,
)
from sslstudio.core.fileio import DiskFull, atomic_write_text, disk_full, is_disk_full
from sslstudio.core.labels import LABELS_FILE, LabelError, LabelStore, parse_label_csv
from sslstudio.core.locks import OutputLock
from sslstudio.core.monitor import (
    collapse_metrics,
    knn_accuracy,
    probe_accuracy,
    project_2d,
)
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.outputs import OutputError, check_output_folder, check_outside_data
from sslstudio.core.preprocess import PREPROCESSES, Preprocess, is_text_model_folder
from sslstudio.core.run_folder import RunFolder
from sslstudio.core.text import counted
from sslstudio.core.train_config import CPU_MINUTES, TrainConfig

METRIC_COLUMNS = ["step", "epoch", "loss", "lr", "samples_per_s", "elapsed_s", "batch_size",
                  "embedding_std", "embedding_std_reference", "effective_rank", "mean_cosine",
                  "knn_accuracy", "probe_accuracy"]
DEFAULT_BATCH = 256
CPU_ACTIVATION_BUDGET = 512 << 20
MONITOR_CHUNK = 512
AUTO_LOG_INTERVAL_S = 0.2
GPU_MINUTES = 30.0
# A minutes budget continuing a pretrained encoder should buy at least this many steps: one step
# of a large encoder at batch 256 can outlast a short budget on its own (8-16 steps in 5 minutes).
BUDGET_STEPS = 200
MONITOR_SHARE = 0.02  # of the budget, for one snapshot of the monitor's sample
MONITOR_FLOOR = 256  # items: below this the map and the probe say little
CALIBRATION_SHARE = 0.03  # of the budget, at most, spent timing steps before the first one
# What autograd may keep for one CPU step's backward pass (the peak is about twice this): a
# 224 px EfficientNet at batch 256 kept 20 GB and was killed by the system.
CPU_SAVED_BUDGET = 1 << 30


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warmup over the first `warmup` of the budget, then cosine decay to zero."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    remaining = (progress - warmup) / max(1e-12, 1.0 - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(remaining, 0.0), 1.0)))


def objective_modality(objective: str) -> str:
    return "text" if "text" in OBJECTIVES.get(objective).modalities else "image"


def resolve_backbone(config: TrainConfig, device: torch.device, modality: str = "image") -> str:
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
    if owners and objective not in owners:
        raise DataError(f"the {backbone} encoder trains only with {', '.join(owners)}")


def check_modality(data_dir: Path, objective: str, modality: str) -> None:
    """A clear word when the folder holds the other kind of data than the objective trains on."""

    if not Path(data_dir).is_dir():
        return  # the loader says what is wrong with it
    found = detect_modality(Path(data_dir))
    if found in PREPROCESSES.names() and found != modality:
        fitting = [n for n in OBJECTIVES.names() if found in OBJECTIVES.get(n).modalities]
        raise DataError(f"{data_dir} holds {found}s, and {objective} trains on {modality}s; "
                        f"choose {', '.join(fitting)}")


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


def make_plan(config: TrainConfig, setup: "_Setup", data, preprocess: Preprocess,
              weights) -> tuple[RunPlan, list[RunWarning]]:
    per_rank = len(data) // setup.world
    if per_rank < 2:
        raise DataError(f"{len(data)} usable {preprocess.item_noun} is too few to train on; at "
                        f"least {2 * setup.world} needed")
    warnings, reasons = [], []
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
    minutes = config.minutes
    if not config.epochs and not minutes:
        minutes = CPU_MINUTES if setup.device.type == "cpu" else GPU_MINUTES
        reasons.append(f"budget {minutes:g} minutes: the default on a {setup.device.type.upper()}")
    pretrained = BACKBONES.get(setup.backbone).pretrained is not None or is_text_model_folder(config.weights)
    encoder_scale = config.backbone_lr_scale or (0.1 if pretrained else 1.0)
    if not config.backbone_lr_scale and pretrained:
        reasons.append("encoder learning rate x0.1: a pretrained encoder is continued, not rewritten")
    if config.backbone == "auto":
        reasons.append(f"backbone {setup.backbone}: the default for this device and data")
    plan = RunPlan(config.objective, setup.modality, setup.backbone, describe(setup.device),
                   setup.world, len(data), batch_size, per_rank // batch_size, config.epochs,
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
class _Setup:
    """Resolved before the data is read: where, what and with which encoder."""

    device: torch.device
    rank: int
    world: int
    objective_cls: type
    modality: str
    backbone: str
    run: RunFolder

    @classmethod
    def of(cls, config: TrainConfig) -> "_Setup":
        rank, world = distributed.rank(), distributed.world_size()
        device = resolve_device(config.device)
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        objective_cls = OBJECTIVES.get(config.objective)
        modality = objective_modality(config.objective)
        check_modality(Path(config.data), config.objective, modality)
        return cls(device, rank, world, objective_cls, modality,
                   resolve_backbone(config, device, modality), RunFolder(config.run_dir))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def preprocess_type(self) -> type[Preprocess]:
        return PREPROCESSES.get(self.modality)


# -- running ----------------------------------------------------------------------------------
def train(config: TrainConfig, objective_config=None, control: RunControl | None = None,
          resume: bool = False, other_data: bool = False) -> Iterator:
    """Pretrain `config.backbone` on `config.data` with `config.objective`, yielding events.

    With `resume`, the run folder's checkpoint is loaded and training continues from its step,
    on the folder the run was trained on unless `other_data`.
    """
    control = control or RunControl()
    owns_process_group = False
    if distributed.launched_by_torchrun() and not distributed.is_distributed():
        wants_cuda = config.device.startswith("cuda") or (config.device == "auto"
                                                          and torch.cuda.is_available())
        dist.init_process_group("nccl" if wants_cuda else "gloo")
        owns_process_group = True
    run_dir = config.run_dir
    lock = None
    try:
        if distributed.rank() == 0:
            # Taken before the folder is checked, so that two writers cannot both pass the check.
            lock = OutputLock.acquire(run_dir, "the run folder")
            check_run_folder(run_dir, Path(config.data), resume)
            if resume:
                RunFolder(run_dir).check_data_place(Path(config.data), other_data)
            if lock.taken_over_from:
                yield RunWarning("lock", lock.note(f"run folder {run_dir}"))
        yield from _train_in_folder(config, objective_config, control, resume, other_data)
    finally:
        if lock is not None:
            lock.release()
        if owns_process_group:
            dist.destroy_process_group()


def _train_in_folder(config: TrainConfig, objective_config, control: RunControl, resume: bool,
                     other_data: bool) -> Iterator:
    run_dir = config.run_dir
    restart_note = ""
    if resume and not RunFolder(run_dir).has_checkpoint():
        # Stopped before its first checkpoint: continuing it is starting it again.
        resume = False
        restart_note = (f"{run_dir} stopped before its first checkpoint; starting it again from "
                        "the beginning")
    if not resume:
        check_weights_argument(config.weights)
    existed = run_dir.exists()
    # Everything in a new or empty folder is made by this call, and so ours to take back.
    ours_alone = not resume and (not existed or not any(run_dir.iterdir()))
    started = False
    try:
        if restart_note:
            yield RunWarning("resume", restart_note)
        for event in _train(config, objective_config, control, resume, other_data):
            started = started or isinstance(event, RunStarted)
            yield event
    except BaseException:
        if ours_alone and not started and distributed.rank() == 0:
            # Failed before training began: leave no husk of a run behind.
            _remove_run_files(run_dir, keep_folder=existed)
        raise


def _train(config: TrainConfig, objective_config, control: RunControl, resume: bool,
           other_data: bool = False):
    """Plan, build, loop."""
    setup = _Setup.of(config)
    run = setup.run
    objective_config = objective_config or setup.objective_cls.config_cls()
    data = yield from setup.preprocess_type.load_training_data(config, setup.backbone, setup.device,
                                                               run, control)
    identity = DataIdentity.of(config.data, item_keys(data))
    if resume and setup.main:
        note = run.compare_data(identity, other_data)
        if note:
            yield RunWarning("data", note)
    if setup.main:
        run.write_scan_report(data.report)
        if data.report.skipped:
            yield RunWarning("data", f"{len(data.report.skipped)} files skipped "
                             f"({data.report.summary()}); the list is in {run.skipped_path}")
    preprocess, weights = setup.preprocess_type.for_training(config, setup.backbone, data, run,
                                                             resume, setup.device)
    plan, warnings = make_plan(config, setup, data, preprocess, weights)
    yield from warnings
    loop = _TrainingLoop.build(config, objective_config, setup, plan, preprocess, data, weights)
    if resume:
        note = loop.restore()
        if note:
            yield RunWarning("resume", note)
    elif setup.world == 1:
        loop.fit_to_budget()
    if config.labels and setup.main:
        try:
            loop.judging_labels = user_labels(Path(config.labels), data)
        except (LabelError, OSError) as error:
            yield RunWarning("labels", f"the labels in {config.labels} cannot be read ({error}); the "
                             "monitor judges by the folder's labels, if any")
    if setup.main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(_resolved_config(config, loop.plan, preprocess), objective_config,
                         preprocess.to_table(), loop.plan.to_table(), identity)
        run.clear_status()
        loop.metrics_log = _MetricsLog(run.metrics_path, loop.state.step if resume else None)
    yield RunStarted(str(run.path), config.objective, plan.backbone, plan.device, len(data),
                     len(data.report.skipped), loop.batch_size, loop.plan.total_steps,
                     loop.state.step, setup.world, loop.objective.encoder.feature_dim,
                     tuple(data.class_names), loop.plan.describe())
    yield from loop.run(control, first_snapshot=not resume)


def _resolved_config(config: TrainConfig, plan: RunPlan, preprocess: Preprocess) -> TrainConfig:
    """The settings as resolved, so that a resumed run reads the choices the plan made."""
    facts = preprocess.plan_facts()
    resolved = dataclasses.replace(config, data=absolute_data_path(config.data), backbone=plan.backbone, batch_size=plan.batch_size,
                                   minutes=plan.minutes or config.minutes,
                                   image_size=facts.get("image_size", 0))
    if "max_length" in facts:
        resolved.max_length = facts["max_length"]
    if "layers" in facts:
        resolved.text_layers, resolved.text_width = facts["layers"], facts["width"]
        resolved.text_heads = facts["heads"]
    return resolved


class _TrainingLoop:
    """The model, optimizer and loop state of one run, and the loop over its steps."""

    def __init__(self, config, objective_config, setup, plan, preprocess, data, objective, model,
                 optimizer, generators):
        self.config, self.objective_config, self.setup = config, objective_config, setup
        self.plan, self.preprocess, self.data = plan, preprocess, data
        self.objective, self.model, self.optimizer = objective, model, optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.generators = generators
        self.batch_size = plan.batch_size
        self.per_rank = len(data) // setup.world
        self.state = LoopState(batch_size=plan.batch_size)
        self.metrics_log: _MetricsLog | None = None
        self.monitor: _Monitor | None = None
        self.step_seconds = 0.0  # a running mean of recent steps, for the stop rule
        self.saved_bytes_per_item = 0.0  # measured before the first step
        self.judging_labels: np.ndarray | None = None  # the user's, over the folder's
        self.save_seconds = 0.0
        self.best: _BestEncoder | None = None
        self.initial: _InitialWeights | None = None  # while the step-0 snapshot is owed
        self.flat_loss = FlatLoss()

    @classmethod
    def build(cls, config, objective_config, setup, plan, preprocess, data, weights):
        device = setup.device
        # The global seed fixes initialisation for every rank; each rank augments differently.
        torch.manual_seed(config.seed)
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed * 1000 + 17 + setup.rank)
        encoder = preprocess.build_encoder(config, plan.backbone, weights)
        objective = preprocess.make_objective(setup.objective_cls, encoder, objective_config, config,
                                              data, setup.run, device, generator).to(device)
        objective = preprocess.prepare_model(objective)
        model = objective
        if setup.world > 1:
            model = DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = _make_optimizer(objective, objective_config, plan.encoder_lr_scale)
        return cls(config, objective_config, setup, plan, preprocess, data, objective, model,
                   optimizer, {"augment": generator})

    def restore(self) -> str:
        """Load the checkpoint; returns what the user should know about it, or ""."""
        self.state, note = load_checkpoint(self.setup.run.checkpoint_path, self.objective,
                                           self.optimizer, self.generators)
        saved = self.state.batch_size
        if saved and saved != self.batch_size:
            # The run's own batch, unless the folder has shrunk below it since (which the
            # plan's warning has said when the saved setting was that batch).
            if saved <= self.per_rank:
                self.batch_size = saved
            elif self.batch_size != self.per_rank:
                self.batch_size = self.per_rank
                note += (("; " if note else "") + f"the folder now holds {self.per_rank} items per "
                         f"process, fewer than the run's batch of {saved}: batch {self.batch_size} "
                         "from here on")
        self.plan = dataclasses.replace(self.plan, batch_size=self.batch_size,
                                        steps_per_epoch=self.per_rank // self.batch_size)
        return note

    def fit_to_budget(self) -> None:
        """Time a few steps on this machine and size the batch and the monitor's sample so the
        budget buys enough steps; the time it takes counts against the budget."""
        started = time.monotonic()
        allowance = CALIBRATION_SHARE * self.plan.minutes * 60.0 if self.plan.minutes else 10.0
        smallest = getattr(self.setup.objective_cls, "smallest_batch", 16)
        memory = CPU_SAVED_BUDGET if self.setup.device.type == "cpu" else 0

        def plan_for(seconds_per_item: float) -> RunPlan:
            return fit_to_budget(self.plan, self.config, seconds_per_item, smallest,
                                 self.saved_bytes_per_item, memory, self.preprocess.features_cost())

        seconds_per_item = self._seconds_per_item(allowance, plan_for)
        self.plan = plan_for(seconds_per_item)
        self.batch_size = self.state.batch_size = self.plan.batch_size
        self.step_seconds = seconds_per_item * self.batch_size
        self.state.elapsed_s += time.monotonic() - started

    def _seconds_per_item(self, allowance: float, plan_for) -> float:
        """Seconds per item of a training step (forward and backward, no update), measured at a
        small batch and then, if the allowance leaves room and the figure can change the plan
        (`plan_for`), at the planned one. Weights, buffers (BatchNorm statistics, queues) and
        random states are left exactly as they were."""
        started = time.monotonic()
        state = {k: v.detach().clone() for k, v in self.objective.state_dict().items()}
        generators = {k: g.get_state() for k, g in self.generators.items()}
        cpu_rng = torch.get_rng_state()
        seconds_per_item = 0.0
        try:
            self._timed_pass(min(self.batch_size, 8))  # pays one-time costs (kernels, allocator)
            # Per item, a batch of a few items costs more than a large one: time a middle one,
            # then the planned one if the allowance leaves room.
            middle = min(self.batch_size, 32)
            seconds_per_item = self._timed_pass(middle, measure_memory=True) / middle
            spent = time.monotonic() - started
            # Per item, the planned batch costs at most what the middle one did and at least
            # middle/batch of it (were the middle step all overhead). A plan that comes out the
            # same at both ends does not need the planned batch timed: a step's time saved at the
            # start of most runs (0.23 s of a second run's 3 s start on two cores).
            settled = self.batch_size <= middle or plan_for(seconds_per_item) == plan_for(
                seconds_per_item * middle / self.batch_size)
            if not settled and spent + seconds_per_item * self.batch_size < allowance:
                seconds_per_item = self._timed_pass(self.batch_size) / self.batch_size
        except torch.OutOfMemoryError:
            pass  # the loop halves the batch on its own
        finally:
            self.objective.zero_grad(set_to_none=True)
            self.objective.load_state_dict(state)
            for name, generator in self.generators.items():
                generator.set_state(generators[name])
            torch.set_rng_state(cpu_rng)
        return seconds_per_item

    def _timed_pass(self, count: int, measure_memory: bool = False) -> float:
        """Seconds of one forward and backward pass over `count` items; with `measure_memory`,
        also what autograd kept for the backward pass, per item (the bulk of a step's memory,
        which on a CPU no error reports before the system kills the process)."""
        device = self.setup.device
        inputs = self.preprocess.training_inputs(self.data.batch(np.arange(count)), device)
        saved = [0]

        def keep(tensor):
            saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        hooks = (torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor)
                 if measure_memory else nullcontext())
        started = time.monotonic()
        with _autocast(device), hooks:
            loss, _ = self.model(inputs)
        if measure_memory:
            self.saved_bytes_per_item = saved[0] / count
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = time.monotonic() - started
        self.objective.zero_grad(set_to_none=True)
        return took

    # -- the loop ---------------------------------------------------------------------------
    def progress(self) -> float:
        if self.config.epochs:
            return min(1.0, (self.state.epoch + self.state.position / max(1, self.per_rank))
                       / self.config.epochs)
        return min(1.0, self.clock.elapsed() / (self.plan.minutes * 60.0))

    def run(self, control: RunControl, first_snapshot: bool) -> Iterator:
        config, setup, state = self.config, self.setup, self.state
        self.clock = _Clock(control, offset=state.elapsed_s)
        if setup.main:
            self.monitor = _Monitor(self.data, config, setup.device, self.objective,
                                    self.preprocess, setup.run, self._eval_chunk(),
                                    self.plan.monitor_items or config.monitor_items,
                                    self.judging_labels)
            self.best = _BestEncoder.of(setup.run, self.monitor)
        # The step-0 snapshot is taken after the first step, from a copy of the weights the run
        # starts with: the first step shows that much sooner, for the same work (6.4 s sooner
        # for a pretrained Lite0 on stamps with a 5-minute budget on two cores).
        self.initial = _InitialWeights(self.objective) if first_snapshot and self.monitor is not None else None
        self.objective.train()
        self.log = _LogWindow(setup.device)
        last_checkpoint = time.monotonic()
        status, message = "completed", ""
        try:
            while not self._budget_spent():
                order = _epoch_order(len(self.data), config.seed, state.epoch, setup.rank, setup.world)
                if state.position == 0 and self.batch_size > len(order):
                    # Not one step fits in an epoch: spinning through empty epochs never ends.
                    raise DataError(f"batch size {self.batch_size} is larger than the {len(order)} "
                                    "items per process, so no training step can run; lower the "
                                    "batch size")
                stopped = False
                while state.position + self.batch_size <= len(order) and not stopped:
                    step_started = time.monotonic()
                    took = yield from self._step(order[state.position:state.position + self.batch_size])
                    if not took:
                        continue  # out of memory: the batch was halved, the step is retried
                    self._time_step(time.monotonic() - step_started)
                    out_of_budget = self._out_of_time()
                    final = out_of_budget or bool(
                        config.epochs and state.epoch + 1 >= config.epochs
                        and state.position + self.batch_size > len(order))
                    if final:
                        yield from self._initial_snapshot()  # the run's last snapshot stays its last
                    logged = self.log.due(final, state.step, config.log_every_steps)
                    if logged:
                        yield from self._log(final)
                    control.checkpoint()
                    yield from self._initial_snapshot()
                    if logged and time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60:
                        last_checkpoint = time.monotonic()
                        yield from self._save()
                    stopped = distributed.any_rank(out_of_budget, setup.device) if setup.world > 1 \
                        else out_of_budget
                if stopped:
                    break
                state.epoch += 1
                state.position = 0
                if not self._budget_spent():
                    # Pause and cancel hold at every epoch boundary too, even after an epoch
                    # that had no step left to run.
                    control.checkpoint()
            yield from self._save()
            yield from self._keep_best()
        except _Diverged as diverged:
            status, message = "failed", str(diverged)
        except DataError as error:
            status, message = "failed", str(error)
        except OSError as error:
            if not is_disk_full(error):
                raise
            full = error if isinstance(error, DiskFull) else disk_full(setup.run.path, None)
            status, message = "failed", (
                f"{full.strerror}. Training stopped at step {state.step} and keeps its last "
                f"checkpoint: resume it once there is room (`sslstudio train --resume {setup.run.path}`)")
        except Cancelled:
            status, message = "cancelled", "stopped by the user; resume to continue"
            # Stopped during the first step: the weights it started from are still judged, so
            # the best-encoder rule can keep them.
            yield from self._initial_snapshot()
            yield from self._save()
            yield from self._keep_best()
        finally:
            if self.metrics_log is not None:
                self.metrics_log.close()
        if setup.main:
            try:
                setup.run.write_status(status, state.step, message)
            except OSError as error:
                if not is_disk_full(error):
                    raise  # on a full disk the status is lost; the event below still says why
        checkpoint = setup.run.checkpoint_path
        yield RunFinished(status, state.step, message, str(checkpoint) if checkpoint.exists() else "")

    def _initial_snapshot(self) -> Iterator:
        """The step-0 snapshot, once, if the run still owes it."""
        if self.initial is None:
            return
        initial, self.initial = self.initial, None
        with initial.loaded(self.objective):
            yield from self.monitor.run(0, 0.0)
            self.best.consider(0, self.objective)

    def _eval_chunk(self) -> int:
        """Items the monitor embeds at once: within the same activation budget as training on a
        CPU (512 texts at once took 200 MB more than the steps of a 40-text batch)."""
        per_item = self.preprocess.activation_bytes_per_item(views=1)
        if not per_item or self.setup.device.type != "cpu":
            return MONITOR_CHUNK
        return int(min(MONITOR_CHUNK, max(8, CPU_ACTIVATION_BUDGET // per_item)))

    def _budget_spent(self) -> bool:
        """Also true for a run resumed after it had finished: it takes no step."""
        if self.config.epochs:
            return self.state.epoch >= self.config.epochs
        # A run takes at least one step, however short its budget: none would train nothing.
        return self.state.step > 0 and self._out_of_time()

    def _out_of_time(self) -> bool:
        """A minutes budget ends when the next step, the last snapshot and the last checkpoint
        would no longer fit in it: the run ends on time, not one long step or one monitor
        pass after it."""
        if self.config.epochs:
            return False
        finishing = self.step_seconds + self.save_seconds + (self.monitor.took if self.monitor else 0.0)
        return self.clock.elapsed() + finishing >= self.plan.minutes * 60.0

    def _time_step(self, seconds: float) -> None:
        # A running mean that follows a machine getting busier without trusting one slow step.
        self.step_seconds = seconds if not self.step_seconds else 0.8 * self.step_seconds + 0.2 * seconds

    def _step(self, indices: np.ndarray) -> Iterator:
        """One optimizer step on `indices`; returns False when it ran out of memory instead."""
        device = self.setup.device
        batch = self.data.batch(indices)
        if device.type == "cuda":
            batch = batch.pin_memory()
        inputs = self.preprocess.training_inputs(batch, device)
        progress = self.progress()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * lr_factor(progress, self.config.warmup_fraction)
        try:
            with _autocast(device):
                loss, extra = self.model(inputs)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.config.grad_clip)
            self.optimizer.step()
        except torch.OutOfMemoryError:
            if self.batch_size <= 2:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            self.batch_size //= 2
            yield RunWarning("out_of_memory", f"out of memory on {device}; batch size halved to "
                             f"{self.batch_size} and the step retried", self.state.step)
            return False
        self.objective.after_step(progress)
        self.log.add(loss, extra, self.batch_size)
        self.state.step += 1
        self.state.position += self.batch_size
        if device.type == "cpu":
            # On the CPU the check is free; on a GPU it waits for the device, so it happens at
            # log points only (a NaN in between still poisons the sum).
            yield from self._check_finite()
        return True

    def _check_finite(self) -> Iterator:
        finite = bool(torch.isfinite(self.log.loss_sum))
        if self.setup.world > 1:
            finite = not distributed.any_rank(not finite, self.setup.device)
        if not finite:
            step = self.state.step
            yield RunWarning("non_finite", _divergence_message(
                self.objective, self.objective_config, step, self.setup.run.checkpoint_path), step)
            raise _Diverged(f"loss is not finite at step {step}; "
                            f"{self.objective.divergence_hint} and start again")

    def _log(self, final: bool) -> Iterator:
        device = self.setup.device
        if device.type != "cpu":
            yield from self._check_finite()
        elapsed, progress = self.clock.elapsed(), self.progress()
        if final and not self.config.epochs:
            progress = 1.0  # the stop rule ends a minutes budget a step's time before its end
        loss, samples_per_s, extra = self.log.take()  # before the monitor's time is counted
        snapshot_events = []
        if self.monitor is not None and self.initial is None and (final or self.monitor.due()):
            snapshot_events = list(self.monitor.run(self.state.step, progress))
            self.best.consider(self.state.step, self.objective)
        event = StepMetrics(
            step=self.state.step, epoch=self.state.epoch, loss=loss,
            lr=self.optimizer.param_groups[0]["lr"], samples_per_s=samples_per_s,
            elapsed_s=elapsed, progress=progress,
            eta_s=0.0 if final else _eta(elapsed, progress, self.plan.minutes, self.config.epochs),
            batch_size=self.batch_size, extra=extra,
            gpu_memory_bytes=(torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0),
            **(self.monitor.latest_fields() if snapshot_events else {}))
        if self.metrics_log is not None:
            self.metrics_log.write(event)
        yield event
        yield from snapshot_events
        if self.setup.main and self.flat_loss.sat_at_zero(loss, self.state.step):
            yield RunWarning("loss_zero", self.flat_loss.message(self.batch_size, self.objective),
                             self.state.step)

    def _save(self) -> Iterator:
        if not self.setup.main:
            return
        started = time.monotonic()
        self.state.elapsed_s = self.clock.elapsed()
        self.state.batch_size = self.batch_size
        save_checkpoint(self.setup.run.checkpoint_path, self.objective, self.optimizer, self.state,
                        self.generators)
        if self.monitor is not None:
            self.monitor.save_snapshot()
        if self.best is not None:
            self.best.write()  # a crash keeps the best encoder found so far
        self.save_seconds = time.monotonic() - started
        yield Checkpointed(self.state.step, str(self.setup.run.checkpoint_path))

    def _keep_best(self) -> Iterator:
        """Say so when an earlier encoder than the last scored better: embed, adapt and export
        use it (the run's last checkpoint stays for resuming)."""
        if self.best is None or not self.setup.main:
            return
        self.best.write()
        note = self.best.note(bool(self.plan.weights))
        if note:
            yield RunWarning("best_encoder", note, self.state.step)


class FlatLoss:
    """A loss that sits at zero informs nothing: the objective's task has become trivial (with
    few negatives in a small batch, say), its gradient is all but noise, and an optimizer like
    AdamW still takes lr-sized steps on it. A continued MiniLM printed "loss 0.0000" for all its
    216 steps of 8 and lost 6 points (issue 27). Said once a run, after LOGS such logs in a row."""

    LIMIT = 1e-3
    LOGS = 20

    def __init__(self) -> None:
        self.low_logs = 0
        self.since = -1
        self.warned = False

    def sat_at_zero(self, loss: float, step: int) -> bool:
        if self.warned or not math.isfinite(loss):
            return False
        if loss >= self.LIMIT:
            self.low_logs = 0
            return False
        if self.low_logs == 0:
            self.since = step
        self.low_logs += 1
        self.warned = self.low_logs >= self.LOGS
        return self.warned

    def message(self, batch_size: int, objective) -> str:
        return (f"the loss has sat under {self.LIMIT:g} since step {self.since}: the objective's "
                f"task is too easy here (a batch of {batch_size} gives {objective.name} few items "
                "to tell apart), so its gradient is mostly noise and the encoder may drift rather "
                "than learn; a larger batch (for texts a shorter max_length lets more fit) or "
                "another objective gives the loss something to say")


class _InitialWeights:
    """The objective's weights and buffers as the run started, to be judged after its first step."""

    def __init__(self, objective: torch.nn.Module):
        self.state = {k: v.detach().clone() for k, v in objective.state_dict().items()}

    @contextmanager
    def loaded(self, objective: torch.nn.Module):
        trained = {k: v.detach().clone() for k, v in objective.state_dict().items()}
        objective.load_state_dict(self.state)
        try:
            yield
        finally:
            objective.load_state_dict(trained)
            self.state = {}


class _LogWindow:
    """Loss and throughput summed since the last logged step."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.steps = self.samples = 0
        self.started = time.monotonic()
        self.extra: dict = {}

    def add(self, loss: torch.Tensor, extra: dict, samples: int) -> None:
        self.loss_sum += loss.detach().float()
        self.extra = extra
        self.steps += 1
        self.samples += samples

    def due(self, final: bool, step: int, every_steps: int) -> bool:
        if final:
            return True
        if every_steps:
            return step % every_steps == 0
        return time.monotonic() - self.started >= AUTO_LOG_INTERVAL_S

    def take(self) -> tuple[float, float, dict]:
        """(mean loss, samples per second, the last step's extra figures), and start again."""
        dt = max(time.monotonic() - self.started, 1e-9)
        out = (float(self.loss_sum) / max(1, self.steps), self.samples / dt,
               {k: float(v) for k, v in self.extra.items()})
        self.loss_sum.zero_()
        self.steps = self.samples = 0
        self.started = time.monotonic()
        return out


@dataclass
class _Clock:
    """Training time, excluding pauses, continued across resumes."""

    control: RunControl
    offset: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.started - self.control.paused_seconds


class _BestEncoder:
    """The encoder that scored best on the monitor's labelled sample, step 0 included: a
    pretrained encoder is never handed back worse than it came. Kept in memory, written as the
    run's best checkpoint at each checkpoint and at the end. Without labels there is nothing to
    judge by, and the last encoder is the run's."""

    def __init__(self, run: RunFolder, monitor: "_Monitor", step: int = -1,
                 score: float = float("nan")):
        self.run, self.monitor = run, monitor
        self.step, self.score = step, score
        self.latest_step, self.latest_score = -1, float("nan")
        self.weights: dict | None = None

    @classmethod
    def of(cls, run: RunFolder, monitor: "_Monitor") -> "_BestEncoder":
        """A resumed run goes on comparing with the best it had kept."""
        info = encoder_info(run.best_path) if run.best_path.exists() else None
        if info and "step" in info:
            return cls(run, monitor, int(info["step"]), float(info["score"]))
        return cls(run, monitor)

    def consider(self, step: int, objective) -> None:
        score = self.monitor.score()
        if math.isnan(score):
            return
        self.latest_step, self.latest_score = step, score
        # A later encoder replaces the kept one only when it scores better by more than the
        # judge's own noise: on 120 labelled items stamps' last continued encoder scored best of
        # its run, and on every item it was 1.7 points worse than it came (bench/quality.py).
        if math.isnan(self.score) or score > self.score + self.monitor.score_margin(self.score):
            self.step, self.score = step, score
            self.weights = {k: v.detach().cpu().clone()
                            for k, v in objective.encoder.state_dict().items()}

    def write(self) -> None:
        if self.weights is not None:
            save_encoder(self.run.best_path, self.weights,
                         {"step": self.step, "score": self.score, "metric": self.monitor.metric()})
            self.weights = None

    def note(self, pretrained: bool) -> str:
        if self.step < 0 or self.latest_step == self.step or math.isnan(self.latest_score):
            return ""
        metric = self.monitor.metric()
        if self.step == 0 and pretrained:
            within = (f", not better by more than the {self.monitor.score_margin(self.score):.3f} "
                      "that so few labelled items can tell apart"
                      if self.latest_score > self.score else "")
            return (f"continuing did not help: the pretrained encoder as it came scored "
                    f"{self.score:.3f} ({metric}), the last step {self.latest_score:.3f}{within}; "
                    "embed, adapt and export use the encoder as it came")
        # The words say the rule: a later encoder must beat the kept one by more than the judge's
        # noise, so "scored best" beside a higher last score read as a contradiction.
        margin = self.monitor.score_margin(self.score)
        compared = (f"the last step's {self.latest_score:.3f} is not better by more than the "
                    f"{margin:.3f} that so few labelled items can tell apart"
                    if self.latest_score > self.score else
                    f"better than the last step's {self.latest_score:.3f}")
        return (f"the encoder of step {self.step} is kept ({metric} {self.score:.3f}; {compared}): "
                "embed, adapt and export use it, and the last checkpoint stays for resuming")


class _MetricsLog:
    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            # Steps after the checkpoint will run again; drop their rows so the curve stays clean.
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            text_rows = [",".join(str(r.get(c, "")) for c in METRIC_COLUMNS) for r in rows]
            atomic_write_text(path, "\n".join([",".join(METRIC_COLUMNS)] + text_rows) + "\n")
        elif not path.exists() or resume_step is None:
            atomic_write_text(path, ",".join(METRIC_COLUMNS) + "\n")
        self.handle = open(path, "a", newline="")

    def write(self, event: StepMetrics) -> None:
        values = [getattr(event, c) for c in METRIC_COLUMNS]
        self.handle.write(",".join(_csv_number(v) for v in values) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _csv_number(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class _Diverged(Exception):
    pass


# -- checks before any work -------------------------------------------------------------------
def _remove_run_files(run_dir: Path, keep_folder: bool) -> None:
    """Take back a run that failed before its first step: only the run's own names (anything
    else that appeared in the folder meanwhile is not ours), then the folder if we made it."""
    if not run_dir.is_dir():
        return
    for name in RunFolder.own_names():
        child = run_dir / name
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        elif child.exists() or child.is_symlink():
            child.unlink(missing_ok=True)
    if not keep_folder:
        try:
            run_dir.rmdir()  # only when empty
        except OSError:
            pass


def is_run_folder(path: Path) -> bool:
    return RunFolder(path).is_run()


def check_run_folder(run_dir: Path, data_dir: Path | None, resume: bool) -> None:
    """Before any long work: a new run goes into a new or empty folder outside the data folder
    (or one holding only the files of a run that never reached a checkpoint); a resumed one into
    a run folder of ours."""
    folder = RunFolder(run_dir)
    if resume:
        if not folder.has_checkpoint() and not (folder.is_run() and folder.never_checkpointed()):
            raise DataError(f"nothing to resume: {folder.checkpoint_path} does not exist")
        return
    if folder.never_checkpointed():
        # Our own files of a run killed early (or a tokenizer put there for it to read).
        check_outside_data(run_dir, [data_dir], "run folder")
        return
    try:
        check_output_folder(run_dir, ours=is_run_folder, kind="a run", data_dirs=[data_dir],
                            what="run folder")
    except OutputError as error:
        if is_run_folder(run_dir) and "already holds" in str(error):
            raise OutputError(f"{run_dir} already holds a run; pass --resume to continue it or pick "
                              "another --out") from None
        raise


def check_weights_argument(weights: str) -> None:
    """A --weights that cannot work fails before the folder is scanned."""
    if not weights:
        return

    path = Path(weights).expanduser()
    if path.is_dir():
        if not is_model_folder(path):
            raise DataError(f"{path} is a folder but not a Hugging Face model folder (it needs "
                            "config.json, tokenizer.json and the weights)")
        return
    check_weights_file(path)


def _divergence_message(objective, objective_config, step: int, checkpoint_path: Path) -> str:
    kept = (f"the last good checkpoint ({checkpoint_path}) is kept" if checkpoint_path.exists()
            else "no checkpoint had been written yet")
    return (f"loss became NaN or infinite at step {step}: {objective.divergence_hint} "
            f"(lr is {objective_config.lr:g}); {kept}")


def _eta(elapsed: float, progress: float, minutes: float, epochs: int) -> float:
    if not epochs:
        return max(0.0, minutes * 60.0 - elapsed)
    if progress <= 0:
        return float("nan")
    return elapsed / progress * (1.0 - progress)


def _autocast(device: torch.device):
    """bfloat16 on CUDA (the steps and the timed passes alike); full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _epoch_order(count: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This rank's share of the epoch's shuffled order; a pure function of (seed, epoch), so a
    resumed run sees exactly the batches the interrupted one would have."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(count, generator=generator).numpy()
    per_rank = count // world
    return order[rank * per_rank:(rank + 1) * per_rank]


def _make_optimizer(objective, objective_config, encoder_scale: float = 1.0) -> torch.optim.Optimizer:
    groups = objective.param_groups(objective_config.weight_decay)
    if encoder_scale != 1.0:
        # Each group splits into the encoder's parameters (scaled lr) and the heads' (full lr).
        encoder_ids = {id(p) for p in objective.encoder.parameters()}
        split = []
        for group in groups:
            mine = [p for p in group["params"] if id(p) in encoder_ids]
            rest = [p for p in group["params"] if id(p) not in encoder_ids]
            if mine:
                split.append({**group, "params": mine, "lr": objective_config.lr * encoder_scale})
            if rest:
                split.append({**group, "params": rest, "lr": objective_config.lr})
        groups = split
    else:
        groups = [{**group, "lr": objective_config.lr} for group in groups]
    if objective_config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=objective_config.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=objective_config.lr)


class _Monitor:
    """Embeds a fixed sample now and then: collapse meter, kNN accuracy, the 2-D map.

    It runs in eval mode and draws no random numbers, so it never changes the training itself;
    its cost is kept under about a twentieth of the wall time.
    """

    def __init__(self, data, config: TrainConfig, device, objective, preprocess: Preprocess,
                 run: RunFolder, chunk: int = 512, items: int = 2000,
                 labels: np.ndarray | None = None):
        rng = np.random.default_rng(config.seed)
        count = min(len(data), items)
        labels = data.labels if labels is None else labels
        labelled = np.flatnonzero(labels >= 0)
        if 0 < len(labelled) < len(data):
            # A few labels among many items: all of them join the sample (up to half of it), so
            # the probe has something to judge by; the rest is drawn as usual.
            chosen = rng.choice(labelled, size=min(len(labelled), count // 2), replace=False)
            others = np.setdiff1d(np.arange(len(data)), chosen)
            rest = rng.choice(others, size=count - len(chosen), replace=False)
            self.indices = np.sort(np.concatenate([chosen, rest]))
        else:
            self.indices = np.sort(rng.choice(len(data), size=count, replace=False))
        self.labels = labels[self.indices]
        self.data, self.device, self.objective = data, device, objective
        self.preprocess, self.run_folder, self.chunk = preprocess, run, chunk
        # The probe and the best-encoder rule judge what the run hands over: a pretrained
        # encoder trained at 96 px is read at its own 224 px, where continuing can lose while it
        # gains at 96 (fashion-mnist: +2.5 points at 96 px, -2.3 at 224; bench/quality.py).
        self.features_preprocess = preprocess.for_features()
        self.features_chunk = max(1, int(chunk / preprocess.features_cost()))
        self.judged_items = None  # the labelled items of the sample, decoded at the feature size
        self.interval = config.monitor_seconds
        self.next_due = 0.0
        self.last_snapshot: EmbeddingSnapshot | None = None
        self.last_features: np.ndarray | None = None
        self.fields: dict = {}
        self.warned_collapse = False
        self.took = 0.0  # seconds the last snapshot took
        # 10 labels a class, as a user would have; half of each class when the user's labels are
        # fewer, so the other half can be tested on.
        counts = np.bincount(self.labels[self.labels >= 0]) if (self.labels >= 0).any() else []
        smallest = int(min((c for c in counts if c), default=0))
        self.probe_labels = max(1, min(10, smallest // 2))

    def due(self) -> bool:
        return time.monotonic() >= self.next_due

    def latest_fields(self) -> dict:
        return self.fields

    @torch.no_grad()
    def run(self, step: int, progress: float):
        started = time.monotonic()
        was_training = self.objective.training
        self.objective.eval()
        features, projections = [], []
        for start in range(0, len(self.indices), self.chunk):
            x = self.preprocess.model_inputs(self.data.batch(self.indices[start:start + self.chunk]),
                                             self.device)
            f = self.objective.encoder(x).float()
            h = self.objective.head_outputs(f)
            features.append(f.cpu())
            if h is not None:
                projections.append(h.float().cpu())
        features_t = torch.cat(features)
        self.last_features = features_t.numpy().astype(np.float16)
        projections_t = torch.cat(projections) if projections else None
        metrics = collapse_metrics(features_t, projections_t)
        labelled = self.labels >= 0
        judged_t, judged_labels = features_t, self.labels
        if self.features_preprocess is not self.preprocess and labelled.sum() > 1:
            judged_t, judged_labels = self._judged_features(labelled), self.labels[labelled]
        self.objective.train(was_training)
        labels = torch.from_numpy(judged_labels)
        metrics["knn_accuracy"] = knn_accuracy(judged_t, labels) if (labels >= 0).sum() > 1 else float("nan")
        # With folder labels, the few-shot probe a user would get now: before training (the
        # pretrained encoder as it is) and as training goes, so one sees whether it helps.
        metrics["probe_accuracy"] = probe_accuracy(judged_t.numpy(), judged_labels,
                                                   per_class=self.probe_labels)
        self.fields = metrics
        previous = self.last_snapshot.coords if self.last_snapshot is not None else None
        coords = project_2d(features_t.numpy(), previous)
        self.last_snapshot = EmbeddingSnapshot(step, self.indices.copy(), coords, self.labels.copy())
        took = self.took = time.monotonic() - started
        self.next_due = time.monotonic() + max(self.interval, 19 * took)
        yield self.last_snapshot
        warning = self._collapse_warning(metrics, step, progress)
        if warning is not None:
            yield warning

    def _judged_features(self, labelled: np.ndarray) -> torch.Tensor:
        """The encoder's features of the labelled items of the sample, read as the run's
        features are read (embed, adapt, export), not as training reads them."""
        if self.judged_items is None:
            self.judged_items = self.preprocess.feature_items(self.data, self.indices[labelled])
        chunks = []
        for start in range(0, len(self.judged_items), self.features_chunk):
            x = self.features_preprocess.model_inputs(
                self.judged_items[start:start + self.features_chunk], self.device)
            chunks.append(self.objective.encoder(x).float().cpu())
        return torch.cat(chunks)

    def _collapse_warning(self, metrics: dict, step: int, progress: float):
        if self.warned_collapse or progress < 0.05 or not self.objective.can_collapse:
            return None
        ratio = metrics["embedding_std"] / metrics["embedding_std_reference"]
        if ratio >= 0.1 and metrics["effective_rank"] >= 1.5:
            return None
        self.warned_collapse = True
        return RunWarning("collapse", (
            f"embeddings look collapsed (std {metrics['embedding_std']:.4f} against "
            f"{metrics['embedding_std_reference']:.4f} when healthy, effective rank "
            f"{metrics['effective_rank']:.1f}): {self.objective.collapse_hint}"), step)

    def score(self) -> float:
        """What the best-encoder rule compares: the few-label probe on the sample's labels, or
        kNN where too few items per class leave the probe undefined; NaN without labels."""
        probe = self.fields.get("probe_accuracy", float("nan"))
        return probe if not math.isnan(probe) else self.fields.get("knn_accuracy", float("nan"))

    def score_margin(self, score: float) -> float:
        """How much better a score must be to be told apart from `score` on this many labelled
        items: the standard error of the difference of two accuracies measured on them."""
        judged = int((self.labels >= 0).sum())
        if judged < 2 or math.isnan(score):
            return 0.0
        return math.sqrt(2.0 * score * (1.0 - score) / judged)

    def metric(self) -> str:
        probe = self.fields.get("probe_accuracy", float("nan"))
        return ("10-label probe on the monitor's sample" if not math.isnan(probe)
                else "kNN accuracy on the monitor's sample")

    def save_snapshot(self) -> None:
        snap = self.last_snapshot
        if snap is not None:
            # The features go along, half precision, so the run's map where groups stand apart
            # (t-SNE) can be made after the run without its encoder.
            self.run_folder.write_snapshot(snap.step, snap.indices, snap.coords, snap.labels,
                                           features=self.last_features)
