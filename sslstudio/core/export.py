"""ONNX export that proves itself: every export runs PyTorch and onnxruntime on real items of
the folder and is reported as failed, with the figures, when they disagree.

The graph takes what any program can make with Pillow and numpy: float32 RGB in [0, 1], NCHW,
after the same resize and centre crop the app does; normalisation is inside the graph, so a
user's script cannot get mean and std wrong. Classifiers output probabilities, encoders their
embedding. NAME.json beside NAME.onnx (and the same JSON in the ONNX metadata under
"sslstudio") says all of this, with the class names and where the model came from.
"""

from __future__ import annotations

import inspect
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
from torch import nn

from sslstudio.core.control import Cancelled, RunControl, run_to_end
from sslstudio.core.events import ExportCheck, ExportFinished, ExportLatency, ExportProgress
from sslstudio.core.fileio import atomic_write_text
from sslstudio.core.outputs import OutputError, check_output_file

FORMAT = "sslstudio-onnx/1"
OPSET = 17
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
    preprocess: dict
    class_names: tuple
    data_dir: Path
    description: dict  # objective, backbone, method, run, ...
    labels: dict  # item (relative path) -> class name: the labels an adapted model learned from
    folder: Path | None = None  # the run or adapted folder (its tokenizer.json, for text)

    @property
    def modality(self) -> str:
        return self.preprocess.get("modality", "image")

    @property
    def input_name(self) -> str:
        return "input_ids" if self.modality == "text" else "image"

    def tokenizer(self):
        from sslstudio.core.tokenizer import TOKENIZER_FILE, configure, load_tokenizer

        path = Path(self.folder) / TOKENIZER_FILE
        if not path.exists():
            raise ExportError(f"{path} is missing: a text model needs the tokenizer it was trained with")
        return configure(load_tokenizer(path), int(self.preprocess["max_length"]))


class ExportedModel(nn.Module):
    """[0, 1] RGB in, normalised inside, probabilities or embedding out."""

    def __init__(self, model: nn.Module, mean, std, probabilities: bool):
        super().__init__()
        self.model = model
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.probabilities = probabilities

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # Images are normalised here; token ids go straight in.
        out = self.model((inputs - self.mean) / self.std if self.normalise else inputs)
        return torch.softmax(out, dim=1) if self.probabilities else out


def exported_model(source: "ExportSource") -> ExportedModel:
    classifier = source.kind == "classifier"
    if source.modality == "text":
        return ExportedModel(source.model, None, None, classifier).eval()
    return ExportedModel(source.model, source.preprocess["mean"], source.preprocess["std"],
                         classifier).eval()


def load_source(source: Path, encoder_only: bool = False) -> ExportSource:
    from sslstudio.core import config as cfg
    from sslstudio.core.adapt.job import ADAPTED_FILE, load_adapted
    from sslstudio.core.embed import load_encoder

    source = Path(source)
    device = torch.device("cpu")
    if (source / ADAPTED_FILE).exists():
        adapted = load_adapted(source, device)
        info = adapted.info["adapt"]
        run_config = _run_train_config(Path(info.get("run", "")))
        labels = _read_labels(source / "labels.csv")
        description = {"source": "adapted", "method": info["method"], "backbone": info["backbone"],
                       "objective": run_config.get("objective", ""), "run": info.get("run", ""),
                       "adapted": str(source.resolve())}
        if encoder_only:
            return ExportSource(adapted.model.encoder.eval(), "encoder", adapted.preprocess, (),
                                Path(info["data"]), description, labels, source)
        return ExportSource(adapted.model, "classifier", adapted.preprocess, adapted.class_names,
                            Path(info["data"]), description, labels, source)
    if (source / "config.toml").exists():
        encoder, preprocess = load_encoder(source, device)
        train = cfg.read_toml(source / "config.toml")["train"]
        description = {"source": "run", "method": "", "backbone": train["backbone"],
                       "objective": train["objective"], "run": str(source.resolve())}
        return ExportSource(encoder, "encoder", preprocess, (), Path(train["data"]), description, {},
                            source)
    raise ExportError(f"{source} is neither a run folder (config.toml) nor an adapted model "
                      "(adapted.toml); export a run made by `sslstudio train` or a model made by "
                      "`sslstudio adapt`")


def _run_train_config(run: Path) -> dict:
    from sslstudio.core import config as cfg

    try:
        return cfg.read_toml(run / "config.toml").get("train", {})
    except OSError:
        return {}


def _read_labels(path: Path) -> dict:
    from sslstudio.core.labels import read_label_csv

    if not path.exists():
        return {}
    return {row[0]: row[1] for _, row in read_label_csv(path) if len(row) >= 2}


def sidecar(source: ExportSource, output_name: str, files: dict) -> dict:
    """Everything a program needs to feed the model and read its output."""
    from sslstudio import __version__

    pre = source.preprocess
    if source.modality == "text":
        length = int(pre["max_length"])
        model_input = {"name": "input_ids", "dtype": "int64", "shape": ["batch", length],
                       "tokenizer": files.get("tokenizer", "")}
        preprocess = {
            "modality": "text", "max_length": length,
            "tokenize": f"the tokenizer file: [CLS] text [SEP], truncated and padded with [PAD] "
                        f"(id 0) to {length} tokens; the model ignores padding",
        }
    else:
        size = int(pre["image_size"])
        model_input = {
            "name": "image", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size],
            "channel_order": "RGB", "range": [0.0, 1.0], "normalization_in_model": True,
            "mean": list(pre["mean"]), "std": list(pre["std"]),
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


def parity_images(data_dir: Path, size: int, count: int, wanted: list[str] | None = None):
    """Up to `count` items spread over the folder, decoded exactly as the app decodes them;
    returns (uint8 NHWC array, relative paths)."""
    from sslstudio.core.data.images import IMAGE_EXTENSIONS, SkipItem, decode_image
    from sslstudio.core.data.scan import list_folder

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


def parity_inputs(source: "ExportSource", data_dir: Path, count: int,
                  wanted: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Model inputs for items of the folder (a spread, or the `wanted` items), as the app
    prepares them: images decoded and scaled to [0, 1], or texts through the run's tokenizer."""
    if source.modality != "text":
        images, names = parity_images(data_dir, int(source.preprocess["image_size"]), count, wanted)
        return to_input(images), names
    from sslstudio.core.data.text_folder import load_text_folder

    folder = run_to_end(load_text_folder(Path(data_dir), source.preprocess.get("text_field", "text")))
    if wanted is not None:
        index = {item: i for i, item in enumerate(folder.items)}
        picks = [index[w] for w in wanted if w in index]
    else:
        picks = np.unique(np.linspace(0, len(folder.items) - 1, min(count, len(folder.items))).astype(int))
    tokenizer = source.tokenizer()
    encodings = tokenizer.encode_batch([folder.texts[i] for i in picks])
    return np.array([e.ids for e in encodings], np.int64), [folder.items[i] for i in picks]


def to_input(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, classifier: bool) -> dict:
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


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _median_ms(function, repeats: int) -> float:
    function()
    function()  # warm-up: first runs allocate and pick kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def _write_onnx(model: nn.Module, dummy: torch.Tensor, path: Path, output_name: str,
                metadata: dict, input_name: str = "image") -> None:
    import onnx

    kwargs = dict(input_names=[input_name], output_names=[output_name],
                  dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                  opset_version=OPSET, do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # The TorchScript exporter: exports every backbone here from torch 2.3 to 2.14 without
        # onnxscript; the dynamo exporter would add a dependency for no gain on these graphs.
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), **kwargs)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_model(request: ExportRequest, control: RunControl | None = None) -> Iterator:
    """Write NAME.onnx (+ NAME.int8.onnx) and NAME.json, verified; yields progress and figures."""
    control = control or RunControl()
    source = load_source(Path(request.source), request.encoder_only)
    data_dir = Path(request.data_dir) if request.data_dir else source.data_dir
    out, int8_path, json_path, tokenizer_path = export_paths(request.out)
    targets = [out, json_path] + ([int8_path] if request.quantize else []) + (
        [tokenizer_path] if source.modality == "text" else [])
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
    partial = [_new_partial(out), _new_partial(int8_path)]
    written: list[Path] = []
    try:
        yield ExportProgress("exporting", f"{source.kind} of {source.description['backbone']} to ONNX")
        files = {"float": out.name}
        if request.quantize:
            files["int8"] = int8_path.name
        if source.modality == "text":
            files["tokenizer"] = tokenizer_path.name
        facts = sidecar(source, output_name, files)
        metadata = {"sslstudio": json.dumps(facts), "class_names": json.dumps(facts["class_names"]),
                    "output": output_name}
        inputs, _ = parity_inputs(source, data_dir, request.parity_items)
        if not len(inputs):
            raise ExportError(f"no readable items in {data_dir} to check the export on; pass the "
                              "folder the model was trained on")
        _write_onnx(wrapped, torch.from_numpy(inputs[:2]), partial[0], output_name, metadata, name)
        control.checkpoint()
        if request.quantize == "int8":
            yield ExportProgress("quantizing", "dynamic int8 with onnxruntime")
            _quantize(partial[0], partial[1])
        elif request.quantize:
            raise ExportError(f"--quantize {request.quantize!r} is not supported; use int8")

        yield ExportProgress("checking", "PyTorch and onnxruntime on items of the folder")
        labelled = _labelled_items(source, data_dir)
        variants = [("float", partial[0])] + ([("int8", partial[1])] if request.quantize else [])
        checks = {}
        with torch.inference_mode():
            reference = wrapped(torch.from_numpy(inputs)).numpy()
            labelled_torch = (wrapped(torch.from_numpy(labelled[0])).numpy()
                              if labelled else None)
        for variant, path in variants:
            session = _session(path)
            produced = session.run(None, {name: inputs})[0]
            figures = compare_outputs(reference, produced, classifier)
            passed, tolerance = judge(figures, variant, classifier, float(np.abs(reference).max()))
            extra = {}
            if labelled:
                onnx_out = session.run(None, {name: labelled[0]})[0]
                extra = {"labelled_items": len(labelled[1]),
                         "labelled_accuracy_torch": float((labelled_torch.argmax(1) == labelled[1]).mean()),
                         "labelled_accuracy_onnx": float((onnx_out.argmax(1) == labelled[1]).mean())}
            check = ExportCheck(variant, len(inputs), passed=passed, tolerance=tolerance,
                                **figures, **extra)
            checks[variant] = check
            yield check
            control.checkpoint()

        # A model that disagrees is not worth timing.
        if not checks["float"].passed:
            c = checks["float"]
            raise _ParityFailed(f"the ONNX model disagrees with PyTorch on {c.items} items "
                                f"(max |difference| {c.max_abs_diff:.3g}, min cosine {c.min_cosine:.6f}, "
                                f"top-1 agreement {c.top1_agreement:.1%}; needed {c.tolerance}); "
                                "nothing was saved")

        yield ExportProgress("timing", "eager PyTorch and onnxruntime on the CPU")
        latency = {}
        for variant, path in variants:
            session = _session(path)
            for batch in (1, 64):
                x = np.resize(inputs, (batch,) + inputs.shape[1:])
                tensor = torch.from_numpy(x)

                def run_torch():
                    with torch.inference_mode():
                        wrapped(tensor)

                repeats = request.latency_repeats if batch == 1 else max(3, request.latency_repeats // 4)
                event = ExportLatency(variant, batch, _median_ms(run_torch, repeats),
                                      _median_ms(lambda: session.run(None, {name: x}), repeats))
                latency[f"{variant}_batch{batch}"] = {"torch_ms": event.torch_ms, "onnx_ms": event.onnx_ms}
                yield event
                control.checkpoint()

        facts["parity"] = {variant: {k: v for k, v in vars(check).items() if k != "variant"}
                           for variant, check in checks.items()}
        facts["latency"] = latency
        keep_int8 = request.quantize and checks["int8"].passed
        if request.quantize and not keep_int8:
            facts["files"].pop("int8", None)
        os.replace(partial[0], out)
        written.append(out)
        if source.modality == "text":
            atomic_write_text(tokenizer_path, source.tokenizer().to_str())
            written.append(tokenizer_path)
        if keep_int8:
            os.replace(partial[1], int8_path)
            written.append(int8_path)
        atomic_write_text(json_path, json.dumps(_json_safe(facts), indent=1))
        written.append(json_path)
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


class _ParityFailed(Exception):
    pass


def export_paths(out: Path) -> tuple[Path, Path, Path, Path]:
    """NAME.onnx, NAME.int8.onnx, NAME.json and NAME.tokenizer.json for what the user gave."""
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        out = out.with_name(out.name + ".onnx")
    return (out, out.with_name(out.stem + ".int8.onnx"), out.with_suffix(".json"),
            out.with_name(out.stem + ".tokenizer.json"))


def _new_partial(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return Path(name)


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
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = float_path.with_name(float_path.name + ".pre")
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


def run_exported(model_path: Path, image_path: Path) -> dict:
    """Decode an image as the app does (or read a text file through the model's tokenizer) and
    run the exported model on it with onnxruntime."""
    from sslstudio.core.data.images import SkipItem, decode_image

    info = read_sidecar(model_path)
    if info["preprocess"].get("modality") == "text":
        from sslstudio.core.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(Path(model_path).with_name(info["files"]["tokenizer"]))
        try:
            text = Path(image_path).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as error:
            raise ExportError(f"cannot read {image_path}: {error.strerror or error}") from None
        ids = np.array([tokenizer.encode(text).ids], np.int64)
        output = _session(Path(model_path)).run(None, {"input_ids": ids})[0][0]
        return {"info": info, "output": output, "text": text}
    size = int(info["preprocess"]["image_size"])
    try:
        array, _ = decode_image(Path(image_path), size)
    except SkipItem as reason:
        raise ExportError(f"cannot use {Path(image_path).name}: {reason}") from None
    output = _session(Path(model_path)).run(None, {"image": to_input(array[None])})[0][0]
    return {"info": info, "output": output, "image": array}


def nearest_items(model_path: Path, data_dir: Path, embedding: np.ndarray, count: int = 8,
                  max_items: int = 2000) -> list[tuple[str, float]]:
    """The folder items (a spread of up to `max_items`) whose exported embeddings are closest."""
    info = read_sidecar(model_path)
    session = _session(Path(model_path))
    if info["preprocess"].get("modality") == "text":
        from sslstudio.core.data.text_folder import load_text_folder
        from sslstudio.core.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(Path(model_path).with_name(info["files"]["tokenizer"]))
        folder = run_to_end(load_text_folder(Path(data_dir)))
        picks = np.unique(np.linspace(0, len(folder.items) - 1, min(max_items, len(folder.items))).astype(int))
        names = [folder.items[i] for i in picks]
        inputs = np.array([e.ids for e in tokenizer.encode_batch([folder.texts[i] for i in picks])], np.int64)
        feed = "input_ids"
    else:
        images, names = parity_images(Path(data_dir), int(info["preprocess"]["image_size"]), max_items)
        inputs, feed = (to_input(images) if len(images) else images), "image"
    if not names:
        return []
    chunks = [session.run(None, {feed: inputs[s:s + 256]})[0] for s in range(0, len(inputs), 256)]
    reference = np.concatenate(chunks)
    reference /= np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    query = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
    similarity = reference @ query
    order = np.argsort(-similarity)[:count]
    return [(names[i], float(similarity[i])) for i in order]
