"""Self-supervised pretraining as a generator of events.

The life of a run, top to bottom: `train` checks the run folder (one writer; for a resume, the
folder the run knows); `_train` loads the folder and resolves a `RunPlan` (plan.py), builds the
model, optimizer and loop state (`TrainingLoop.build`, loop.py), then `TrainingLoop.run` takes
the steps, judged by the monitor and the best-encoder rule (judge.py). Every yield is a place
where pause and cancel act. A modality's differences live in its `Preprocess` type, not here.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist

from sslstudio.core import distributed
from sslstudio.core.backbones.bert import is_model_folder
from sslstudio.core.backbones.weights import check_weights_file
from sslstudio.core.control import RunControl
from sslstudio.core.data import DataIdentity, absolute_data_path, item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import (
    RunStarted,
    RunWarning,
)
from sslstudio.core.labels import LabelError
from sslstudio.core.locks import OutputLock
from sslstudio.core.outputs import OutputError, check_output_folder, check_outside_data
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.config import TrainConfig
from sslstudio.core.run.folder import RunFolder
from sslstudio.core.run.folder import MetricsLog
from sslstudio.core.run.loop import LoopParts, TrainingLoop
from sslstudio.core.run.plan import RunPlan, Setup, make_plan, user_labels


# -- running ----------------------------------------------------------------------------------
def train(config: TrainConfig, objective_config=None, control: RunControl | None = None,
          resume: bool = False, other_data: bool = False, parts: LoopParts = LoopParts()
          ) -> Iterator:
    """Pretrain `config.backbone` on `config.data` with `config.objective`, yielding events.

    With `resume`, the run folder's checkpoint is loaded and training continues from its step,
    on the folder the run was trained on unless `other_data`. `parts` are the loop's clock and
    judge (tests hand in their own).
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
        yield from _train_in_folder(config, objective_config, control, resume, other_data, parts)
    finally:
        if lock is not None:
            lock.release()
        if owns_process_group:
            dist.destroy_process_group()


def _train_in_folder(config: TrainConfig, objective_config, control: RunControl, resume: bool,
                     other_data: bool, parts: LoopParts) -> Iterator:
    run_dir = config.run_dir
    restart_note = ""
    if resume and not RunFolder(run_dir).has_checkpoint():
        # Stopped before its first checkpoint: continuing it is starting it again.
        resume = False
        restart_note = (f"{run_dir} stopped before its first checkpoint; starting it again from "
                        "the beginning")
    if not resume:
        check_weights_argument(config.weights)
        check_teacher_argument(config)
    existed = run_dir.exists()
    # Everything in a new or empty folder is made by this call, and so ours to take back.
    ours_alone = not resume and (not existed or not any(run_dir.iterdir()))
    started = False
    try:
        if restart_note:
            yield RunWarning("resume", restart_note)
        for event in _train(config, objective_config, control, resume, other_data, parts):
            started = started or isinstance(event, RunStarted)
            yield event
    except BaseException:
        if ours_alone and not started and distributed.rank() == 0:
            # Failed before training began: leave no husk of a run behind.
            remove_run_files(run_dir, keep_folder=existed)
        raise


def _train(config: TrainConfig, objective_config, control: RunControl, resume: bool,
           other_data: bool, parts: LoopParts):
    """Plan, build, loop."""
    setup = Setup.of(config)
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
    prepared = yield from setup.objective_cls.prepare(config, objective_config, setup, data,
                                                      preprocess, control)
    plan, warnings = make_plan(config, setup, data, preprocess, weights, prepared)
    yield from warnings
    loop = TrainingLoop.build(config, objective_config, setup, plan, preprocess, data, weights,
                              prepared)
    if resume:
        note = loop.restore()
        if note:
            yield RunWarning("resume", note)
    elif setup.world == 1 and parts.fit_plan_to_machine:
        loop.fit_to_budget()
    if config.labels and setup.main:
        try:
            loop.judging_labels = user_labels(Path(config.labels), data)
        except (LabelError, OSError) as error:
            yield RunWarning("labels", f"the labels in {config.labels} cannot be read ({error}); the "
                             "monitor judges by the folder's labels, if any")
    if setup.main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(resolved_config(config, loop.plan, preprocess), objective_config,
                         preprocess.to_table(), loop.plan.to_table(), identity)
        run.clear_status()
        loop.metrics_log = MetricsLog(run.metrics_path, loop.state.step if resume else None)
    yield RunStarted(str(run.path), config.objective, plan.backbone, plan.device, len(data),
                     len(data.report.skipped), loop.batch_size, loop.plan.total_steps,
                     loop.state.step, setup.world, loop.objective.encoder.feature_dim,
                     tuple(data.class_names), loop.plan.describe())
    yield from loop.run(control, first_snapshot=not resume, parts=parts)


def resolved_config(config: TrainConfig, plan: RunPlan, preprocess: Preprocess) -> TrainConfig:
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
    if "lexical_buckets" in facts:
        resolved.lexical_buckets = facts["lexical_buckets"]
        resolved.lexical_dims = facts["lexical_dims"]
    return resolved



# -- checks before any work -------------------------------------------------------------------
def remove_run_files(run_dir: Path, keep_folder: bool) -> None:
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


def check_teacher_argument(config: TrainConfig) -> None:
    """A distillation without a teacher fails before the folder is scanned."""
    from sslstudio.core.objectives import OBJECTIVES

    if OBJECTIVES.get(config.objective).needs_teacher and not config.teacher.strip():
        raise DataError(f"{config.objective} needs a teacher (--teacher): a finished run's folder, "
                        "a BERT model folder, a pretrained backbone's name or its weights file")


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
