from __future__ import annotations

import csv
import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import messy
from sslstudio.core.control import RunControl
from sslstudio.core.events import (Checkpointed, EmbeddingSnapshot, RunFinished, RunStarted,
                                   RunWarning, ScanFinished, StepMetrics)
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.run.loop import lr_factor
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig, load_run_config
from sslstudio.core.run.loop import LoopParts


def config_for(folder, out, **overrides) -> TrainConfig:
    values = dict(data=str(folder), out=str(out), objective="simclr", batch_size=8, epochs=1,
                  image_size=16, log_every_steps=1, monitor_items=16)
    values.update(overrides)
    return TrainConfig(**values)


# Without the passes a fresh run times before its first step (they call forward too).
NO_TIMING_PASSES = LoopParts(fit_plan_to_machine=False)


def of_type(events, kind):
    return [e for e in events if isinstance(e, kind)]


IMAGE_OBJECTIVES = sorted(n for n in OBJECTIVES.names() if "image" in OBJECTIVES.get(n).modalities)


@pytest.mark.parametrize("name", IMAGE_OBJECTIVES)
def test_every_objective_trains_three_steps(image_folder, tmp_path, name):
    taught = {}
    if OBJECTIVES.get(name).needs_teacher:
        list(train(config_for(image_folder, tmp_path / "teacher")))
        taught["teacher"] = str(tmp_path / "teacher")
    events = list(train(config_for(image_folder, tmp_path / "run", objective=name,
                                   labels_from_folders=True, **taught)))
    steps = of_type(events, StepMetrics)
    assert [s.step for s in steps] == [1, 2, 3]
    assert all(np.isfinite(s.loss) for s in steps)
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "completed", finished
    started = of_type(events, RunStarted)[0]
    assert started.objective == name and started.num_items == 24 and started.total_steps == 3
    snapshots = of_type(events, EmbeddingSnapshot)
    assert snapshots and snapshots[-1].coords.shape == (16, 2)
    run = tmp_path / "run"
    train_config, objective_config, preprocess = load_run_config(run / "config.toml")
    assert train_config.objective == name and preprocess["image_size"] == 16
    assert isinstance(objective_config, OBJECTIVES.get(name).config_cls)
    with open(run / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3]
    assert (run / "checkpoints" / "last.safetensors").exists()
    # The last step always carries the monitor's figures; labels exist, so kNN too.
    assert np.isfinite(steps[-1].effective_rank) and np.isfinite(steps[-1].knn_accuracy)


def test_the_step_0_snapshot_follows_the_first_step_and_judges_the_starting_weights(
        image_folder, tmp_path):
    from sslstudio.core.run.judge import Monitor

    seen = []  # (step, the encoder's first parameter) at each snapshot

    class EveryStepMonitor(Monitor):
        def due(self) -> bool:
            return True

        def run(self, step, progress):
            seen.append((step, next(self.objective.encoder.parameters()).detach().clone()))
            yield from super().run(step, progress)

    every_step = LoopParts(judge=EveryStepMonitor)
    config = config_for(image_folder, tmp_path / "run", labels_from_folders=True)
    torch.manual_seed(0)
    events = list(train(config, parts=every_step))
    kinds = [(type(e).__name__, getattr(e, "step", None)) for e in events
             if isinstance(e, (StepMetrics, EmbeddingSnapshot))]
    assert kinds[:3] == [("StepMetrics", 1), ("EmbeddingSnapshot", 0), ("StepMetrics", 2)], kinds
    assert [step for step, _ in seen] == [0, 2, 3]
    assert [s.step for s in of_type(events, EmbeddingSnapshot)] == [0, 2, 3]
    # Judged on the weights as they started, and the first step's weights are back after it.
    start = encoder_state_at_start(config)
    assert torch.equal(seen[0][1], start) and not torch.equal(seen[1][1], start)

    # A one-step run: the step-0 snapshot comes before the last, which stays the run's last.
    seen.clear()
    events = list(train(config_for(image_folder, tmp_path / "one", labels_from_folders=True,
                                   batch_size=24), parts=every_step))
    assert [step for step, _ in seen] == [0, 1]
    assert of_type(events, EmbeddingSnapshot)[-1].step == 1


def test_a_minutes_budget_ends_when_the_runs_clock_says_it_is_spent(image_folder, tmp_path):
    from sslstudio.core.run.loop import Clock

    class HurriedClock(Clock):
        """Ten seconds pass each time the loop asks."""

        def elapsed(self) -> float:
            self.offset += 10.0
            return self.offset

    hurried = LoopParts(clock=HurriedClock, fit_plan_to_machine=False)
    config = config_for(image_folder, tmp_path / "run", epochs=0, minutes=1.0)
    events = list(train(config, parts=hurried))
    assert events[-1].status == "completed"
    steps = of_type(events, StepMetrics)
    assert 1 <= steps[-1].step < 6  # a real clock gives far more steps in a minute
    assert steps[-1].elapsed_s >= 60.0


def test_the_starting_weights_are_lent_for_the_snapshot_and_the_trained_ones_come_back():
    from sslstudio.core.run.loop import InitialWeights

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    initial = InitialWeights(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model(torch.randn(8, 3)).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    assert not torch.equal(trained["1.running_mean"], start["1.running_mean"])
    with initial.loaded(model):
        assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())


def encoder_state_at_start(config) -> torch.Tensor:
    """The encoder's first parameter as a run of `config` builds it (seeded by the config): the
    judge is made before the first step, from the model as built."""
    from sslstudio.core.run.judge import Monitor

    seen = []

    class RecordingMonitor(Monitor):
        def __init__(self, data, config, device, objective, *rest, **named):
            seen.append(next(objective.encoder.parameters()).detach().clone())
            super().__init__(data, config, device, objective, *rest, **named)

    list(train(dataclasses.replace(config, out=config.out + "-start"),
               parts=LoopParts(judge=RecordingMonitor)))
    return seen[0]


def _final_model(run) -> dict[str, torch.Tensor]:
    tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_cancelled_and_resumed_run_ends_with_the_same_weights(image_folder, tmp_path, name):
    base = dict(objective=name, epochs=3, batch_size=6)
    list(train(config_for(image_folder, tmp_path / "straight", **base)))

    control = RunControl()
    interrupted = config_for(image_folder, tmp_path / "interrupted", **base)
    events = []
    for event in train(interrupted, control=control):
        events.append(event)
        if isinstance(event, StepMetrics) and event.step == 5:  # mid-epoch: 4 steps per epoch
            control.cancel()
    finished = events[-1]
    assert finished.status == "cancelled" and finished.step == 5
    assert of_type(events, Checkpointed)[-1].step == 5
    resumed = list(train(interrupted, resume=True))
    assert of_type(resumed, RunStarted)[0].start_step == 5
    assert resumed[-1].status == "completed" and resumed[-1].step == 12

    straight, again = _final_model(tmp_path / "straight"), _final_model(tmp_path / "interrupted")
    assert straight.keys() == again.keys()
    for key in straight:
        assert torch.equal(straight[key], again[key]), key
    with open(tmp_path / "interrupted" / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 13))


def test_messy_folder_trains_and_reports_skipped_files(tmp_path, monkeypatch):
    from sslstudio.core.data import images as images_module

    real_open = images_module.open_image_file
    monkeypatch.setattr(images_module, "open_image_file", lambda p: (_ for _ in ()).throw(
        PermissionError(13, "denied")) if p.stem == "unreadable" else real_open(p))
    expected = messy.make_messy_folder(tmp_path / "messy")
    events = list(train(config_for(tmp_path / "messy", tmp_path / "run", batch_size=4)))
    assert events[-1].status == "completed"
    bad = {rel for rel, reason in expected.items() if reason}
    scan = of_type(events, ScanFinished)[0]
    assert scan.skipped == len(bad)
    assert any(w.kind == "data" and str(len(bad)) in w.message for w in of_type(events, RunWarning))
    with open(tmp_path / "run" / "skipped.csv") as f:
        rows = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    assert set(rows) == bad
    assert all(rows[rel].startswith(expected[rel]) for rel in bad)


def test_batch_larger_than_data_is_reduced_with_a_warning(image_folder, tmp_path):
    events = list(train(config_for(image_folder, tmp_path / "run", batch_size=1000)))
    warnings = [w for w in of_type(events, RunWarning) if w.kind == "batch_reduced"]
    assert warnings and "24" in warnings[0].message
    assert of_type(events, RunStarted)[0].batch_size == 24
    assert events[-1].status == "completed"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(image_folder, tmp_path, monkeypatch):
    cls = OBJECTIVES.get("simclr")
    real_forward = cls.forward
    calls = {"n": 0}

    def forward(self, images):
        calls["n"] += 1
        loss, extra = real_forward(self, images)
        return (loss * float("nan"), extra) if calls["n"] >= 5 else (loss, extra)

    monkeypatch.setattr(cls, "forward", forward)
    config = config_for(image_folder, tmp_path / "run", epochs=3, checkpoint_minutes=0.05)
    events = []
    # forward calls are counted from the first step
    for event in train(config, parts=NO_TIMING_PASSES):
        events.append(event)
        if isinstance(event, StepMetrics) and event.step == 3:
            time.sleep(3.1)  # the time-based checkpoint falls due right after this yield
    assert events[-1].status == "failed"
    warning = [w for w in of_type(events, RunWarning) if w.kind == "non_finite"][0]
    assert "lr" in warning.message and "temperature" in warning.message
    assert "last good checkpoint" in warning.message
    checkpoints = of_type(events, Checkpointed)
    assert checkpoints and checkpoints[-1].step == 3  # the NaN arrived at step 5
    tensors = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())


def test_out_of_memory_halves_the_batch_and_retries(image_folder, tmp_path, monkeypatch):
    cls = OBJECTIVES.get("simclr")
    real_forward = cls.forward
    state = {"raised": False}

    def forward(self, images):
        if not state["raised"]:
            state["raised"] = True
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, images)

    monkeypatch.setattr(cls, "forward", forward)
    # the first step's forward is the one that runs out
    events = list(train(config_for(image_folder, tmp_path / "run", batch_size=8),
                        parts=NO_TIMING_PASSES))
    warning = [w for w in of_type(events, RunWarning) if w.kind == "out_of_memory"][0]
    assert "halved to 4" in warning.message
    assert of_type(events, StepMetrics)[0].batch_size == 4
    assert events[-1].status == "completed"


def test_pause_blocks_the_run_until_resumed(image_folder, tmp_path):
    control = RunControl()
    events = train(config_for(image_folder, tmp_path / "run", epochs=2), control=control)
    first_step = next(e for e in events if isinstance(e, StepMetrics))
    control.pause()
    got = []
    consumer = threading.Thread(target=lambda: got.append(next(events)))
    consumer.start()
    consumer.join(timeout=1.0)
    assert consumer.is_alive() and not got  # blocked at the yield while paused
    control.resume()
    consumer.join(timeout=30)
    assert got and not consumer.is_alive()
    rest = list(events)
    assert rest[-1].status == "completed" and first_step.step == 1


def test_budget_in_minutes_stops_on_time(image_folder, tmp_path):
    started = time.monotonic()
    events = list(train(config_for(image_folder, tmp_path / "run", epochs=0, minutes=0.02)))
    assert events[-1].status == "completed"
    assert time.monotonic() - started < 20
    assert of_type(events, StepMetrics)[-1].progress == pytest.approx(1.0)


def test_lr_schedule_warms_up_then_decays_along_a_cosine():
    assert lr_factor(0.0, 0.1) == 0.0
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_collapse_is_warned_about_once(image_folder, tmp_path, monkeypatch):
    from sslstudio.core.backbones.small_cnn import SmallCNN

    # An encoder whose output ignores its input has collapsed by construction.
    monkeypatch.setattr(SmallCNN, "forward", lambda self, x: self.pool(self.stem(x)).flatten(1)[:, :1]
                        .expand(-1, 128) * 0 + self.stem[0].weight.sum())
    events = list(train(config_for(image_folder, tmp_path / "run", objective="rotation", epochs=2,
                                   warmup_fraction=0.0)))
    warnings = [w for w in of_type(events, RunWarning) if w.kind == "collapse"]
    assert len(warnings) == 1 and "collapsed" in warnings[0].message and "lr" in warnings[0].message


def test_kill_minus_nine_loses_only_the_steps_since_the_last_checkpoint(image_folder, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "sslstudio", "train", "--data", str(image_folder), "--out", str(run),
         "--objective", "simclr", "--epochs", "400", "--batch-size", "8", "--image-size", "16",
         "--set", "checkpoint_minutes=0.05", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    from sslstudio.core.run.checkpoint import read_checkpoint
    import json

    metadata = read_checkpoint(checkpoint).metadata  # verified: every tensor matches its checksum
    saved_step = json.loads(metadata["loop"])["step"]
    assert saved_step > 0
    events = []
    for event in train(TrainConfig(data=str(image_folder), out=str(run), objective="simclr",
                                   epochs=400, batch_size=8, image_size=16), resume=True):
        events.append(event)
        if isinstance(event, StepMetrics):
            break
    assert of_type(events, RunStarted)[0].start_step == saved_step
    # A kill mid-write can leave the hidden partial file, never a damaged last.safetensors.
    assert sorted(p.name for p in run.glob("checkpoints/*")) in (
        ["last.safetensors"], ["last.safetensors", "previous.safetensors"])
