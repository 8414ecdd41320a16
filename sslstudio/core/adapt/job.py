"""Adaptation as jobs that yield events: estimate one method (or several on the same folds),
fit it on every label, predict every item, and save the result beside the run it adapted.

An adapted model's folder holds adapted.toml (method, knobs, classes, the run and its
preprocessing), model.safetensors (encoder + head, LoRA and (IA)^3 merged), METHOD.safetensors
(the method's own weights, for LoRA, adapters, prefixes, prompts and (IA)^3), estimate.json,
labels.csv (what it was trained on) and predictions.csv. It is written under a temporary name
and renamed when complete: a cancelled or crashed job leaves no half model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from sslstudio import __version__
from sslstudio.core import config as cfg
from sslstudio.core.adapt.base import ADAPTERS, AdaptTask, Classifier, unfit_methods
from sslstudio.core.adapt.estimate import make_scheme, summarize
from sslstudio.core.backbones import build_backbone
from sslstudio.core.control import Cancelled, RunControl, run_to_end
from sslstudio.core.data import item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.embed import encode_items, features_read_for_probe, load_encoder
from sslstudio.core.events import (
    AdaptEstimate,
    AdaptFinished,
    AdaptPredictions,
    AdaptProgress,
    AdaptStarted,
    FeaturesReady,
    MapReady,
    RunWarning,
)
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_with
from sslstudio.core.monitor import project_2d
from sslstudio.core.projection import aligned, neighbour_map
from sslstudio.core.locks import OutputLock, OutputLocked
from sslstudio.core.outputs import (
    OutputError,
    check_output_file,
    check_output_folder,
    move_into_place,
    new_sibling_folder,
)
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.folder import AdaptedFolder, RunFolder, write_predictions


@dataclass
class AdaptRequest:
    run_dir: Path
    data_dir: Path
    labels: dict[str, str]  # item (path relative to the data folder) -> class name
    method: str = "linear"
    overrides: dict = field(default_factory=dict)  # knob name -> value, for the method's config
    class_order: tuple[str, ...] = ()  # the order of classes (the app's); default sorted
    out_dir: Path | None = None  # default: <run>/adapted/<time>-<method>
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False  # replace an existing adapted model at out_dir (never anything else)


# -- preparation ------------------------------------------------------------------------------
def prepare_task(request: AdaptRequest, control: RunControl) -> Iterator:
    """Load the run's encoder, the folder at its resolution and the features; returns the task."""
    device = resolve_device(request.device)
    run_dir = Path(request.run_dir)
    encoder, preprocess = load_encoder(run_dir, device)
    data = yield from preprocess.load(Path(request.data_dir), run_dir, control)
    items = item_keys(data)
    index = {item: i for i, item in enumerate(items)}
    missing = [item for item in request.labels if item not in index]
    if missing:
        yield RunWarning("data", f"{len(missing)} labelled files are not in the folder now and "
                         f"are left out (first: {missing[0]})")
    names = list(request.class_order) or sorted(set(request.labels.values()))
    position = {name: i for i, name in enumerate(names)}
    unknown_names = sorted({n for n in request.labels.values() if n not in position})
    if unknown_names:
        raise DataError(f"labels use classes not in the class list: {', '.join(unknown_names)}")
    targets = np.full(len(items), -1, np.int64)
    for item, name in request.labels.items():
        if item in index:
            targets[index[item]] = position[name]
    counts = np.bincount(targets[targets >= 0], minlength=len(names))
    used = [n for n, c in zip(names, counts) if c > 0]
    if len(used) < 2:
        raise DataError("label items of at least two classes first "
                        f"(labelled now: {', '.join(f'{n} {c}' for n, c in zip(names, counts)) or 'none'})")
    if len(used) < len(names):
        # Classes without labels cannot be learned; the classifier leaves them out.
        keep = [position[n] for n in used]
        remap = np.full(len(names), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        targets = np.where(targets >= 0, remap[np.maximum(targets, 0)], -1)
        yield RunWarning("data", f"classes without labels are left out: "
                         f"{', '.join(n for n in names if n not in used)}")
        names = used
    features = yield from cached_features(run_dir, encoder, data, preprocess, device, control)
    settings = RunFolder(run_dir).train_settings()
    task = AdaptTask(data, targets, tuple(names), features, settings.backbone, preprocess,
                     {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, device,
                     request.seed, probe_readout=features_read_for_probe(settings))
    return task, preprocess


_UNFIT: dict[tuple[str, str], dict[str, str]] = {}


def unfit_methods_for_run(run_dir: Path) -> dict[str, str]:
    """The methods that cannot adapt the run's encoder, with the reason each."""
    train_config, _, table = RunFolder(run_dir).read_config()
    shape = Preprocess.from_table(table).encoder_shape()
    key = (train_config.backbone, repr(shape))
    if key not in _UNFIT:  # building a large encoder takes a moment: once per shape
        _UNFIT[key] = unfit_methods(build_backbone(train_config.backbone, shape))
    return _UNFIT[key]


def cached_features(run_dir: Path, encoder, data, preprocess: Preprocess, device, control,
                    digest: str | None = None) -> Iterator:
    """The pretrained encoder's features of every item, kept in the run folder between jobs
    (keyed by the checkpoint and the folder's files: `digest`, made here unless given)."""
    folder = RunFolder(run_dir)
    digest = digest or _features_key(folder, encoder, data)
    cache = folder.features_cache_path
    try:
        with np.load(cache) as saved:
            if str(saved["key"]) == digest:
                return saved["features"]
    except (OSError, KeyError, ValueError):
        pass
    features = yield from encode_items(encoder, data, preprocess, device, control)
    atomic_write_with(cache, lambda handle: np.savez(handle, features=features, key=np.array(digest)))
    return features


def _features_key(folder: RunFolder, encoder, data) -> str:
    stat = folder.checkpoint_file().stat()
    key = json.dumps([stat.st_mtime_ns, stat.st_size, encoder.feature_dim, str(data.root),
                      item_keys(data)])
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()


def cached_neighbour_map(folder: RunFolder, features: np.ndarray, key: str, control) -> Iterator:
    """The t-SNE map of `features`, kept in the run folder beside them (same key); returns
    (coords, seconds it took, 0 when cached)."""
    cache = folder.map_cache_path
    try:
        with np.load(cache) as saved:
            if str(saved["key"]) == key and len(saved["coords"]) == len(features):
                return saved["coords"], 0.0
    except (OSError, KeyError, ValueError):
        pass
    started = time.monotonic()
    coords = yield from neighbour_map(features, control)
    atomic_write_with(cache, lambda handle: np.savez(handle, coords=coords, key=np.array(key)))
    return coords, time.monotonic() - started


def prepare_labelling(run_dir: Path, data_dir: Path, device: str = "auto",
                      control: RunControl | None = None) -> Iterator:
    """Features of every item from the run's encoder, and a 2-D map of them (FeaturesReady)."""
    control = control or RunControl()
    torch_device = resolve_device(device)
    encoder, preprocess = load_encoder(Path(run_dir), torch_device)
    data = yield from preprocess.load(Path(data_dir), Path(run_dir), control)
    folder = RunFolder(run_dir)
    # One key for the features and their map: it hashes every item's name.
    key = _features_key(folder, encoder, data)
    features = yield from cached_features(Path(run_dir), encoder, data, preprocess, torch_device,
                                          control, key)
    coords = project_2d(features, None).astype(np.float32)
    items = np.array(item_keys(data))
    yield FeaturesReady(items, features, coords)
    # Labelling can start on the PCA map at once; the map where groups stand apart follows.
    neighbours, seconds = yield from cached_neighbour_map(folder, features, key, control)
    yield MapReady(items, aligned(neighbours, coords), "t-SNE", seconds)


# -- estimate ---------------------------------------------------------------------------------
def method_config(method: str, overrides: dict):
    adapter_cls = ADAPTERS.get(method)
    return cfg.with_overrides(adapter_cls.config_cls(), overrides or {})


def estimate(task: AdaptTask, method: str, config, scheme, control: RunControl) -> Iterator:
    """Cross-validate `method` on `scheme`'s folds; returns the AdaptEstimate."""
    adapter = ADAPTERS.get(method)(task, config)
    per_repeat = []
    done = 0
    for folds in scheme.repeats:
        probas = []
        for train, val in folds:
            # A fold's per-epoch progress is too fine to pass on; the fold count is the progress.
            fitted = run_to_end(adapter.fit(train, val, control))
            probas.append(fitted.val_proba)
            done += 1
            yield AdaptProgress(method, "estimate", done, scheme.fits)
            control.checkpoint()
        per_repeat.append(probas)
    epochs = int(getattr(config, "epochs", 0)) if adapter.trains_network else 0
    return summarize(method, scheme, task.targets, task.class_names, per_repeat, epochs,
                     adapter.estimate_caution)


def default_scheme(task: AdaptTask, methods: list[str], configs: dict) -> object:
    labelled = np.flatnonzero(task.targets >= 0)
    classes = [ADAPTERS.get(m) for m in methods]
    # Methods compared share one scheme; its default is the cheapest method's, since every
    # method has to fit each fold.
    default = min(cls.default_repeats for cls in classes)
    repeats = max((configs[m].repeats or default) for m in methods)
    return make_scheme(labelled, task.targets, repeats, task.seed, task.class_names)


def compare(request: AdaptRequest, methods: list[str], overrides: dict | None = None,
            control: RunControl | None = None) -> Iterator:
    """Estimates of several methods on the same folds, one AdaptEstimate event each."""
    control = control or RunControl()
    overrides = overrides or {}
    configs = {m: method_config(m, overrides.get(m, {})) for m in methods}
    try:
        task, _ = yield from prepare_task(request, control)
        scheme = default_scheme(task, methods, configs)
        for method in methods:
            trainable, total = ADAPTERS.get(method)(task, configs[method]).parameter_counts()
            yield AdaptStarted(method, scheme_label_count(task), task.class_names, scheme.description,
                               scheme.fits, trainable, total)
            result = yield from estimate(task, method, configs[method], scheme, control)
            yield result
    except Cancelled:
        yield AdaptFinished("cancelled", ",".join(methods), message="stopped by the user")
        return
    yield AdaptFinished("completed", ",".join(methods))


def scheme_label_count(task: AdaptTask) -> int:
    return int((task.targets >= 0).sum())


# -- adapt: estimate, final fit, predictions, save --------------------------------------------
def adapt(request: AdaptRequest, control: RunControl | None = None) -> Iterator:
    control = control or RunControl()
    config = method_config(request.method, request.overrides)
    out_dir, lock = reserve_adapted_out(request)
    partial: Path | None = None
    try:
        if lock.taken_over_from:
            yield RunWarning("lock", lock.note(f"adapted model {out_dir}"))
        task, preprocess = yield from prepare_task(request, control)
        adapter = ADAPTERS.get(request.method)(task, config)
        scheme = default_scheme(task, [request.method], {request.method: config})
        trainable, total = adapter.parameter_counts()
        yield AdaptStarted(request.method, scheme_label_count(task), task.class_names,
                           scheme.description, scheme.fits + 1, trainable, total)
        result = yield from estimate(task, request.method, config, scheme, control)
        yield result
        labelled = np.flatnonzero(task.targets >= 0)
        fitted = yield from _as_phase(adapter.fit(labelled, labelled[:0], control),
                                      request.method, "final")
        proba = yield from _predict_all(fitted, task, request.method, control)
        yield predictions_event(item_keys(task.data), proba)
        # Built under a fresh hidden name made now, so removing it on failure touches only ours.
        partial = new_sibling_folder(out_dir)
        _save(partial, request, task, preprocess, config, fitted, result, proba)
        kept = move_into_place(partial, out_dir, ours=is_adapted_folder,
                               own_names=lambda folder: AdaptedFolder(folder).written_names(),
                               marker=AdaptedFolder.INFO)
        partial = None
        if kept:
            yield RunWarning("output", f"{out_dir} was replaced except for {len(kept)} files that "
                             f"SSL Studio did not write, which stay as they were: {', '.join(kept)}")
    except Cancelled:
        yield AdaptFinished("cancelled", request.method, message="stopped by the user; nothing saved")
        return
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        lock.release()
    yield AdaptFinished("completed", request.method, str(out_dir),
                        f"{result.words()} estimated" if result.estimated else result.words())


def is_adapted_folder(path: Path) -> bool:
    return AdaptedFolder(path).is_adapted()


def check_adapted_out(request: AdaptRequest) -> Path:
    """Where the adapted model will go, checked before any work: a new folder, or (with
    overwrite) an adapted model of ours; never inside the data folder."""
    if not request.out_dir:
        return RunFolder(request.run_dir).adapted_dir
    return check_output_folder(Path(request.out_dir), ours=is_adapted_folder, kind="an adapted model",
                               overwrite=request.overwrite, data_dirs=[Path(request.data_dir)],
                               what="--out")


def reserve_adapted_out(request: AdaptRequest) -> tuple[Path, OutputLock]:
    """The adapted model's folder and the lock that makes this job its one writer. A default
    name is the first free one of the run's time-method names: one that exists, or that another
    job holds, is passed over, so two jobs started in the same second never share a folder."""
    if request.out_dir:
        out = Path(request.out_dir)
        lock = OutputLock.acquire(out, "the adapted model")
        try:
            check_adapted_out(request)
        except BaseException:
            lock.release()
            raise
        return out, lock
    for candidate in RunFolder(request.run_dir).adapted_folder_names(request.method):
        try:
            lock = OutputLock.acquire(candidate.path, "the adapted model")
        except OutputLocked:
            continue
        if candidate.path.exists() or candidate.path.is_symlink():
            lock.release()
            continue
        return candidate.path, lock
    raise OutputError(f"no free name for an adapted model in {RunFolder(request.run_dir).adapted_dir}")


def _as_phase(job, method: str, phase: str):
    """Pass a fit's progress on under `phase`; return what the fit returns."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, AdaptProgress):
            event = AdaptProgress(method, phase, event.done, event.total, event.loss)
        yield event


def predictions_event(items: list[str], proba: np.ndarray) -> AdaptPredictions:
    """Top class, its probability, and its margin over the runner-up, for every item."""
    top2 = np.sort(proba, 1)[:, -2:]
    return AdaptPredictions(np.array(items), proba.argmax(1).astype(np.int64),
                            top2[:, 1].astype(np.float32), (top2[:, 1] - top2[:, 0]).astype(np.float32))


def _predict_all(fitted, task: AdaptTask, method: str, control: RunControl) -> Iterator:
    total = len(task.targets)
    chunks = []
    step = 4096
    for start in range(0, total, step):
        chunks.append(fitted.predict(np.arange(start, min(total, start + step))))
        yield AdaptProgress(method, "predict", min(total, start + step), total)
        control.checkpoint()
    return np.concatenate(chunks).astype(np.float32)


def _save(path: Path, request, task, preprocess: Preprocess, config, fitted,
          result: AdaptEstimate, proba: np.ndarray) -> None:
    folder = AdaptedFolder(path)
    folder.path.mkdir(parents=True, exist_ok=True)
    run = RunFolder(request.run_dir)
    if run.tokenizer_path.exists():
        # The adapted model reads text through the run's tokenizer; it travels with the model.
        shutil.copyfile(run.tokenizer_path, folder.tokenizer_path)
    state = {k: v.detach().cpu().contiguous() for k, v in fitted.classifier.state_dict().items()}
    # As bytes through our own writer: safetensors' save_file makes files only the owner can read.
    atomic_write_bytes(folder.model_path, save_safetensors(state))
    if fitted.extra_state:
        atomic_write_bytes(folder.own_weights_path(request.method),
                           save_safetensors({k: v.contiguous() for k, v in fitted.extra_state.items()}))
    folder.write_estimate(result)
    items = item_keys(task.data)
    labelled = np.flatnonzero(task.targets >= 0)
    folder.write_labels([items[i] for i in labelled],
                        [task.class_names[task.targets[i]] for i in labelled])
    folder.write_predictions(items, task.class_names, proba)
    # Last, since it makes the folder an adapted model, and with the names of every file written:
    # a later --overwrite replaces those and leaves anything the user added.
    folder.write_info({
        "adapt": {"method": request.method, "run": str(run.path.resolve()),
                  "data": str(Path(request.data_dir).resolve()), "backbone": task.backbone,
                  "probe_readout": task.probe_readout,
                  "class_names": list(task.class_names), "num_labels": result.num_labels,
                  "epochs": result.epochs, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "sslstudio_version": __version__, "seed": request.seed},
        "method": cfg.to_dict(config),
        "estimate": {"scheme": result.scheme, "accuracy": result.accuracy,
                     "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "balanced_accuracy": result.balanced_accuracy},
        "preprocess": preprocess.to_table(),
        "files": {"written": sorted([p.name for p in folder.path.iterdir()] + [AdaptedFolder.INFO])},
    })


# -- loading and predicting -------------------------------------------------------------------
@dataclass
class AdaptedModel:
    path: Path
    model: Classifier
    class_names: tuple[str, ...]
    preprocess: Preprocess
    info: dict


def load_adapted(path: Path, device: torch.device) -> AdaptedModel:
    folder = AdaptedFolder(path)
    if not folder.is_complete():
        raise DataError(f"{path} is not an adapted model (it needs {AdaptedFolder.INFO} and "
                        f"{AdaptedFolder.MODEL}; make one with `sslstudio adapt`)")
    info = folder.info()
    adapt_info, preprocess = info["adapt"], Preprocess.from_table(info["preprocess"])
    class_names = tuple(adapt_info["class_names"])
    encoder = build_backbone(adapt_info["backbone"], preprocess.encoder_shape())
    if adapt_info.get("probe_readout", False):  # adapted models made before it read as trained
        encoder.read_for_probe()
    method = ADAPTERS.get(adapt_info["method"])
    encoder = method.restore(encoder, cfg.from_dict(method.config_cls, info.get("method", {})))
    model = Classifier(encoder, len(class_names))
    model.load_state_dict(load_file(str(folder.model_path)))
    return AdaptedModel(folder.path, model.to(device).eval(), class_names, preprocess, info)


def predict_folder(adapted_dir: Path, data_dir: Path, out_csv: Path, device: str = "auto",
                   control: RunControl | None = None, overwrite: bool = False) -> Iterator:
    """Classify every image of a folder; writes path,label,confidence (absolute paths)."""
    control = control or RunControl()
    with OutputLock.acquire(Path(out_csv), "the predictions file"):
        check_output_file(Path(out_csv), overwrite=overwrite, data_dirs=[Path(data_dir)], what="--out")
        torch_device = resolve_device(device)
        adapted = load_adapted(Path(adapted_dir), torch_device)
        data = yield from adapted.preprocess.load(Path(data_dir), Path(adapted_dir), control)
        proba = yield from encode_items(adapted.model, data, adapted.preprocess, torch_device,
                                        control, probabilities=True)
        names = [str(Path(data.root).resolve() / key) for key in item_keys(data)]
        write_predictions(Path(out_csv), names, adapted.class_names, proba)
    yield predictions_event(names, proba)
    yield AdaptFinished("completed", adapted.info["adapt"]["method"], str(out_csv),
                        f"{len(data)} items classified")
