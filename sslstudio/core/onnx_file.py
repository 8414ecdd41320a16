"""Writing a model to an ONNX file and running one: the tracing (embedding tables and the
buffers a module names read in half precision), onnxruntime's session on the CPU, and the
latency and size figures that runs and exports report."""

from __future__ import annotations

import copy
import inspect
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OPSET = 17


def onnx_session(path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_ms(function, repeats: int) -> float:
    function()
    function()  # warm-up: first runs allocate and pick kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def onnx_figures(model: nn.Module, one: torch.Tensor, repeats: int = 10) -> tuple[float, float]:
    """One item through onnxruntime on this machine's CPU (median milliseconds) and the ONNX
    file's megabytes, for `model` as it is (a copy is exported; the model is not moved); NaNs
    where it does not export or run, for a figure that is worth having but never worth a
    failed run."""
    with tempfile.TemporaryDirectory(prefix="sslstudio-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            on_cpu = copy.deepcopy(model).cpu().eval()
            write_onnx(on_cpu, one.detach().cpu(), path, "features", {}, input_name="input")
            session = onnx_session(path)
            x = one.detach().cpu().numpy()
            milliseconds = median_ms(lambda: session.run(None, {"input": x}), repeats)
            return milliseconds, path.stat().st_size / 1e6
        except (RuntimeError, ValueError, TypeError, OSError, onnx.checker.ValidationError,
                ort.capi.onnxruntime_pybind11_state.Fail):
            return float("nan"), float("nan")


class HalfTable(nn.Module):
    """An embedding table stored in half precision whose looked-up vectors are float32 again."""

    def __init__(self, table: nn.Embedding):
        super().__init__()
        self.padding_idx = table.padding_idx
        self.weight = nn.Parameter(table.weight.detach().half(), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(ids, self.weight, self.padding_idx).float()


def with_half_tables(model: nn.Module) -> nn.Module:
    """A copy of `model` whose embedding tables are stored in half precision, or `model` itself
    where it has none. A text model's file is mostly its tables (a static student's all of it)
    and the rest of the graph reads them in float32, so the file is about half as large while
    its features move by less than the float parity check allows (Model2Vec stores its static
    models in float16 for the same reason). A module may name buffers it reads the same way, a
    gather and then a cast (`HALF_BUFFERS`): those are stored in half too."""
    if not any(isinstance(m, nn.Embedding) or getattr(m, "HALF_BUFFERS", ())
               for m in model.modules()):
        return model
    halved = copy.deepcopy(model)
    for parent in list(halved.modules()):
        for name in getattr(parent, "HALF_BUFFERS", ()):
            if getattr(parent, name, None) is not None:
                setattr(parent, name, getattr(parent, name).half())
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Embedding):
                setattr(parent, name, HalfTable(child))
    return halved


def write_onnx(model: nn.Module, dummy: torch.Tensor, path: Path, output_name: str,
                metadata: dict, input_name: str = "image", half_tables: bool = True) -> None:
    """The model traced to ONNX with its metadata, at `path` (a staged name: the caller renames
    it into place once verified); embedding tables in half precision unless told otherwise."""
    if half_tables:
        model = with_half_tables(model)
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
