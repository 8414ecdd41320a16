"""`sslstudio train`: the command line's options made into a run's configs, in a project or
not, and the run driven with a progress line and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sslstudio.cli_common import ProgressPrinter, UsageError, is_main_process
from sslstudio.core.events import RunFinished
from sslstudio.core.run.folder import RunFolder


def split_overrides(pairs: list[str], objective_cls):
    """--set KEY=VALUE goes to the objective's knobs first, then the run's."""
    from sslstudio.core.config import ConfigError, knobs, parse_set_options
    from sslstudio.core.run.config import TrainConfig

    values = parse_set_options(pairs)
    objective_names = {f.name for f in knobs(objective_cls.config_cls)}
    train_names = {f.name for f in knobs(TrainConfig)}
    objective_values, train_values = {}, {}
    for key, value in values.items():
        if key in objective_names:
            objective_values[key] = value
        elif key in train_names:
            train_values[key] = value
        else:
            known = sorted(objective_names | train_names)
            raise ConfigError(f"unknown knob {key!r} for {objective_cls.name}; known: {', '.join(known)}")
    return objective_values, train_values


def default_objective_for(data_dir: Path, weights: str | None = None) -> str:
    """SimCLR for an image folder; for a text folder skip-gram from scratch, SimCSE to continue
    a pretrained encoder."""
    from sslstudio.core.data.scan import detect_modality
    from sslstudio.core.preprocess import PREPROCESSES

    found = detect_modality(data_dir)
    # A folder of both, or of neither yet, trains on images unless told otherwise.
    kind = PREPROCESSES.get(found if found in PREPROCESSES.names() else "image")
    return kind.continuing_objective if weights else kind.default_objective


def build_configs(args):
    from sslstudio.core.config import validate, with_overrides
    from sslstudio.core.objectives import OBJECTIVES
    from sslstudio.core.run.config import TrainConfig

    resume = args.resume
    if resume:
        run_dir = Path(args.out if resume is True else resume)
        if resume is not True and args.out and Path(args.out) != run_dir:
            raise UsageError("--resume RUN and --out name different folders; give one")
        if not RunFolder(run_dir).is_run():
            raise UsageError(f"nothing to resume: {RunFolder(run_dir).config_path} does not exist")
        train_config, objective_config, _ = RunFolder(run_dir).read_config()
        changes = {"out": str(run_dir)}
        if args.data:
            changes["data"] = args.data
        if args.device:
            changes["device"] = args.device
        if args.epochs is not None:
            changes.update(epochs=args.epochs, minutes=0.0)
        if args.minutes is not None:
            changes.update(minutes=args.minutes, epochs=0)
        import dataclasses

        train_config = dataclasses.replace(train_config, **changes)
        objective_cls = OBJECTIVES.get(train_config.objective)
        if args.set:
            objective_values, train_values = split_overrides(args.set, objective_cls)
            objective_config = with_overrides(objective_config, objective_values)
            train_config = with_overrides(train_config, train_values)
        return train_config, objective_config, True

    project = project_for(args) if getattr(args, "project", None) else None
    if not args.data:
        raise UsageError("--data DIR is required")
    teacher = getattr(args, "teacher", None)
    objective_cls = OBJECTIVES.get(args.objective or ("distill" if teacher else
                                                      default_objective_for(Path(args.data), args.weights)))
    if teacher and not objective_cls.needs_teacher:
        raise UsageError(f"--teacher is for distillation; {objective_cls.name} learns from no "
                         "teacher (leave --objective out, or give distill)")
    if not args.out and project is not None:
        if os.environ.get("WORLD_SIZE", "1") != "1":
            # Each process would name its own run folder by its own clock.
            raise UsageError("with torchrun, give --out as well as --project")
        args.out = str(project.new_run_dir(objective_cls.name))
    if not args.out:
        raise UsageError("--out RUN is required (a folder for checkpoints and metrics)")
    objective_values, train_values = split_overrides(args.set, objective_cls)
    objective_config = with_overrides(objective_cls.config_cls(), objective_values)
    flag_values = {
        "device": args.device, "epochs": args.epochs, "minutes": args.minutes,
        "batch_size": args.batch_size, "backbone": args.backbone, "image_size": args.image_size,
        "seed": args.seed, "weights": args.weights, "labels_from_folders": args.labels_from_folders,
        "labels": args.labels, "teacher": teacher,
    }
    train_values.update({k: v for k, v in flag_values.items() if v is not None})
    train_config = with_overrides(TrainConfig(data=args.data, out=args.out,
                                              objective=objective_cls.name), train_values)
    validate(train_config)
    validate(objective_config)
    if train_config.backbone != "auto":
        from sslstudio.core.backbones import BACKBONES

        BACKBONES.get(train_config.backbone)
    data = Path(args.data)
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    # train() itself checks the run folder and the weights before any work.
    return train_config, objective_config, False


def project_for(args):
    from sslstudio.core.outputs import is_within
    from sslstudio.core.project import Project, ProjectError
    from sslstudio.core.run.folder import PROJECT_FILE

    folder = Path(args.project).expanduser().resolve()
    try:
        if (folder / PROJECT_FILE).is_file():
            project = Project.open(folder)
        else:
            # A project is made only where nothing else is: never inside a user's folder of files.
            if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
                raise UsageError(f"{folder} is neither an SSL Studio project nor an empty folder: "
                                 "give a project, or a new folder to make one in")
            if args.data and is_within(folder, Path(args.data).expanduser().resolve()):
                raise UsageError(f"the project {folder} would lie inside the data folder {args.data}, "
                                 "which SSL Studio never writes into: put it elsewhere")
            project = Project.create(folder, "")
        if is_main_process():
            args.project_lock = lock_project(project.path)
        if not args.data:
            if not project.data_dir:
                raise UsageError(f"the project {project.path} has no data folder yet: give --data DIR")
            args.data = project.data_dir
        elif not project.data_dir:
            project.set_data_dir(str(Path(args.data).expanduser().resolve()))
    except ProjectError as error:
        raise UsageError(str(error)) from None
    return project


def cmd_train(args) -> int:
    from sslstudio.core import distributed
    from sslstudio.core.control import RunControl
    from sslstudio.core.devices import resolve_device
    from sslstudio.core.run.train import train

    train_config, objective_config, resume = build_configs(args)
    resolve_device(train_config.device)  # an unavailable device fails before any work
    project_lock = getattr(args, "project_lock", None)
    if project_lock is None and is_main_process():
        project = RunFolder(Path(train_config.out)).project_dir
        project_lock = lock_project(project) if project is not None else None
    control = RunControl()
    printer = ProgressPrinter(enabled=not args.quiet and is_main_process())
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        # First Ctrl-C stops cleanly (with a checkpoint); a second one aborts.
        signal.signal(signal.SIGINT, previous)
        printer.note("stopping after this step and saving a checkpoint (Ctrl-C again to abort)")
        control.cancel()

    signal.signal(signal.SIGINT, on_interrupt)
    finished = None
    try:
        for event in train(train_config, objective_config, control, resume=resume,
                           other_data=args.other_data):
            if distributed.rank() == 0:
                printer.show(event)
            if isinstance(event, RunFinished):
                finished = event
    finally:
        signal.signal(signal.SIGINT, previous)
        if project_lock is not None:
            project_lock.release()
    if finished is None:
        return 1
    return 0 if finished.status in ("completed", "cancelled") else 1


def lock_project(project: Path):
    """A run inside a project writes into the project (its runs and its cache): it takes the
    project's lock, which the app holds while the project is open, for as long as it trains."""
    from sslstudio.core.locks import ProjectLock, ProjectLocked

    try:
        return ProjectLock.acquire(project)
    except ProjectLocked as locked:
        raise UsageError(f"{locked}, which writes to it; close the project there first, or give "
                         "--out outside the project") from None
