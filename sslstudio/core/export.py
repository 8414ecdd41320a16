"""ONNX export that proves itself: every export runs PyTorch and onnxruntime on real items of
the folder and is reported as failed, with the figures, when they disagree.

The graph takes what any program can make with Pillow and numpy: float32 RGB in [0, 1], NCHW,
after the same resize and centre crop the app does; normalisation is inside the graph, so a
user's script cannot get mean and std wrong. Classifiers output probabilities, encoders their
embedding. NAME.json beside NAME.onnx (and the same JSON in the ONNX metadata under
"sslstudio") says all of this, with the class names and where the model came from.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from sslstudio import __version__
from sslstudio.core.adapt.job import load_adapted
from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.embed import load_encoder
from sslstudio.core.events import (
    ExportCheck,
    ExportFinished,
    ExportLatency,
    ExportProgress,
)
from sslstudio.core.fileio import new_partial_file, write_durably
from sslstudio.core.locks import OutputLock
from sslstudio.core.onnx_file import median_ms, onnx_session, write_onnx
from sslstudio.core.outputs import OutputError, check_output_file
from sslstudio.core.preprocess import Preprocess, PreprocessError
from sslstudio.core.run.folder import AdaptedFolder, RunFolder

FORMAT = "sslstudio-onnx/1"
# Float32 through two runtimes: kernels differ in summation order, nothing more.
FLOAT_MIN_COSINE = 0.9999
FLOAT_MAX_PROBABILITY_DIFF = 1e-3
# Dynamic int8 changes numbers by design; it must still agree on what the model says.
INT8_MIN_MEAN_COSINE = 0.99
INT8_MIN_TOP1_AGREEMENT = 0.95


class ExportError(ValueError):
    """An export that cannot be done; the message says why and what to do."""


@dataclass
class ExportRequest:
    source: Path  # a run folder (its encoder) or an adapted model folder (its classifier)
    out: Path  # NAME.onnx
    encoder_only: bool = False  # for an adapted model: export its (adapted) encoder instead
    quantize: str = ""  # "" or "int8": also write NAME.int8.onnx
    data_dir: Path | None = None  # items for the parity check; default: the source's folder
    parity_items: int = 64
    overwrite: bool = False  # replace existing files of the same names (the user said yes)
    latency_repeats: int = 20


@dataclass
class ExportSource:
    model: nn.Module  # normalised images -> logits or features, eval, CPU
    kind: str  # "classifier" or "encoder"
    preprocess: Preprocess
    class_names: tuple
    data_dir: Path
    description: dict  # objective, backbone, method, run, ...
    labels: dict  # item (relative path) -> class name: the labels an adapted model learned from
    folder: Path | None = None  # the run or adapted folder (its tokenizer.json, for text)

    @property
    def input_name(self) -> str:
        return self.preprocess.input_name


class ExportedModel(nn.Module):
    """The model's input as the export description says (images: [0, 1] RGB), normalised
    inside; probabilities or embedding out."""

    def __init__(self, model: nn.Module, mean, std, probabilities: bool):
        super().__init__()
        self.model = model
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.probabilities = probabilities

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # Inputs with a normalisation (images: per channel, dimension 1) are normalised here;
        # token ids go straight in.
        if self.normalise:
            along_dim_1 = (1, -1) + (1,) * (inputs.dim() - 2)
            inputs = (inputs - self.mean.view(along_dim_1)) / self.std.view(along_dim_1)
        out = self.model(inputs)
        return torch.softmax(out, dim=1) if self.probabilities else out


def exported_model(source: "ExportSource") -> ExportedModel:
    mean, std = source.preprocess.export_normalisation()
    return ExportedModel(source.model, mean, std, source.kind == "classifier").eval()


def taught_by(train) -> dict:
    """A distilled student's teacher, as its run named it, for the export's description."""
    teacher = getattr(train, "teacher", "") if train is not None else ""
    return {"teacher": teacher} if teacher else {}


def load_source(source: Path, encoder_only: bool = False) -> ExportSource:
    source = Path(source)
    device = torch.device("cpu")
    adapted_folder, run_folder = AdaptedFolder(source), RunFolder(source)
    if adapted_folder.is_adapted():
        adapted = load_adapted(source, device)
        info = adapted.info["adapt"]
        run = RunFolder(Path(info.get("run", "")))
        settings = run.train_settings() if run.is_run() else None
        description = {"source": "adapted", "method": info["method"], "backbone": info["backbone"],
                       "objective": settings.objective if settings else "", "run": info.get("run", ""),
                       "adapted": str(source.resolve()), **taught_by(settings)}
        labels = adapted_folder.labels()
        if encoder_only:
            return ExportSource(adapted.model.encoder.eval(), "encoder", adapted.preprocess, (),
                                Path(info["data"]), description, labels, source)
        return ExportSource(adapted.model, "classifier", adapted.preprocess, adapted.class_names,
                            Path(info["data"]), description, labels, source)
    if run_folder.is_run():
        encoder, preprocess = load_encoder(source, device)
        train = run_folder.train_settings()
        description = {"source": "run", "method": "", "backbone": train.backbone,
                       "objective": train.objective, "run": str(source.resolve()),
                       **taught_by(train)}
        return ExportSource(encoder, "encoder", preprocess, (), Path(train.data), description, {},
                            source)
    raise ExportError(f"{source} is neither a run folder ({RunFolder.CONFIG}) nor an adapted model "
                      f"({AdaptedFolder.INFO}); export a run made by `sslstudio train` or a model "
                      "made by `sslstudio adapt`")


def sidecar(source: ExportSource, output_name: str, files: dict) -> dict:
    """Everything a program needs to feed the model and read its output."""

    model_input, preprocess = source.preprocess.export_description(files)
    return {
        "format": FORMAT,
        "sslstudio_version": __version__,
        "files": files,
        "input": model_input,
        "preprocess": preprocess,
        "output": {
            "name": output_name,
            "meaning": ("class probabilities (softmax of the classifier's logits)"
                        if source.kind == "classifier" else "embedding (the encoder's features)"),
            "shape": ["batch", len(source.class_names)] if source.kind == "classifier"
            else ["batch", int(getattr(_encoder_of(source.model), "feature_dim", 0))],
        },
        "class_names": list(source.class_names),
        "model": source.description,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _encoder_of(model: nn.Module) -> nn.Module:
    return getattr(model, "encoder", model)


def check_writable(out: Path) -> None:
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"cannot create the folder {folder}: {error.strerror or error}; choose "
                          "another folder") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sslstudio-write-test-"):
            pass
    except OSError as error:
        raise ExportError(f"cannot write to {folder}: {error.strerror or error}; choose another "
                          "folder") from None


def parity_inputs(source: "ExportSource", data_dir: Path, count: int,
                  wanted: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Model inputs for items of the folder (a spread, or the `wanted` items), as the app
    prepares them: images decoded and scaled to [0, 1], or texts through the run's tokenizer."""
    try:
        return source.preprocess.folder_inputs(Path(data_dir), count, source.folder, wanted)
    except PreprocessError as error:
        raise ExportError(str(error)) from None


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, classifier: bool) -> dict:
    if reference.shape != candidate.shape:
        # A graph of another shape disagrees completely; it is reported, not a crash.
        return {"max_abs_diff": float("inf"), "mean_cosine": 0.0, "min_cosine": 0.0,
                "top1_agreement": 0.0 if classifier else float("nan")}
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    a = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    b = candidate / np.maximum(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12)
    cosine = (a * b).sum(1)
    top1 = float((reference.argmax(1) == candidate.argmax(1)).mean()) if classifier else float("nan")
    return {"max_abs_diff": diff, "mean_cosine": float(cosine.mean()),
            "min_cosine": float(cosine.min()), "top1_agreement": top1}


def judge(figures: dict, variant: str, classifier: bool, scale: float) -> tuple[bool, str]:
    if variant == "float":
        limit = FLOAT_MAX_PROBABILITY_DIFF if classifier else FLOAT_MAX_PROBABILITY_DIFF * max(1.0, scale)
        ok = figures["min_cosine"] >= FLOAT_MIN_COSINE and figures["max_abs_diff"] <= limit
        text = f"min cosine >= {FLOAT_MIN_COSINE}, max |difference| <= {limit:.3g}"
        if classifier:
            ok = ok and figures["top1_agreement"] == 1.0
            text += ", top-1 agreement 100%"
        return ok, text
    ok = figures["mean_cosine"] >= INT8_MIN_MEAN_COSINE
    text = f"mean cosine >= {INT8_MIN_MEAN_COSINE}"
    if classifier:
        ok = ok and figures["top1_agreement"] >= INT8_MIN_TOP1_AGREEMENT
        text += f", top-1 agreement >= {INT8_MIN_TOP1_AGREEMENT:.0%}"
    return ok, text


def export_model(request: ExportRequest, control: RunControl | None = None) -> Iterator:
    """Write NAME.onnx (+ NAME.int8.onnx) and NAME.json, verified; yields progress and figures.
    One export at a time writes a NAME: the files of two would not belong together."""
    with OutputLock.acquire(export_paths(request.out)[0], "the export"):
        yield from _export_model(request, control or RunControl())


def _export_model(request: ExportRequest, control: RunControl) -> Iterator:
    source = load_source(Path(request.source), request.encoder_only)
    data_dir = Path(request.data_dir) if request.data_dir else source.data_dir
    out, int8_path, json_path, tokenizer_path = export_paths(request.out)
    try:
        extras = {tokenizer_path: text
                  for text in source.preprocess.export_files(source.folder).values()}
    except PreprocessError as error:
        raise ExportError(str(error)) from None
    targets = [out, json_path] + ([int8_path] if request.quantize else []) + list(extras)
    try:
        for target in targets:
            check_output_file(target, overwrite=request.overwrite, data_dirs=[data_dir], what="export")
    except OutputError as error:
        raise ExportError(str(error).replace("--overwrite", "--overwrite (or say yes in the app)")) from None
    check_writable(out)
    classifier = source.kind == "classifier"
    output_name = "probabilities" if classifier else "embedding"
    wrapped = exported_model(source)
    name = source.input_name
    # Fresh names made now: a file that happens to share a fixed temporary name is never touched.
    partial = [new_partial_file(out), new_partial_file(int8_path)]
    written: list[Path] = []
    try:
        yield ExportProgress("exporting", f"{source.kind} of {source.description['backbone']} to ONNX")
        files = {"float": out.name}
        if request.quantize:
            files["int8"] = int8_path.name
        if extras:
            files["tokenizer"] = tokenizer_path.name
        facts = sidecar(source, output_name, files)
        metadata = {"sslstudio": json.dumps(facts), "class_names": json.dumps(facts["class_names"]),
                    "output": output_name}
        inputs, _ = parity_inputs(source, data_dir, request.parity_items)
        if not len(inputs):
            raise ExportError(f"no readable items in {data_dir} to check the export on; pass the "
                              "folder the model was trained on")
        dummy = torch.from_numpy(inputs[:2])
        write_onnx(wrapped, dummy, partial[0], output_name, metadata, name)
        control.checkpoint()
        if request.quantize == "int8":
            yield ExportProgress("quantizing", "dynamic int8 with onnxruntime")
            # From float32 tables: onnxruntime quantizes a float32 table to int8, not a half one.
            full = new_partial_file(int8_path)
            try:
                write_onnx(wrapped, dummy, full, output_name, metadata, name, half_tables=False)
                _quantize(full, partial[1])
            finally:
                full.unlink(missing_ok=True)
        elif request.quantize:
            raise ExportError(f"--quantize {request.quantize!r} is not supported; use int8")

        yield ExportProgress("checking", "PyTorch and onnxruntime on items of the folder")
        variants = [("float", partial[0])] + ([("int8", partial[1])] if request.quantize else [])
        checks = yield from _check_parity(wrapped, name, inputs, _labelled_items(source, data_dir),
                                          variants, classifier, control)

        # A model that disagrees is not worth timing.
        if not checks["float"].passed:
            c = checks["float"]
            raise _ParityFailed(f"the ONNX model disagrees with PyTorch on {c.items} items "
                                f"(max |difference| {c.max_abs_diff:.3g}, min cosine {c.min_cosine:.6f}, "
                                f"top-1 agreement {c.top1_agreement:.1%}; needed {c.tolerance}); "
                                "nothing was saved")

        yield ExportProgress("timing", "eager PyTorch and onnxruntime on the CPU")
        latency = yield from _time_latency(wrapped, name, inputs, variants, request.latency_repeats,
                                           control)

        facts["parity"] = {variant: {k: v for k, v in vars(check).items() if k != "variant"}
                           for variant, check in checks.items()}
        facts["latency"] = latency
        keep_int8 = request.quantize and checks["int8"].passed
        if request.quantize and not keep_int8:
            facts["files"].pop("int8", None)
        # Every file is complete under its fresh partial name before any takes its real name, so
        # a full disk cannot cost an existing export the user agreed to replace.
        finals = {partial[0]: out}
        if keep_int8:
            finals[partial[1]] = int8_path
        for path, text in {**extras, json_path: json.dumps(_json_safe(facts), indent=1)}.items():
            staged = new_partial_file(path)
            partial.append(staged)
            write_durably(staged, text.encode("utf-8", "surrogateescape"))
            finals[staged] = path
        for staged, path in finals.items():
            os.replace(staged, path)
            written.append(path)
    except Cancelled:
        _remove(partial + written)
        yield ExportFinished("cancelled", str(out), "stopped by the user; nothing saved")
        return
    except _ParityFailed as failed:
        _remove(partial + written)
        yield ExportFinished("failed", str(out), str(failed))
        return
    except OSError as error:
        _remove(partial + written)
        raise ExportError(f"cannot write the export to {out.parent}: {error.strerror or error}; "
                          "free some space or choose another folder") from None
    except BaseException:
        _remove(partial + written)
        raise
    _remove(partial)
    message = "verified against PyTorch"
    if request.quantize and not keep_int8:
        c = checks["int8"]
        message += (f"; the int8 model was not kept: it disagrees too much (mean cosine "
                    f"{c.mean_cosine:.4f}, top-1 agreement {c.top1_agreement:.1%}; needed {c.tolerance})")
    yield ExportFinished("completed", str(out), message, tuple(str(p) for p in written))


def _check_parity(wrapped, name: str, inputs: np.ndarray, labelled, variants, classifier: bool,
                  control: RunControl) -> Iterator:
    """PyTorch against each ONNX variant on the same items (and the labelled items' accuracy);
    yields an ExportCheck per variant, returns them by variant."""
    checks = {}
    with torch.inference_mode():
        reference = wrapped(torch.from_numpy(inputs)).numpy()
        labelled_torch = wrapped(torch.from_numpy(labelled[0])).numpy() if labelled else None
    for variant, path in variants:
        session = onnx_session(path)
        produced = session.run(None, {name: inputs})[0]
        figures = compare_outputs(reference, produced, classifier)
        passed, tolerance = judge(figures, variant, classifier, float(np.abs(reference).max()))
        extra = {}
        if labelled:
            onnx_out = session.run(None, {name: labelled[0]})[0]
            extra = {"labelled_items": len(labelled[1]),
                     "labelled_accuracy_torch": float((labelled_torch.argmax(1) == labelled[1]).mean()),
                     "labelled_accuracy_onnx": float((onnx_out.argmax(1) == labelled[1]).mean())}
        checks[variant] = ExportCheck(variant, len(inputs), passed=passed, tolerance=tolerance,
                                      **figures, **extra)
        yield checks[variant]
        control.checkpoint()
    return checks


def _time_latency(wrapped, name: str, inputs: np.ndarray, variants, repeats: int,
                  control: RunControl) -> Iterator:
    """Median latency of eager PyTorch and of each ONNX variant at batch 1 and 64."""
    latency = {}
    for variant, path in variants:
        session = onnx_session(path)
        for batch in (1, 64):
            x = np.resize(inputs, (batch,) + inputs.shape[1:])
            tensor = torch.from_numpy(x)

            def run_torch():
                with torch.inference_mode():
                    wrapped(tensor)

            times = repeats if batch == 1 else max(3, repeats // 4)
            event = ExportLatency(variant, batch, median_ms(run_torch, times),
                                  median_ms(lambda: session.run(None, {name: x}), times))
            latency[f"{variant}_batch{batch}"] = {"torch_ms": event.torch_ms, "onnx_ms": event.onnx_ms}
            yield event
            control.checkpoint()
    return latency


class _ParityFailed(Exception):
    pass


def export_paths(out: Path) -> tuple[Path, Path, Path, Path]:
    """NAME.onnx, NAME.int8.onnx, NAME.json and NAME.tokenizer.json for what the user gave."""
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        out = out.with_name(out.name + ".onnx")
    return (out, out.with_name(out.stem + ".int8.onnx"), out.with_suffix(".json"),
            out.with_name(out.stem + ".tokenizer.json"))


def _labelled_items(source: ExportSource, data_dir: Path):
    """The adapted model's labelled items (inputs, class positions), for accuracy figures."""
    if source.kind != "classifier" or not source.labels:
        return None
    position = {name: i for i, name in enumerate(source.class_names)}
    wanted = [item for item, name in source.labels.items() if name in position]
    images, names = parity_inputs(source, data_dir, len(wanted), wanted)
    if not len(images):
        return None
    return images, np.array([position[source.labels[n]] for n in names])


def _quantize(float_path: Path, int8_path: Path) -> None:
    prepared = new_partial_file(float_path)  # made now, so ours to replace and remove
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Shape inference and graph clean-up first, as onnxruntime's docs advise.
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)


def _remove(paths) -> None:
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            pass


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# -- trying an exported model -----------------------------------------------------------------
def read_sidecar(model_path: Path) -> dict:
    path = Path(model_path).with_suffix(".json")
    if Path(model_path).name.endswith(".int8.onnx"):
        path = Path(str(model_path)[: -len(".int8.onnx")] + ".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise ExportError(f"{path} is missing or unreadable; it is written beside every export "
                          "and holds the preprocessing") from None


def run_exported(model_path: Path, file_path: Path) -> dict:
    """Prepare one file as the app does (an image decoded, a text through the model's tokenizer)
    and run the exported model on it with onnxruntime."""
    info = read_sidecar(model_path)
    preprocess = Preprocess.of_export(info)
    try:
        inputs, shown = preprocess.file_input(Path(file_path), Path(model_path).parent)
    except PreprocessError as error:
        raise ExportError(str(error)) from None
    output = onnx_session(Path(model_path)).run(None, {preprocess.input_name: inputs})[0][0]
    return {"info": info, "output": output, **shown}


def nearest_items(model_path: Path, data_dir: Path, embedding: np.ndarray, count: int = 8,
                  max_items: int = 2000) -> list[tuple[str, float]]:
    """The folder items (a spread of up to `max_items`) whose exported embeddings are closest."""
    info = read_sidecar(model_path)
    session = onnx_session(Path(model_path))
    preprocess = Preprocess.of_export(info)
    inputs, names = preprocess.folder_inputs(Path(data_dir), max_items, Path(model_path).parent)
    feed = preprocess.input_name
    if not names:
        return []
    chunks = [session.run(None, {feed: inputs[s:s + 256]})[0] for s in range(0, len(inputs), 256)]
    reference = np.concatenate(chunks)
    reference /= np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    query = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
    similarity = reference @ query
    order = np.argsort(-similarity)[:count]
    return [(names[i], float(similarity[i])) for i in order]
