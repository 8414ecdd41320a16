"""Self-supervised pretraining as a generator of events.

Read top to bottom: set up (devices, data, model, optimizer, resume), then one loop of steps.
Every yield is a place where pause and cancel act; the loop also checks after each step.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core import distributed
from sslstudio.core.backbones import BACKBONES, build_backbone
from sslstudio.core.checkpoint import LoopState, load_checkpoint, save_checkpoint
from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data import load_image_folder
from sslstudio.core.data.augment import (
    AugmentSettings,
    BatchAugment,
    normalize,
    to_float,
)
from sslstudio.core.data.scan import DataError
from sslstudio.core.data.text_tokens import load_text_data
from sslstudio.core.devices import describe, resolve_device
from sslstudio.core.events import (
    Checkpointed,
    EmbeddingSnapshot,
    RunFinished,
    RunStarted,
    RunWarning,
    StepMetrics,
)
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text
from sslstudio.core.monitor import (
    collapse_metrics,
    knn_accuracy,
    probe_accuracy,
    project_2d,
)
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.outputs import OutputError, check_output_folder, check_outside_data
from sslstudio.core.run_folder import RunFolder
from sslstudio.core.train_config import CPU_MINUTES, TrainConfig, save_run_config

CHECKPOINT_NAME = "checkpoints/last.safetensors"
METRIC_COLUMNS = ["step", "epoch", "loss", "lr", "samples_per_s", "elapsed_s", "batch_size",
                  "embedding_std", "embedding_std_reference", "effective_rank", "mean_cosine",
                  "knn_accuracy", "probe_accuracy"]
DEFAULT_BATCH = 256
AUTO_LOG_INTERVAL_S = 0.2
GPU_MINUTES = 30.0


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warmup over the first `warmup` of the budget, then cosine decay to zero."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    remaining = (progress - warmup) / max(1e-12, 1.0 - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(remaining, 0.0), 1.0)))


PRETRAINED_CPU_SIZE = 96  # a 224 px EfficientNet trains at ~3 images/s on two cores; 96 px at ~35


def resolve_image_size(config: TrainConfig, data_root: Path, device: torch.device,
                       pretrained=None) -> int:
    if config.image_size:
        return config.image_size
    if pretrained is not None:
        # The size the weights were trained at, unless the CPU cannot afford it.
        return pretrained.input_size if device.type != "cpu" else PRETRAINED_CPU_SIZE
    from sslstudio.core.data.image_folder import typical_side

    side = typical_side(data_root)
    # Native size for small images (28 px costs 40% less than 32 px on a CPU); large photos are
    # brought down to what the device can train on in a sitting.
    ceiling = 64 if device.type == "cpu" else 128
    return int(min(max(24, round(side / 4) * 4), ceiling))


def resolve_backbone(config: TrainConfig, device: torch.device, modality: str = "image") -> str:
    if config.backbone != "auto":
        spec = BACKBONES.get(config.backbone)  # fails with the list of names
        if spec.modality != modality:
            fitting = [n for n in BACKBONES.names() if BACKBONES.get(n).modality == modality
                       and not n.startswith("bench_")]
            raise DataError(f"backbone {config.backbone} encodes {spec.modality}, and "
                            f"{config.objective} trains on {modality}; choose {', '.join(fitting)}")
        return config.backbone
    if modality == "text":
        return "pretrained_bert" if _is_model_folder(config.weights) else "text_transformer"
    if device.type == "cpu" and not config.weights:
        # An ImageNet encoder already on disk beats anything two cores train from scratch.
        from sslstudio.core.backbones.pretrained import cached_weights

        if cached_weights("pretrained_efficientnet_lite0") is not None:
            return "pretrained_efficientnet_lite0"
    return "small_cnn" if device.type == "cpu" else "resnet18"


def text_shape(config: TrainConfig, vocab, max_length: int, device: torch.device):
    from sslstudio.core.backbones.text_transformer import TextShape

    cpu = device.type == "cpu"
    # Two cores train a 2 x 128 encoder ~16x faster than BERT-mini's 4 x 256: in five minutes
    # that is 20 epochs of a 13,000-text folder instead of 1.
    width = config.text_width or (128 if cpu else 384)
    return TextShape(vocab.size, max_length, config.text_layers or (2 if cpu else 6), width,
                     config.text_heads or max(1, width // 64), pad_id=vocab.pad_id)


def check_modality(data_dir: Path, objective: str, modality: str) -> None:
    """A clear word when the folder holds the other kind of data than the objective trains on."""
    from sslstudio.core.data.text_folder import detect_modality

    if not Path(data_dir).is_dir():
        return  # the loader says what is wrong with it
    found = detect_modality(Path(data_dir))
    if found in ("image", "text") and found != modality:
        from sslstudio.core.objectives import OBJECTIVES

        fitting = [n for n in OBJECTIVES.names() if found in OBJECTIVES.get(n).modalities]
        raise DataError(f"{data_dir} holds {found}s, and {objective} trains on {modality}s; "
                        f"choose {', '.join(fitting)}")


@dataclass
class _Clock:
    """Training time, excluding pauses, continued across resumes."""

    control: RunControl
    offset: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.started - self.control.paused_seconds


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


def train(config: TrainConfig, objective_config=None, control: RunControl | None = None,
          resume: bool = False) -> Iterator:
    """Pretrain `config.backbone` on `config.data` with `config.objective`, yielding events.

    With `resume`, the run folder's checkpoint is loaded and training continues from its step.
    """
    control = control or RunControl()
    owns_process_group = False
    if distributed.launched_by_torchrun() and not distributed.is_distributed():
        import torch.distributed as dist

        wants_cuda = config.device.startswith("cuda") or (config.device == "auto"
                                                          and torch.cuda.is_available())
        dist.init_process_group("nccl" if wants_cuda else "gloo")
        owns_process_group = True
    run_dir = config.run_dir
    if distributed.rank() == 0:
        check_run_folder(run_dir, Path(config.data), resume)
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
        for event in _train(config, objective_config, control, resume):
            started = started or isinstance(event, RunStarted)
            yield event
    except BaseException:
        if ours_alone and not started and distributed.rank() == 0:
            # Failed before training began: leave no husk of a run behind.
            _remove_run_files(run_dir, keep_folder=existed)
        raise
    finally:
        if owns_process_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(config: TrainConfig, objective_config, control: RunControl, resume: bool):
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run_dir = config.run_dir
    checkpoint_path = run_dir / CHECKPOINT_NAME
    objective_cls = OBJECTIVES.get(config.objective)
    objective_config = objective_config or objective_cls.config_cls()

    # Data: decoded (or tokenized) once; the scan's progress goes out as events.
    modality = "text" if "text" in objective_cls.modalities else "image"
    check_modality(Path(config.data), config.objective, modality)
    vocab = None
    if modality == "text":
        if _is_model_folder(config.weights) and not (run_dir / "tokenizer.json").exists():
            # A pretrained text encoder reads through its own tokenizer, not one trained here.
            from sslstudio.core.tokenizer import save_tokenizer_unpadded

            run_dir.mkdir(parents=True, exist_ok=True)
            save_tokenizer_unpadded(Path(config.weights) / "tokenizer.json", run_dir / "tokenizer.json")
        data, _, vocab = yield from load_text_data(
            Path(config.data), config.text_field, config.labels_from_folders, run_dir,
            config.tokenizer, config.vocab_size, config.max_length, device.type, control)
        image_size = 0
    else:
        pretrained_info = BACKBONES.get(resolve_backbone(config, device, modality)).pretrained
        image_size = resolve_image_size(config, Path(config.data), device, pretrained_info)
        data = yield from load_image_folder(Path(config.data), image_size, config.labels_from_folders,
                                            cache_dir=run_dir / "cache", control=control)
    if main:
        _write_scan_report(run_dir, data)
        if data.report.skipped:
            yield RunWarning("data", f"{len(data.report.skipped)} files skipped "
                             f"({data.report.summary()}); the list is in {run_dir / 'skipped.csv'}")
    per_rank = len(data) // world
    if per_rank < 2:
        kind = "texts" if modality == "text" else "images"
        raise DataError(f"{len(data)} usable {kind} is too few to train on; at least {2 * world} needed")
    # Auto batch: 256, but never so large that an epoch is a single step (small folders).
    batch_size = config.batch_size or min(DEFAULT_BATCH, max(2, per_rank // 4))
    if batch_size > per_rank:
        yield RunWarning("batch_reduced", f"batch size {batch_size} is larger than the "
                         f"{per_rank} images per process; using {per_rank}")
        batch_size = per_rank

    minutes = config.minutes
    if not config.epochs and not minutes:
        minutes = CPU_MINUTES if device.type == "cpu" else GPU_MINUTES
    backbone_name = resolve_backbone(config, device, modality)

    # Model, augmentation and optimizer. The global seed fixes initialisation for every rank.
    torch.manual_seed(config.seed)
    augment_generator = torch.Generator(device=device)
    augment_generator.manual_seed(config.seed * 1000 + 17 + rank)
    if modality == "text":
        if backbone_name == "pretrained_bert":
            from sslstudio.core.backbones.bert import BertShape

            config_json = (Path(config.weights) / "config.json").read_text()
            shape = BertShape(config_json, data.max_length)
            encoder = build_backbone(backbone_name, shape, config.weights)
            preprocess = {"modality": "text", "architecture": "bert", "bert_config": config_json,
                          "pretrained": {"folder": str(config.weights)}}
        else:
            shape = text_shape(config, vocab, data.max_length, device)
            encoder = build_backbone(backbone_name, shape, config.weights or None)
            preprocess = {"modality": "text", "vocab_size": shape.vocab_size, "layers": shape.layers,
                          "width": shape.width, "heads": shape.heads}
        preprocess.update({"tokenizer": "tokenizer.json", "max_length": data.max_length,
                           "text_field": config.text_field, "class_names": list(data.class_names)})
        objective = objective_cls(encoder, objective_config, vocab).to(device)
        objective.generator = augment_generator  # masking draws from it: resumable like augmentation
        mean = std = augment = None
    else:
        info = BACKBONES.get(backbone_name).pretrained
        weights = config.weights or None
        if info is not None:
            # The weights' own normalisation, not the folder's: that is what they expect.
            mean, std = [float(v) for v in info.mean], [float(v) for v in info.std]
            # A resumed run's checkpoint holds the weights; the original file may be gone.
            weights = None if resume else weights or _pretrained_weights(backbone_name)
        else:
            mean, std = data.channel_stats(seed=config.seed)
        settings = AugmentSettings.from_strength(config.augmentation_strength, data.grey, image_size)
        augment = BatchAugment(settings, mean, std, image_size, augment_generator)
        augment.mean, augment.std = augment.mean.to(device), augment.std.to(device)
        encoder = build_backbone(backbone_name, image_size, None if resume else weights)
        if info is not None:
            encoder.freeze_batchnorm = config.freeze_batchnorm != "no"
        elif config.freeze_batchnorm == "yes":
            encoder.freeze_batchnorm = True
        objective = objective_cls(encoder, objective_config, augment).to(device)
        preprocess = {"image_size": image_size, "mean": mean, "std": std, "channel_order": "RGB",
                      "resize": "shorter side to image_size, then centre crop", "grey": data.grey,
                      "class_names": list(data.class_names)}
        if info is not None:
            preprocess["pretrained"] = {"architecture": info.arch, "source": info.source,
                                        "licence": info.licence,
                                        "weights": str(weights) if weights else _previous_weights(run_dir),
                                        "trained_size": info.input_size,
                                        "interpolation": info.interpolation}
    # channels_last is faster for convolutions on CUDA and on the CPU's oneDNN (+30% here).
    objective = objective.to(memory_format=torch.channels_last)
    model = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    pretrained_encoder = modality == "image" and BACKBONES.get(backbone_name).pretrained is not None
    encoder_scale = config.backbone_lr_scale or (0.1 if pretrained_encoder or _is_model_folder(config.weights)
                                                 else 1.0)
    optimizer = _make_optimizer(objective, objective_config, encoder_scale)
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    loop = LoopState(batch_size=batch_size)
    generators = {"augment": augment_generator}
    resume_note = ""
    if resume:
        loop, resume_note = load_checkpoint(checkpoint_path, objective, optimizer, generators)
        if loop.batch_size and loop.batch_size != batch_size:
            # The run's own batch, unless the folder has shrunk below it since (which the
            # warning above has said when the saved setting was that batch).
            if loop.batch_size <= per_rank:
                batch_size = loop.batch_size
            elif batch_size != per_rank:
                batch_size = per_rank
                resume_note += (("; " if resume_note else "") + f"the folder now holds {per_rank} "
                                f"items per process, fewer than the run's batch of {loop.batch_size}: "
                                f"batch {batch_size} from here on")

    resolved = TrainConfig(**{**config.__dict__, "backbone": backbone_name, "image_size": image_size,
                              "batch_size": batch_size, "minutes": minutes})
    if modality == "text":
        resolved.max_length = preprocess["max_length"]
        if "layers" in preprocess:
            resolved.text_layers, resolved.text_width = preprocess["layers"], preprocess["width"]
            resolved.text_heads = preprocess["heads"]
    metrics_log = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_run_config(run_dir / "config.toml", resolved, objective_config, preprocess)
        (run_dir / "status.json").unlink(missing_ok=True)  # running again: no longer finished
        metrics_log = _MetricsLog(run_dir / "metrics.csv", loop.step if resume else None)

    steps_per_epoch = per_rank // batch_size
    total_steps = config.epochs * steps_per_epoch if config.epochs else -1
    if resume_note:
        yield RunWarning("resume", resume_note)
    yield RunStarted(str(run_dir), config.objective, backbone_name, describe(device), len(data),
                     len(data.report.skipped), batch_size, total_steps, loop.step, world,
                     encoder.feature_dim, tuple(data.class_names))

    monitor = _Monitor(data, config, device, objective, augment) if main else None
    clock = _Clock(control, offset=loop.elapsed_s)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else nullcontext())
    pin = device.type == "cuda"

    def progress_now() -> float:
        if config.epochs:
            return min(1.0, (loop.epoch + loop.position / max(1, per_rank)) / config.epochs)
        return min(1.0, clock.elapsed() / (minutes * 60.0))

    def save() -> Checkpointed | None:
        if not main:
            return None
        loop.elapsed_s = clock.elapsed()
        loop.batch_size = batch_size
        save_checkpoint(checkpoint_path, objective, optimizer, loop, generators)
        if monitor is not None and monitor.last_snapshot is not None:
            monitor.save_snapshot(run_dir / "embedding.npz")
        return Checkpointed(loop.step, str(checkpoint_path))

    if monitor is not None and not resume:
        yield from monitor.run(loop.step, 0.0)

    objective.train()
    loss_sum = torch.zeros((), device=device)
    steps_in_log = 0
    log_started = time.monotonic()
    samples_in_log = 0
    last_checkpoint = time.monotonic()
    last_extra: dict = {}
    status, message = "completed", ""
    try:
        while True:
            # A run resumed after it had finished (or a budget already spent) takes no step.
            if (loop.epoch >= config.epochs) if config.epochs else progress_now() >= 1.0:
                break
            order = _epoch_order(len(data), config.seed, loop.epoch, rank, world)
            if loop.position == 0 and batch_size > len(order):
                # Not one step fits in an epoch: spinning through empty epochs would never end.
                raise DataError(f"batch size {batch_size} is larger than the {len(order)} items per "
                                "process, so no training step can run; lower the batch size")
            while loop.position + batch_size <= len(order):
                indices = order[loop.position:loop.position + batch_size]
                images = data.batch(indices)
                if pin:
                    images = images.pin_memory()
                images = images.to(device, non_blocking=True)
                if modality == "image":
                    images = to_float(images)
                progress = progress_now()
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * lr_factor(progress, config.warmup_fraction)
                try:
                    with autocast:
                        loss, extra = model(images)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
                    optimizer.step()
                except torch.OutOfMemoryError:
                    if batch_size <= 2:
                        raise
                    optimizer.zero_grad(set_to_none=True)
                    loss = extra = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    batch_size //= 2
                    steps_per_epoch = per_rank // batch_size
                    yield RunWarning("out_of_memory", f"out of memory on {device}; batch size "
                                     f"halved to {batch_size} and the step retried", loop.step)
                    continue
                objective.after_step(progress)
                loss_sum += loss.detach().float()
                last_extra = extra
                steps_in_log += 1
                samples_in_log += batch_size
                loop.step += 1
                loop.position += batch_size

                out_of_budget = progress_now() >= 1.0 and not config.epochs
                final_step = out_of_budget or bool(
                    config.epochs and loop.epoch + 1 >= config.epochs
                    and loop.position + batch_size > len(order))
                now = time.monotonic()
                log_due = final_step or (
                    loop.step % config.log_every_steps == 0 if config.log_every_steps
                    else now - log_started >= AUTO_LOG_INTERVAL_S)
                if device.type == "cpu" or log_due:
                    # On the CPU the check is free; on a GPU it waits for the device, so it
                    # happens at log points only (a NaN in between still poisons the sum).
                    finite = bool(torch.isfinite(loss_sum))
                    if distributed.world_size() > 1:
                        finite = not distributed.any_rank(not finite, device)
                    if not finite:
                        yield RunWarning("non_finite", _divergence_message(
                            objective, objective_config, loop.step, checkpoint_path), loop.step)
                        raise _Diverged(f"loss is not finite at step {loop.step}; "
                                        f"{objective.divergence_hint} and start again")
                if log_due:
                    elapsed = clock.elapsed()
                    dt = max(now - log_started, 1e-9)
                    progress = progress_now()
                    snapshot_events = []
                    if monitor is not None and (final_step or monitor.due()):
                        snapshot_events = list(monitor.run(loop.step, progress))
                    event = StepMetrics(
                        step=loop.step, epoch=loop.epoch, loss=float(loss_sum) / steps_in_log,
                        lr=optimizer.param_groups[0]["lr"], samples_per_s=samples_in_log / dt,
                        elapsed_s=elapsed, progress=progress,
                        eta_s=_eta(elapsed, progress, minutes, config.epochs),
                        batch_size=batch_size, extra={k: float(v) for k, v in last_extra.items()},
                        gpu_memory_bytes=(torch.cuda.max_memory_allocated(device)
                                          if device.type == "cuda" else 0),
                        **(monitor.latest_fields() if snapshot_events else {}))
                    loss_sum.zero_()
                    steps_in_log, samples_in_log = 0, 0
                    log_started = time.monotonic()
                    if metrics_log is not None:
                        metrics_log.write(event)
                    yield event
                    yield from snapshot_events
                    control.checkpoint()
                    if time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60:
                        saved = save()
                        last_checkpoint = time.monotonic()
                        if saved is not None:
                            yield saved
                else:
                    control.checkpoint()
                stop = out_of_budget
                if world > 1:
                    stop = distributed.any_rank(stop, device)
                if stop:
                    break
            else:
                loop.epoch += 1
                loop.position = 0
                if config.epochs and loop.epoch >= config.epochs:
                    break
                # Pause, cancel and the time budget hold at every epoch boundary too, even in an
                # epoch that had no step left to run.
                control.checkpoint()
                if not config.epochs and progress_now() >= 1.0:
                    break
                continue
            break
        saved = save()
        if saved is not None:
            yield saved
    except _Diverged as diverged:
        status, message = "failed", str(diverged)
    except DataError as error:
        status, message = "failed", str(error)
    except Cancelled:
        status, message = "cancelled", "stopped by the user; resume to continue"
        saved = save()
        if saved is not None:
            yield saved
    finally:
        if metrics_log is not None:
            metrics_log.close()
    if main:
        atomic_write_text(run_dir / "status.json", json.dumps(
            {"status": status, "step": loop.step, "message": message}))
    yield RunFinished(status, loop.step, message, str(checkpoint_path) if checkpoint_path.exists() else "")


class _Diverged(Exception):
    pass


def _remove_run_files(run_dir: Path, keep_folder: bool) -> None:
    if not run_dir.is_dir():
        return
    if not keep_folder:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


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
    from sslstudio.core.backbones.bert import is_model_folder
    from sslstudio.core.backbones.weights import check_weights_file

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


def _is_model_folder(weights: str) -> bool:
    from sslstudio.core.backbones.bert import is_model_folder

    return bool(weights) and is_model_folder(weights)


def _previous_weights(run_dir: Path) -> str:
    """Where a resumed run's pretrained weights first came from, as its config recorded."""
    from sslstudio.core.train_config import load_run_config

    try:
        return load_run_config(run_dir / "config.toml")[2].get("pretrained", {}).get("weights", "")
    except (OSError, ValueError, KeyError):
        return ""


def _pretrained_weights(name: str) -> Path:
    from sslstudio.core.backbones.pretrained import cached_weights

    found = cached_weights(name)
    if found is None:
        raise DataError(f"{name} needs its pretrained weights: pick a .safetensors or .pth file "
                        f"(--weights FILE), or download them once with `sslstudio weights download "
                        f"{name}` (nothing is downloaded without asking)")
    return found


def _write_scan_report(run_dir: Path, data) -> None:
    import io

    report = data.report
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "reason"])
    writer.writerows(report.skipped)
    atomic_write_text(run_dir / "skipped.csv", buffer.getvalue())
    atomic_write_text(run_dir / "scan_report.json", json.dumps({
        "root": report.root, "total_files": report.total_files, "usable": report.usable,
        "ignored": report.ignored, "skipped": len(report.skipped),
        "skipped_by_reason": report.skipped_by_reason(), "summary": report.summary(),
    }, indent=2))


class _Monitor:
    """Embeds a fixed sample now and then: collapse meter, kNN accuracy, the 2-D map.

    It runs in eval mode and draws no random numbers, so it never changes the training itself;
    its cost is kept under about a twentieth of the wall time.
    """

    def __init__(self, data, config: TrainConfig, device, objective, augment):
        rng = np.random.default_rng(config.seed)
        count = min(len(data), config.monitor_items)
        self.indices = np.sort(rng.choice(len(data), size=count, replace=False))
        self.labels = data.labels[self.indices]
        self.data, self.device, self.objective, self.augment = data, device, objective, augment
        self.interval = config.monitor_seconds
        self.next_due = 0.0
        self.last_snapshot: EmbeddingSnapshot | None = None
        self.fields: dict = {}
        self.warned_collapse = False

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
        for start in range(0, len(self.indices), 512):
            x = self.data.batch(self.indices[start:start + 512]).to(self.device)
            if self.augment is not None:
                x = normalize(to_float(x), self.augment.mean, self.augment.std)
            f = self.objective.encoder(x).float()
            h = self.objective.head_outputs(f)
            features.append(f.cpu())
            if h is not None:
                projections.append(h.float().cpu())
        self.objective.train(was_training)
        features_t = torch.cat(features)
        projections_t = torch.cat(projections) if projections else None
        metrics = collapse_metrics(features_t, projections_t)
        labels = torch.from_numpy(self.labels)
        metrics["knn_accuracy"] = knn_accuracy(features_t, labels) if (labels >= 0).sum() > 1 else float("nan")
        # With folder labels, the few-shot probe a user would get now: before training (the
        # pretrained encoder as it is) and as training goes, so one sees whether it helps.
        metrics["probe_accuracy"] = probe_accuracy(features_t.numpy(), self.labels)
        self.fields = metrics
        previous = self.last_snapshot.coords if self.last_snapshot is not None else None
        coords = project_2d(features_t.numpy(), previous)
        self.last_snapshot = EmbeddingSnapshot(step, self.indices.copy(), coords, self.labels.copy())
        took = time.monotonic() - started
        self.next_due = time.monotonic() + max(self.interval, 19 * took)
        yield self.last_snapshot
        warning = self._collapse_warning(metrics, step, progress)
        if warning is not None:
            yield warning

    def _collapse_warning(self, metrics: dict, step: int, progress: float):
        if self.warned_collapse or progress < 0.05:
            return None
        ratio = metrics["embedding_std"] / metrics["embedding_std_reference"]
        if ratio >= 0.1 and metrics["effective_rank"] >= 1.5:
            return None
        self.warned_collapse = True
        return RunWarning("collapse", (
            f"embeddings look collapsed (std {metrics['embedding_std']:.4f} against "
            f"{metrics['embedding_std_reference']:.4f} when healthy, effective rank "
            f"{metrics['effective_rank']:.1f}): lower lr, raise augmentation_strength, or use "
            "moco or simclr, which cannot collapse this way"), step)

    def save_snapshot(self, path: Path) -> None:
        import io

        snap = self.last_snapshot
        buffer = io.BytesIO()
        np.savez(buffer, step=snap.step, indices=snap.indices, coords=snap.coords, labels=snap.labels)
        atomic_write_bytes(path, buffer.getvalue())
