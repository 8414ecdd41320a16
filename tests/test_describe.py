"""describe(): one wording for every event, shared by the CLI's printer and the app's log."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest

from sslstudio.cli import ProgressPrinter, main
from sslstudio.core.describe import Description, describe, format_estimate
from sslstudio.core.events import (AdaptEstimate, AdaptFinished, AdaptPredictions, AdaptProgress,
                                   AdaptStarted, Checkpointed, EmbeddingSnapshot, EmbedFinished,
                                   EmbedProgress, ExportCheck, ExportFinished, ExportLatency,
                                   ExportProgress, FeaturesReady, MapProgress, MapReady, RunFinished, RunStarted,
                                   RunWarning, ScanFinished, ScanProgress, StepMetrics)

CHECKPOINT = "/runs/r1/checkpoints/last.safetensors"


def estimate(**changes) -> AdaptEstimate:
    fields = dict(method="linear", scheme="leave-one-out over 12 labels", num_labels=12,
                  accuracy=0.8333, ci_low=0.70, ci_high=0.953, balanced_accuracy=0.8,
                  class_names=("cat", "elephant"), recall=np.array([0.9, 0.75]),
                  precision=np.array([0.8, 1.0]), support=np.array([8, 4]), confusion=np.eye(2),
                  repeat_accuracies=np.array([0.8333]))
    return AdaptEstimate(**{**fields, **changes})


def step(**changes) -> StepMetrics:
    fields = dict(step=2, epoch=0, loss=1.23456, lr=0.0003, samples_per_s=123.4, elapsed_s=3.0,
                  progress=0.666, eta_s=75.0, batch_size=8)
    return StepMetrics(**{**fields, **changes})


def run_started(**changes) -> RunStarted:
    fields = dict(run_dir="/runs/r1", objective="byol", backbone="small_cnn", device="cpu",
                  num_items=24, num_skipped=0, batch_size=8, total_steps=3, start_step=0,
                  world_size=1, feature_dim=128)
    return RunStarted(**{**fields, **changes})


# The CLI's wording from before describe() existed, unchanged except where noted in the report.
CASES = {
    "scan_progress": (ScanProgress(done=5, total=24, skipped=1, current="a.png"),
                      "scanning 5/24 files, 1 skipped", "progress"),
    # Tokenizing used to print as "scanning N/M files" for minutes on a large text folder.
    "tokenizing": (ScanProgress(done=5, total=24, skipped=0, current="", phase="tokenizing"),
                   "tokenizing 5/24 texts", "progress"),
    "scan_finished": (ScanFinished(total_files=24, usable=22, skipped=2, elapsed_s=0.25,
                                   skipped_by_reason={"unreadable": 1, "too small": 1}),
                      "scanned 24 files in 0.2s: 22 usable, 2 skipped (1 unreadable, 1 too small)",
                      "note"),
    "scan_finished_clean": (ScanFinished(total_files=24, usable=24, skipped=0, skipped_by_reason={},
                                         elapsed_s=1.0),
                            "scanned 24 files in 1.0s: 24 usable, 0 skipped", "note"),
    "run_started": (run_started(),
                    "training byol on small_cnn (128-d) on cpu: 24 items, batch 8 -> /runs/r1", "note"),
    "run_started_resumed_distributed": (
        run_started(objective="simclr", backbone="resnet18", device="cuda:0", num_items=1000,
                    batch_size=256, total_steps=-1, start_step=40, world_size=2, feature_dim=512),
        ("training simclr on resnet18 (512-d) on cuda:0 x2 processes: 1000 items, batch 256, "
         "resuming at step 40 -> /runs/r1"), "note"),
    "step_metrics": (step(epoch=1, loss=0.5, lr=1e-5, samples_per_s=9.6, progress=0.1, eta_s=math.nan,
                          knn_accuracy=0.75, probe_accuracy=0.5),
                     ("step 2 | epoch 1 | loss 0.5000 | lr 1.00e-05 | 10 items/s | kNN 0.750 | "
                      "10-shot probe 0.500 | 10% | ETA ?"), "progress"),
    "embedding_snapshot": (EmbeddingSnapshot(step=10, indices=np.arange(3), labels=np.zeros(3, np.int64),
                                             coords=np.zeros((3, 2), np.float32)),
                           "embedding map at step 10", "data"),
    "run_warning": (RunWarning(kind="data", message="2 files skipped"), "warning: 2 files skipped",
                    "warning"),
    "checkpointed": (Checkpointed(step=3, path=CHECKPOINT), "checkpoint at step 3", "detail"),
    "run_finished": (RunFinished(status="completed", step=3, checkpoint=CHECKPOINT),
                     f"run completed at step 3\ncheckpoint: {CHECKPOINT}", "note"),
    "run_failed": (RunFinished(status="failed", step=7, message="loss is NaN"),
                   "run failed at step 7: loss is NaN", "note"),
    "embed_progress": (EmbedProgress(done=64, total=100), "embedding 64/100", "progress"),
    "embed_finished": (EmbedFinished(path="/tmp/f.npy", count=24, dim=128),
                       "wrote 24 x 128 features to /tmp/f.npy", "note"),
    "features_ready": (FeaturesReady(items=np.array(["a", "b"]), features=np.zeros((2, 8), np.float32),
                                     coords=np.zeros((2, 2), np.float32)),
                       "features of 2 items", "data"),
    "map_progress": (MapProgress(done=50, total=750, phase="arranging the map", elapsed_s=3.0),
                     "arranging the map: 50/750", "progress"),
    "map_ready": (MapReady(items=np.array(["a", "b"]), coords=np.zeros((2, 2), np.float32),
                           method="t-SNE", elapsed_s=75.0),
                  "t-SNE map of 2 items in 1m 15s", "note"),
    "map_ready_cached": (MapReady(items=np.array(["a"] * 1200), coords=np.zeros((1200, 2), np.float32),
                                  method="t-SNE", elapsed_s=0.0),
                         "t-SNE map of 1,200 items from the run's cache", "note"),
    "adapt_started": (AdaptStarted(method="linear", num_labels=12, class_names=("a", "b", "c"),
                                   scheme="leave-one-out over 12 labels", trainings=13,
                                   trainable_parameters=387, total_parameters=11_000_387),
                      ("linear: 12 labels in 3 classes; estimate by leave-one-out over 12 labels; "
                       "387 of 11,000,387 parameters train (0.0%)"), "note"),
    "adapt_progress": (AdaptProgress(method="lora", phase="estimate", done=3, total=10, loss=0.1234),
                       "lora estimate 3/10 | loss 0.1234", "progress"),
    "adapt_progress_without_loss": (AdaptProgress(method="linear", phase="features", done=3, total=10),
                                    "linear features 3/10", "progress"),
    "adapt_estimate": (estimate(),
                       ("linear: estimated accuracy 83.3% (95% interval 70.0%-95.3%), balanced 80.0%; "
                        "leave-one-out over 12 labels\n"
                        "  class     labels  recall  precision\n"
                        "  cat            8     90%        80%\n"
                        "  elephant       4     75%       100%"), "note"),
    "adapt_predictions": (AdaptPredictions(items=np.array(["a"]), predicted=np.array([0]),
                                           confidence=np.array([0.9], np.float32),
                                           margin=np.array([0.5], np.float32)),
                          "predictions for 1 items", "data"),
    "adapt_finished": (AdaptFinished(status="completed", method="linear", path="/runs/r1/adapted/x"),
                       "linear completed -> /runs/r1/adapted/x", "note"),
    "adapt_cancelled": (AdaptFinished(status="cancelled", method="lora", message="stopped by the user"),
                        "lora stopped by the user", "note"),
    # A comparison finished as "finetune,linear,lora completed" before.
    "compare_finished": (AdaptFinished(status="completed", method="finetune,linear,lora"),
                         "comparing finetune, linear and lora completed", "note"),
    "export_progress": (ExportProgress(phase="exporting", message="encoder of small_cnn to ONNX"),
                        "exporting: encoder of small_cnn to ONNX", "note"),
    "export_check": (ExportCheck(variant="float", items=64, max_abs_diff=1.234e-6, mean_cosine=0.99999912,
                                 min_cosine=0.9999, top1_agreement=math.nan, passed=True,
                                 tolerance="cosine >= 0.999"),
                     ("parity (float, 64 items of the folder): PASSED: max |difference| 1.23e-06, "
                      "cosine mean 0.999999 min 0.999900 (needed cosine >= 0.999)"), "note"),
    "export_check_classifier": (
        ExportCheck(variant="int8", items=64, max_abs_diff=0.05, mean_cosine=0.99, min_cosine=0.95,
                    top1_agreement=0.96875, passed=False, tolerance="top-1 >= 95%", labelled_items=12,
                    labelled_accuracy_torch=0.8333, labelled_accuracy_onnx=0.75),
        ("parity (int8, 64 items of the folder): FAILED: max |difference| 0.05, cosine mean 0.990000 "
         "min 0.950000, top-1 agreement 96.9%; accuracy on the 12 labelled items: PyTorch 83.3%, "
         "ONNX 75.0% (needed top-1 >= 95%)"), "note"),
    "export_latency": (ExportLatency(variant="float", batch=64, torch_ms=12.3456, onnx_ms=4.1),
                       "latency (float, batch 64, CPU): PyTorch 12.35 ms, onnxruntime 4.10 ms (3.01x)",
                       "note"),
    "export_finished": (ExportFinished(status="completed", path="/tmp/m.onnx", message="2 files",
                                       files=("/tmp/m.onnx", "/tmp/m.json")),
                        "export completed: 2 files\n  /tmp/m.onnx\n  /tmp/m.json", "note"),
    "export_failed": (ExportFinished(status="failed", path="/tmp/m.onnx", message="disagrees with PyTorch"),
                      "export failed: disagrees with PyTorch", "note"),
}


@pytest.mark.parametrize("event, text, kind", CASES.values(), ids=CASES.keys())
def test_each_event_has_its_words_and_kind(event, text, kind):
    assert describe(event) == Description(text, kind)


def test_step_metrics_show_the_budget_the_run_started_with():
    assert describe(step(), total_steps=3).text == \
        "step 2/3 | epoch 0 | loss 1.2346 | lr 3.00e-04 | 123 items/s | 67% | ETA 1m 15s"
    assert describe(step(), total_steps=-1).text.startswith("step 2 | epoch 0 |")


def test_describe_needs_neither_torch_nor_qt():
    code = ("import sys, sslstudio.core.describe; "
            "assert not {'torch', 'PySide6'} & set(sys.modules), 'describe imports torch or Qt'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_an_unknown_event_is_named_for_the_app_log_only():
    class Surprise:
        pass

    assert describe(Surprise()) == Description("Surprise", "detail")


def test_the_estimate_table_is_wide_enough_for_its_header_and_notes_early_stopping():
    text = format_estimate(estimate(method="finetune", scheme="stratified 5-fold x 2 repeats",
                                    class_names=("x", "y"), support=np.array([6, 6]),
                                    recall=np.array([0.5, 0.5]), precision=np.array([0.5, 0.5]),
                                    epochs=17))
    assert text.splitlines() == [
        ("finetune: estimated accuracy 83.3% (95% interval 70.0%-95.3%), balanced 80.0%; "
         "stratified 5-fold x 2 repeats; each fit trained 17 epochs"),
        "  class  labels  recall  precision",
        "  x           6     50%        50%",
        "  y           6     50%        50%"]
    one_epoch = format_estimate(estimate(method="lora", scheme="leave-one-out", class_names=("x", "y"),
                                         support=np.array([6, 6]), recall=np.array([0.5, 0.5]),
                                         precision=np.array([0.5, 0.5]), epochs=1))
    assert one_epoch.splitlines()[0].endswith("each fit trained 1 epoch")  # not "1 epochs"


def test_the_printer_sends_each_kind_where_it_belongs(capsys):
    stream = io.StringIO()
    printer = ProgressPrinter(enabled=True, stream=stream)
    for event, _, _ in CASES.values():
        printer.last_print = -math.inf  # every progress line, not one per 10 s
        printer.show(event)
    printed = stream.getvalue()
    for name, (event, text, kind) in CASES.items():
        if kind in ("progress", "note"):
            assert text + "\n" in printed, name
        else:
            assert text not in printed, name
    assert capsys.readouterr().err == "warning: 2 files skipped\n"


def test_the_printer_counts_steps_from_run_started_and_quiet_keeps_only_notes():
    stream = io.StringIO()
    printer = ProgressPrinter(enabled=True, stream=stream)
    printer.show(run_started(total_steps=3))
    printer.show(step())
    assert "step 2/3 | epoch 0" in stream.getvalue()
    quiet = io.StringIO()
    printer = ProgressPrinter(enabled=False, stream=quiet)
    printer.show(run_started())
    printer.show(step())
    assert quiet.getvalue() == CASES["run_started"][1] + "\n"


def test_a_short_train_run_prints_what_it_always_printed(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--out", str(run), "--objective", "byol",
                 "--epochs", "1", "--batch-size", "8", "--image-size", "16",
                 "--labels-from-folders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scanned = lines.index(next(line for line in lines if line.startswith("scanned 24 files in ")))
    assert lines[scanned].endswith(": 24 usable, 0 skipped")
    started = lines[scanned + 1]
    assert started.startswith("training byol on small_cnn (") and started.endswith(
        f": 24 items, batch 8 -> {run}")
    checkpoint = run / "checkpoints" / "last.safetensors"
    assert lines[-2:] == ["run completed at step 3", f"checkpoint: {checkpoint}"]


# -- the app: the same words in its log, typed signals for its widgets --------------------------
def test_the_controller_logs_described_events_and_still_emits_typed_signals(qtbot):
    from sslstudio.gui.controller import TrainingController

    controller = TrainingController()
    logged, finished, checkpoints, metrics = [], [], [], []
    controller.log.connect(logged.append)
    controller.run_finished.connect(finished.append)
    controller.checkpointed.connect(checkpoints.append)
    controller.metrics.connect(metrics.append)
    for name in ("run_started", "step_metrics", "embedding_snapshot", "run_warning", "checkpointed",
                 "run_finished"):
        controller._on_event(CASES[name][0])
    assert logged == [CASES[name][1] for name in ("run_started", "run_warning", "checkpointed",
                                                   "run_finished")]
    assert finished == [CASES["run_finished"][0]] and checkpoints == [CASES["checkpointed"][0]]
    assert metrics == [CASES["step_metrics"][0]] and controller.history.size == 1


# -- saved knob choices: keyed by objective name, older class-name keys still read --------------
def test_knobs_saved_under_class_names_are_read_under_objective_names():
    from sslstudio.gui.widgets.run_setup import knobs_by_objective

    class MoCoConfig:
        pass

    class SimCLRConfig:
        pass

    objectives = {"moco": type("MoCo", (), {"config_cls": MoCoConfig}),
                  "simclr": type("SimCLR", (), {"config_cls": SimCLRConfig})}
    saved = {"MoCoConfig": {"queue_size": 1024}, "SimCLRConfig": {"temperature": 0.3},
             "simclr": {"temperature": 0.1}, "gone": {"x": 1}}
    assert knobs_by_objective(saved, objectives) == {
        "moco": {"queue_size": 1024}, "simclr": {"temperature": 0.1}, "gone": {"x": 1}}


def test_the_run_setup_panel_migrates_old_knob_keys_once(qtbot):
    from sslstudio.gui.widgets.run_setup import RunSetupPanel, engine_info

    info = engine_info()
    panel = RunSetupPanel()
    qtbot.addWidget(panel)
    panel.populate(info, {"objective": "moco", "knobs": {"MoCoConfig": {"queue_size": 1024}}})
    assert panel.knob_form.values()["queue_size"] == 1024
    panel.objective.setCurrentText("simclr")
    panel.objective.setCurrentText("moco")
    assert panel.knob_form.values()["queue_size"] == 1024
    saved = panel.choices()["knobs"]
    assert saved["moco"]["queue_size"] == 1024 and "MoCoConfig" not in saved and "simclr" in saved
    _, objective_config = panel.build_configs("data", "out")
    assert objective_config.queue_size == 1024


def test_an_interval_that_reaches_chance_says_so():
    # 12 labels, 8 of one class: always answering "cat" scores 67%, inside 55%-95%.
    low = estimate(ci_low=0.55)
    assert low.chance == pytest.approx(8 / 12)
    text = describe(low).text.splitlines()[0]
    assert text.endswith("the interval includes chance (67%): these labels do not show yet that it "
                         "beats guessing; more labels narrow it")
    assert estimate(ci_low=0.70).chance_words() == ""
    assert estimate(num_labels=0, support=np.array([0, 0])).chance_words() == ""


def test_an_estimate_with_a_caution_says_it_on_its_headline():
    line = format_estimate(estimate(method="setfit", caution="it can run opposite to the truth")).splitlines()[0]
    assert line.endswith("; caution: it can run opposite to the truth")
    assert "caution" not in format_estimate(estimate())


def test_on_a_cpu_the_form_starts_images_from_a_pretrained_encoder_on_disk_and_texts_from_auto(
        qtbot, monkeypatch, tmp_path):
    from sslstudio.core import devices
    from sslstudio.core.backbones import pretrained
    from sslstudio.gui.widgets.run_setup import RunSetupPanel, engine_info

    monkeypatch.setattr(devices, "resolve_device", lambda name: "cpu")
    monkeypatch.setattr(pretrained, "cached_weights", lambda name: tmp_path / f"{name}.safetensors"
                        if name == "pretrained_efficientnet_lite0" else None)
    monkeypatch.setattr(pretrained, "cached_text_encoder", lambda: tmp_path / "all-MiniLM-L6-v2")
    info = engine_info()
    assert info["default_backbones"] == {"image": "pretrained_efficientnet_lite0", "text": "auto"}
    panel = RunSetupPanel()
    qtbot.addWidget(panel)
    panel.populate(info, {})
    assert panel.backbone.currentData() == "pretrained_efficientnet_lite0"
