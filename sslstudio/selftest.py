"""`sslstudio selftest` (`SSLStudio --self-test` in the bundle): the whole loop on the bundled
sample, quickly, so an installation proves itself before a user relies on it.

Opens the main window on the sample (offscreen where there is no display), then headless:
trains a few steps, maps the run with t-SNE, labels ten items, fits the linear probe, exports
ONNX and checks it against PyTorch. Everything is written to a temporary folder that is removed
at the end; the sample itself is only read. Exit 0 when every step passed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path


def sample_folder() -> Path:
    from sslstudio.resources import sample_dataset_path

    return sample_dataset_path()


def run_self_test(keep: Path | None = None, stream=None) -> int:
    stream = stream or sys.stdout
    started = time.monotonic()

    def say(step: str, detail: str = "") -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {step}{': ' + detail if detail else ''}",
              file=stream, flush=True)

    sample = sample_folder()
    if not sample.is_dir():
        say("FAILED", f"the bundled sample is missing ({sample})")
        return 1
    work = Path(tempfile.mkdtemp(prefix="sslstudio-selftest-")) if keep is None else Path(keep)
    work.mkdir(parents=True, exist_ok=True)
    try:
        for name, step in (("window", _window), ("train", _train), ("map where groups stand apart", _map),
                           ("label and fit the probe", _adapt), ("export ONNX and check parity", _export)):
            try:
                detail = step(sample, work)
            except Exception as error:  # noqa: BLE001 - the test reports every failure plainly
                say(f"FAILED {name}", f"{type(error).__name__}: {error}")
                return 1
            say(f"ok {name}", detail)
        say("self-test passed")
        return 0
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _window(sample: Path, work: Path) -> str:
    from sslstudio.gui.selftest_window import open_on_sample

    return open_on_sample(sample, work)


def _train(sample: Path, work: Path) -> str:
    from sslstudio.core.run.train import train
    from sslstudio.core.run.config import TrainConfig

    events = list(train(TrainConfig(data=str(sample), out=str(work / "run"), objective="simclr",
                                    backbone="small_cnn", epochs=1, batch_size=64, image_size=28,
                                    device="cpu", monitor_items=64)))
    finished = events[-1]
    if getattr(finished, "status", "") != "completed":
        raise RuntimeError(f"training ended {getattr(finished, 'status', '?')}: {getattr(finished, 'message', '')}")
    return f"{finished.step} steps of SimCLR on the CPU"


def _map(sample: Path, work: Path) -> str:
    """The t-SNE map a completed run gets in the window (openTSNE and its compiled parts)."""
    import numpy as np

    from sslstudio.core.projection import run_neighbour_map

    events = list(run_neighbour_map(work / "run"))
    if not events or not hasattr(events[-1], "coords"):
        raise RuntimeError("the run left no snapshot to map")
    coords = events[-1].coords
    if coords.shape[1] != 2 or not np.isfinite(coords).all():
        raise RuntimeError(f"the map is not a finite 2-D layout ({coords.shape})")
    return f"t-SNE of {len(coords)} items"


def _adapt(sample: Path, work: Path) -> str:
    from sslstudio.core.adapt.job import AdaptRequest, adapt

    classes = sorted(p.name for p in sample.iterdir() if p.is_dir())[:2]
    labels = {}
    for name in classes:
        for path in sorted((sample / name).iterdir())[:5]:
            labels[f"{name}/{path.name}"] = name
    events = list(adapt(AdaptRequest(work / "run", sample, labels, "linear", out_dir=work / "linear",
                                     device="cpu")))
    finished = events[-1]
    if finished.status != "completed":
        raise RuntimeError(f"the probe ended {finished.status}: {finished.message}")
    return f"10 labels ({', '.join(classes)}), {finished.message}"


def _export(sample: Path, work: Path) -> str:
    from sslstudio.core.export import ExportRequest, export_model

    events = list(export_model(ExportRequest(work / "linear", work / "model.onnx", data_dir=sample,
                                             parity_items=32, latency_repeats=3)))
    checks = [e for e in events if type(e).__name__ == "ExportCheck"]
    finished = events[-1]
    if finished.status != "completed" or not checks or not all(c.passed for c in checks):
        raise RuntimeError(f"export {finished.status}: {finished.message}")
    worst = max(c.max_abs_diff for c in checks)
    return f"{(work / 'model.onnx').stat().st_size / 1e6:.1f} MB, onnxruntime matches PyTorch (max |diff| {worst:.2g})"
