"""Adaptation as jobs that yield events: estimate one method (or several on the same folds),
fit it on every label, predict every item, and save the result beside the run it adapted.

An adapted model's folder holds adapted.toml (method, knobs, classes, the run and its
preprocessing), model.safetensors (encoder + head, LoRA merged), lora.safetensors for LoRA,
estimate.json, labels.csv (what it was trained on) and predictions.csv. It is written under a
temporary name and renamed when complete: a cancelled or crashed job leaves no half model.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core import config as cfg
from sslstudio.core.adapt.base import ADAPTERS, AdaptTask, Classifier
from sslstudio.core.adapt.estimate import best_epoch, make_scheme, summarize
from sslstudio.core.control import Cancelled, RunControl, run_to_end
from sslstudio.core.data import item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.events import (
    AdaptEstimate,
    AdaptFinished,
    AdaptPredictions,
    AdaptProgress,
    AdaptStarted,
    FeaturesReady,
    RunWarning,
)
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text
from sslstudio.core.outputs import (
    check_output_file,
    check_output_folder,
    new_sibling_folder,
    replace_folder,
)
from sslstudio.core.run_folder import PREVIOUS

ADAPTED_FILE = "adapted.toml"
MODEL_FILE = "model.safetensors"


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
    from sslstudio.core.embed import load_encoder, load_run_data

    device = resolve_device(request.device)
    run_dir = Path(request.run_dir)
    encoder, preprocess = load_encoder(run_dir, device)
    data = yield from load_run_data(run_dir, Path(request.data_dir), preprocess, control)
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
    task = AdaptTask(data, targets, tuple(names), features, _backbone_name(run_dir), preprocess,
                     {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, device,
                     request.seed)
    return task, preprocess


def _backbone_name(run_dir: Path) -> str:
    return cfg.read_toml(Path(run_dir) / "config.toml")["train"]["backbone"]


def cached_features(run_dir: Path, encoder, data, preprocess: dict, device, control) -> Iterator:
    """The pretrained encoder's features of every item, kept in the run folder between jobs
    (keyed by the checkpoint and the folder's files)."""
    from sslstudio.core.embed import encode_items
    from sslstudio.core.train import CHECKPOINT_NAME

    checkpoint = Path(run_dir) / CHECKPOINT_NAME
    if not checkpoint.exists():  # a damaged or missing last one: the encoder came from the previous
        checkpoint = checkpoint.with_name(PREVIOUS)
    stat = checkpoint.stat()
    key = json.dumps([stat.st_mtime_ns, stat.st_size, str(data.root), item_keys(data)])
    digest = hashlib.sha1(key.encode()).hexdigest()
    cache = Path(run_dir) / "cache" / "features.npz"
    try:
        with np.load(cache) as saved:
            if str(saved["key"]) == digest:
                return saved["features"]
    except (OSError, KeyError, ValueError):
        pass
    features = yield from encode_items(encoder, data, preprocess, device, control)
    buffer = io.BytesIO()
    np.savez(buffer, features=features, key=np.array(digest))
    atomic_write_bytes(cache, buffer.getvalue())
    return features


def prepare_labelling(run_dir: Path, data_dir: Path, device: str = "auto",
                      control: RunControl | None = None) -> Iterator:
    """Features of every item from the run's encoder, and a 2-D map of them (FeaturesReady)."""
    from sslstudio.core.embed import load_encoder, load_run_data
    from sslstudio.core.monitor import project_2d

    control = control or RunControl()
    torch_device = resolve_device(device)
    encoder, preprocess = load_encoder(Path(run_dir), torch_device)
    data = yield from load_run_data(Path(run_dir), Path(data_dir), preprocess, control)
    features = yield from cached_features(Path(run_dir), encoder, data, preprocess, torch_device,
                                          control)
    coords = project_2d(features, None).astype(np.float32)
    yield FeaturesReady(np.array(item_keys(data)), features, coords)


# -- estimate ---------------------------------------------------------------------------------
def method_config(method: str, overrides: dict):
    adapter_cls = ADAPTERS.get(method)
    return cfg.with_overrides(adapter_cls.config_cls(), overrides or {})


def estimate(task: AdaptTask, method: str, config, scheme, control: RunControl) -> Iterator:
    """Cross-validate `method` on `scheme`'s folds; returns (AdaptEstimate, chosen epochs)."""
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
    epochs = best_epoch(scheme, task.targets, per_repeat) if adapter.trains_network else 0
    at_epoch = [[p[(epochs or 1) - 1] for p in probas] for probas in per_repeat]
    return summarize(method, scheme, task.targets, task.class_names, at_epoch, epochs), epochs


def default_scheme(task: AdaptTask, methods: list[str], configs: dict) -> object:
    labelled = np.flatnonzero(task.targets >= 0)
    classes = [ADAPTERS.get(m) for m in methods]
    network = any(cls.trains_network for cls in classes)
    # Methods compared share one scheme; its default is the cheapest method's, since every
    # method has to fit each fold.
    default = min(cls.default_repeats for cls in classes)
    repeats = max((configs[m].repeats or default) for m in methods)
    return make_scheme(labelled, task.targets, repeats, task.seed, network)


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
            result, _ = yield from estimate(task, method, configs[method], scheme, control)
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
    out_dir = check_adapted_out(request)
    partial: Path | None = None
    try:
        task, preprocess = yield from prepare_task(request, control)
        adapter = ADAPTERS.get(request.method)(task, config)
        scheme = default_scheme(task, [request.method], {request.method: config})
        trainable, total = adapter.parameter_counts()
        yield AdaptStarted(request.method, scheme_label_count(task), task.class_names,
                           scheme.description, scheme.fits + 1, trainable, total)
        result, epochs = yield from estimate(task, request.method, config, scheme, control)
        yield result
        labelled = np.flatnonzero(task.targets >= 0)
        fitted = yield from _as_phase(adapter.fit(labelled, labelled[:0], control, epochs or None),
                                      request.method, "final")
        proba = yield from _predict_all(fitted, task, request.method, control)
        yield predictions_event(item_keys(task.images), proba)
        # Built under a fresh hidden name made now, so removing it on failure touches only ours.
        partial = new_sibling_folder(out_dir)
        _save(partial, request, task, preprocess, config, fitted, result, epochs, proba)
        replace_folder(partial, out_dir, ours=is_adapted_folder)
        partial = None
    except Cancelled:
        yield AdaptFinished("cancelled", request.method, message="stopped by the user; nothing saved")
        return
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
    yield AdaptFinished("completed", request.method, str(out_dir),
                        f"{result.accuracy:.1%} estimated ({result.ci_low:.0%}-{result.ci_high:.0%})")


def is_adapted_folder(path: Path) -> bool:
    return (Path(path) / ADAPTED_FILE).is_file()


def check_adapted_out(request: AdaptRequest) -> Path:
    """Where the adapted model will go, checked before any work: a new folder, or (with
    overwrite) an adapted model of ours; never inside the data folder."""
    if not request.out_dir:
        return _new_adapted_dir(request)
    return check_output_folder(Path(request.out_dir), ours=is_adapted_folder, kind="an adapted model",
                               overwrite=request.overwrite, data_dirs=[Path(request.data_dir)],
                               what="--out")


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


def _new_adapted_dir(request: AdaptRequest) -> Path:
    base = Path(request.run_dir) / "adapted"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, suffix = base / f"{stamp}-{request.method}", 2
    while candidate.exists():
        candidate, suffix = base / f"{stamp}-{request.method}-{suffix}", suffix + 1
    return candidate


def _save(folder: Path, request, task, preprocess, config, fitted, result: AdaptEstimate,
          epochs: int, proba: np.ndarray) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    from sslstudio.core.tokenizer import TOKENIZER_FILE

    if (Path(request.run_dir) / TOKENIZER_FILE).exists():
        # The adapted model reads text through the run's tokenizer; it travels with the model.
        shutil.copyfile(Path(request.run_dir) / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in fitted.classifier.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE))
    if fitted.extra_state:
        save_file({k: v.contiguous() for k, v in fitted.extra_state.items()},
                  str(folder / "lora.safetensors"))
    from sslstudio import __version__

    cfg.write_toml(folder / ADAPTED_FILE, {
        "adapt": {"method": request.method, "run": str(Path(request.run_dir).resolve()),
                  "data": str(Path(request.data_dir).resolve()), "backbone": task.backbone,
                  "class_names": list(task.class_names), "num_labels": result.num_labels,
                  "epochs": epochs, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "sslstudio_version": __version__, "seed": request.seed},
        "method": cfg.to_dict(config),
        "estimate": {"scheme": result.scheme, "accuracy": result.accuracy,
                     "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "balanced_accuracy": result.balanced_accuracy},
        "preprocess": preprocess,
    })
    atomic_write_text(folder / "estimate.json", json.dumps(estimate_to_dict(result), indent=1))
    items = item_keys(task.images)
    labels_text = io.StringIO()
    writer = csv.writer(labels_text, lineterminator="\n")
    writer.writerow(["path", "label"])
    for i in np.flatnonzero(task.targets >= 0):
        writer.writerow([items[i], task.class_names[task.targets[i]]])
    atomic_write_text(folder / "labels.csv", labels_text.getvalue())
    atomic_write_text(folder / "predictions.csv", predictions_csv(items, task.class_names, proba))


def estimate_to_dict(result: AdaptEstimate) -> dict:
    return {"method": result.method, "scheme": result.scheme, "num_labels": result.num_labels,
            "accuracy": result.accuracy, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "balanced_accuracy": result.balanced_accuracy, "epochs": result.epochs,
            "class_names": list(result.class_names), "recall": result.recall.tolist(),
            "precision": result.precision.tolist(), "support": result.support.tolist(),
            "confusion": result.confusion.tolist(),
            "repeat_accuracies": result.repeat_accuracies.tolist()}


def predictions_csv(paths: list[str], class_names, proba: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "confidence"])
    predicted = proba.argmax(1)
    for path, p, row in zip(paths, predicted, proba):
        writer.writerow([path, class_names[p], f"{row[p]:.4f}"])
    return buffer.getvalue()


# -- loading and predicting -------------------------------------------------------------------
@dataclass
class AdaptedModel:
    path: Path
    model: Classifier
    class_names: tuple[str, ...]
    preprocess: dict
    info: dict


def load_adapted(path: Path, device: torch.device) -> AdaptedModel:
    from safetensors.torch import load_file

    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.embed import encoder_shape

    path = Path(path)
    if not (path / ADAPTED_FILE).exists() or not (path / MODEL_FILE).exists():
        raise DataError(f"{path} is not an adapted model (it needs {ADAPTED_FILE} and {MODEL_FILE}; "
                        "make one with `sslstudio adapt`)")
    info = cfg.read_toml(path / ADAPTED_FILE)
    adapt_info, preprocess = info["adapt"], info["preprocess"]
    class_names = tuple(adapt_info["class_names"])
    encoder = build_backbone(adapt_info["backbone"], encoder_shape(preprocess))
    model = Classifier(encoder, len(class_names))
    model.load_state_dict(load_file(str(path / MODEL_FILE)))
    return AdaptedModel(path, model.to(device).eval(), class_names, preprocess, info)


def predict_folder(adapted_dir: Path, data_dir: Path, out_csv: Path, device: str = "auto",
                   control: RunControl | None = None, overwrite: bool = False) -> Iterator:
    """Classify every image of a folder; writes path,label,confidence (absolute paths)."""
    from sslstudio.core.embed import encode_items, load_run_data

    control = control or RunControl()
    check_output_file(Path(out_csv), overwrite=overwrite, data_dirs=[Path(data_dir)], what="--out")
    torch_device = resolve_device(device)
    adapted = load_adapted(Path(adapted_dir), torch_device)
    data = yield from load_run_data(Path(adapted_dir), Path(data_dir), adapted.preprocess, control)
    proba = yield from encode_items(adapted.model, data, adapted.preprocess, torch_device, control,
                                    probabilities=True)
    names = [str(Path(data.root).resolve() / key) for key in item_keys(data)]
    atomic_write_text(Path(out_csv), predictions_csv(names, adapted.class_names, proba))
    yield predictions_event(names, proba)
    yield AdaptFinished("completed", adapted.info["adapt"]["method"], str(out_csv),
                        f"{len(data)} items classified")
