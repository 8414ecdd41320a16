"""ONNX export: parity on real items, the standalone README script, and failures that leave
nothing half-written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sslstudio.core.adapt.job import AdaptRequest, adapt, load_adapted
from sslstudio.core.data.images import decode_image
from sslstudio.core.export import ExportError, ExportRequest, export_model
from sslstudio.core.modalities.image import pixels_to_input as to_input
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "fashion-mnist"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A run trained on the bundled sample, and a LoRA classifier adapted from it."""
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    list(train(TrainConfig(data=str(SAMPLE), out=str(run), epochs=1, batch_size=64, image_size=28,
                           monitor_items=64)))
    labels = {}
    for class_dir in sorted(SAMPLE.iterdir()):
        if class_dir.is_dir():
            for path in sorted(class_dir.glob("*.png"))[:5]:
                labels[path.relative_to(SAMPLE).as_posix()] = class_dir.name
    adapted = root / "adapted"
    list(adapt(AdaptRequest(run, SAMPLE, labels, "lora", {"epochs": 2, "repeats": 1}, out_dir=adapted)))
    return run, adapted


def events_of(request):
    request.latency_repeats = 2  # the timing is measured by the benchmark, not here
    events = list(export_model(request))
    return events, {type(e).__name__: e for e in events}


def test_encoder_export_matches_pytorch_on_sample_items(models, tmp_path):
    run, _ = models
    out = tmp_path / "encoder.onnx"
    events, last = events_of(ExportRequest(run, out))
    check = last["ExportCheck"]
    assert check.passed and check.items == 64 and check.min_cosine > 0.9999
    assert last["ExportFinished"].status == "completed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.json", "encoder.onnx"]
    info = json.loads((tmp_path / "encoder.json").read_text())
    assert info["output"]["name"] == "embedding" and info["input"]["shape"][1:] == [3, 28, 28]
    assert info["model"]["objective"] == "simclr" and info["parity"]["float"]["passed"]
    assert {e.batch for e in events if type(e).__name__ == "ExportLatency"} == {1, 64}
    proto = onnx.load(str(out))
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(metadata["sslstudio"])["input"]["mean"] == info["input"]["mean"]
    # The batch axis is dynamic.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = np.stack([decode_image(p, 28)[0] for p in sorted(SAMPLE.rglob("*.png"))[:3]])
    # The features a probe reads: small_cnn's last stage (128 wide) on a 2x2 grid.
    assert session.run(None, {"image": to_input(images)})[0].shape == (3, 4 * 128)


def test_classifier_export_with_int8_reports_parity_and_accuracy(models, tmp_path):
    _, adapted = models
    out = tmp_path / "model.onnx"
    events, last = events_of(ExportRequest(adapted, out, quantize="int8"))
    checks = {e.variant: e for e in events if type(e).__name__ == "ExportCheck"}
    assert checks["float"].passed and checks["float"].top1_agreement == 1.0
    assert checks["float"].labelled_items == 50
    assert checks["float"].labelled_accuracy_onnx == checks["float"].labelled_accuracy_torch
    assert "int8" in checks and 0.0 <= checks["int8"].labelled_accuracy_onnx <= 1.0
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["output"]["name"] == "probabilities" and len(info["class_names"]) == 10
    assert info["model"]["method"] == "lora"
    assert (tmp_path / "model.int8.onnx").exists() == checks["int8"].passed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def readme_script() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return next(b for b in blocks if b.startswith("# classify.py"))


def test_readme_script_predicts_what_the_app_predicts(models, tmp_path):
    _, adapted = models
    out = tmp_path / "model.onnx"
    events_of(ExportRequest(adapted, out))
    script = tmp_path / "classify.py"
    script.write_text(readme_script())
    # Images the way users have them: the sample's PNGs, plus a large JPEG and a transparent PNG.
    from PIL import Image

    sample_paths = sorted(SAMPLE.rglob("*.png"))[::60]
    big = Image.open(sample_paths[0]).convert("RGB").resize((300, 200))
    big.save(tmp_path / "big.jpg", quality=90)
    rgba = Image.open(sample_paths[1]).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 180))
    rgba.save(tmp_path / "alpha.png")
    paths = sample_paths + [tmp_path / "big.jpg", tmp_path / "alpha.png"]

    model = load_adapted(adapted, torch.device("cpu"))
    mean = torch.tensor(model.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocess.std).view(1, 3, 1, 1)
    no_torch = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    for path in paths:
        array, _ = decode_image(path, 28)  # the app's own decoding
        with torch.no_grad():
            x = (torch.from_numpy(to_input(array[None])) - mean) / std
            app = torch.softmax(model.model(x), 1)[0].numpy()
        result = subprocess.run([sys.executable, "-c", no_torch, str(script), str(out), str(path)],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        name, probability = result.stdout.splitlines()[0].split("\t")
        assert name == model.class_names[int(app.argmax())], path
        assert abs(float(probability) - float(app.max())) < 1e-4, path


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False,
                    reason="root writes to read-only folders")
def test_export_to_a_read_only_folder_fails_clearly(models, tmp_path):
    run, _ = models
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="cannot write to .*locked.*choose another folder"):
            list(export_model(ExportRequest(run, locked / "m.onnx")))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_unwritable_or_full_location_fails_clearly_and_leaves_no_file(models, tmp_path, monkeypatch):
    run, _ = models
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "NamedTemporaryFile", refuse)
        with pytest.raises(ExportError, match="cannot write to .*Permission denied; choose another folder"):
            list(export_model(ExportRequest(run, tmp_path / "m.onnx")))
    assert list(tmp_path.iterdir()) == []

    def disk_full(proto, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 100)  # a partial file, as a full disk leaves one
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", disk_full)
    with pytest.raises(ExportError, match="No space left on device; free some space"):
        list(export_model(ExportRequest(run, tmp_path / "m.onnx")))
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_disagrees_is_reported_failed_and_not_saved(models, tmp_path, monkeypatch):
    run, _ = models
    import sslstudio.core.export as export

    real_write = export.write_onnx

    def write_a_different_model(model, dummy, path, output_name, metadata, input_name):
        torch.manual_seed(123)
        from sslstudio.core.backbones import build_backbone

        other = export.ExportedModel(build_backbone("small_cnn", dummy.shape[-1]).eval(),
                                     [0.5] * 3, [0.5] * 3, False)
        real_write(other, dummy, path, output_name, metadata, input_name)

    monkeypatch.setattr(export, "write_onnx", write_a_different_model)
    events, last = events_of(ExportRequest(run, tmp_path / "m.onnx"))
    assert not last["ExportCheck"].passed
    finished = last["ExportFinished"]
    assert finished.status == "failed" and "disagrees with PyTorch" in finished.message
    assert "min cosine" in finished.message and list(tmp_path.iterdir()) == []


def test_cli_export_prints_parity_and_latency(models, tmp_path, capsys):
    from sslstudio.cli import main

    _, adapted = models
    assert main(["export", str(adapted), "--out", str(tmp_path / "sub" / "enc.onnx"), "--encoder"]) == 0
    out = capsys.readouterr().out
    assert "parity (float, 64 items of the folder): PASSED" in out
    assert "latency (float, batch 64, CPU)" in out
    info = json.loads((tmp_path / "sub" / "enc.json").read_text())
    assert info["output"]["name"] == "embedding" and info["model"]["method"] == "lora"
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
