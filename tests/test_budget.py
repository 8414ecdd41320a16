"""A minutes budget is honoured with a measured step, the batch and the monitor's sample are sized
to it, and a run hands back the encoder that scored best on the monitor's labels."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from sslstudio.core.run.calibration import raise_trivial_temperature
from sslstudio.core.run.checkpoint import encoder_info, encoder_state
from sslstudio.core.embed import load_encoder
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import RunFinished, RunStarted, RunWarning, StepMetrics
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.run.folder import RunFolder
from sslstudio.core.run.judge import Monitor
from sslstudio.core.run.loop import LoopParts, TrainingLoop
from sslstudio.core.run.plan import BUDGET_STEPS, check_pairing, fit_to_budget, RunPlan
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig
from test_train import config_for, of_type


def plan_of(batch=256, minutes=5.0, items=10_000, monitor_items=2000, weights="lite0.pth") -> RunPlan:
    return RunPlan("simclr", "image", "pretrained_efficientnet_lite0", "cpu", 1, items, batch,
                   items // batch, 0, minutes, weights, 0.1, monitor_items)


def test_a_slow_step_shrinks_the_batch_until_the_budget_buys_enough_steps():
    # 40 ms an item: a step of 256 takes 10 s, 30 of them in five minutes.
    plan = fit_to_budget(plan_of(), TrainConfig(), 0.04, smallest_batch=16)
    assert plan.batch_size == int(0.9 * 300 / (BUDGET_STEPS * 0.04))
    assert plan.steps_per_epoch == 10_000 // plan.batch_size
    assert any("measured" in reason and "256" in reason for reason in plan.reasons)
    # The monitor's sample is what one snapshot embeds in about 2% of the budget.
    assert 256 <= plan.monitor_items < 2000


def test_from_scratch_the_batch_is_not_traded_for_steps():
    plan = fit_to_budget(plan_of(weights=""), TrainConfig(), 0.04, smallest_batch=16)
    assert plan.batch_size == 256
    assert plan.monitor_items < 2000  # the monitor is still sized to the budget


def test_the_batch_never_shrinks_below_the_objectives_floor_or_a_chosen_batch():
    assert fit_to_budget(plan_of(), TrainConfig(), 5.0, smallest_batch=16).batch_size == 16
    chosen = fit_to_budget(plan_of(), TrainConfig(batch_size=256), 0.04, smallest_batch=16)
    assert chosen.batch_size == 256  # the user's batch is the user's
    fast = fit_to_budget(plan_of(), TrainConfig(), 1e-5, smallest_batch=16)
    assert fast.batch_size == 256 and fast.monitor_items == 2000 and not fast.reasons


def test_a_minutes_run_ends_within_its_budget_when_steps_are_slow(image_folder, tmp_path, monkeypatch):
    simclr = OBJECTIVES.get("simclr")
    real_forward = simclr.forward

    def slow_forward(self, images):
        time.sleep(1.0)  # a step far longer than the budget's slack
        return real_forward(self, images)

    monkeypatch.setattr(simclr, "forward", slow_forward)
    budget_s = 9.0
    config = config_for(image_folder, tmp_path / "run", epochs=0, minutes=budget_s / 60,
                        batch_size=8, checkpoint_minutes=10.0)
    events = list(train(config))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    steps = of_type(events, StepMetrics)
    # The old rule stopped after the step that crossed the budget, so its last step ended past
    # it; the new one stops while the next step and the finishing work still fit. (The run's
    # clock, not the wall's, so the load of the machine hardly matters.)
    assert steps[-1].elapsed_s < budget_s
    assert steps[-1].step >= 2 and steps[-1].progress == 1.0 and steps[-1].eta_s == 0.0


def test_timing_steps_leaves_the_model_and_random_state_as_they_were(image_folder, tmp_path, monkeypatch):
    real = TrainingLoop.time_per_item
    seen = {}

    def checked(self, allowance, plan_for):
        before = {k: v.clone() for k, v in self.objective.state_dict().items()}
        generator = self.generators["augment"].get_state()
        result = real(self, allowance, plan_for)
        after = self.objective.state_dict()
        seen["same"] = all(torch.equal(before[k], after[k]) for k in before)
        seen["generator"] = torch.equal(generator, self.generators["augment"].get_state())
        seen["grads"] = all(p.grad is None for p in self.objective.parameters())
        seen["seconds"] = result
        return result

    monkeypatch.setattr(TrainingLoop, "time_per_item", checked)
    config = config_for(image_folder, tmp_path / "run", epochs=0, minutes=0.05, batch_size=0)
    events = list(train(config))
    assert events[-1].status == "completed"
    assert seen == {"same": True, "generator": True, "grads": True, "seconds": seen["seconds"]}
    assert seen["seconds"] > 0


def test_the_planned_batch_is_timed_only_when_its_figure_can_change_the_plan(monkeypatch):
    import types

    from sslstudio.core.run import calibration

    timed = []
    monkeypatch.setattr(calibration, "timed_pass", lambda loop, count, measure_memory=False:
                        timed.append(count) or count * 1e-3)
    monkeypatch.setattr(calibration, "raise_trivial_temperature", lambda loop, count: None)
    loop = types.SimpleNamespace(objective=torch.nn.Linear(2, 2), generators={}, batch_size=256)
    seconds = TrainingLoop.time_per_item(loop, 60.0, lambda seconds_per_item: "the same plan")
    assert timed == [8, 32] and seconds == pytest.approx(1e-3)
    timed.clear()
    seconds = TrainingLoop.time_per_item(loop, 60.0, lambda seconds_per_item: round(seconds_per_item, 6))
    assert timed == [8, 32, 256] and seconds == pytest.approx(1e-3)
    timed.clear()
    TrainingLoop.time_per_item(loop, 0.01, lambda seconds_per_item: round(seconds_per_item, 6))
    assert timed == [8, 32]  # no room in the allowance


def scripted_judge(scores: list[float] | None = None, every_step: bool = True) -> LoopParts:
    """The loop's parts with a monitor that takes a snapshot at every step (`every_step`) and
    whose scores go through `scores` (then stay at the last), instead of measuring them."""
    calls = {"n": 0}

    class ScriptedMonitor(Monitor):
        def due(self) -> bool:
            return True if every_step else super().due()

        def score(self) -> float:
            if scores is None:
                return super().score()
            value = scores[min(calls["n"], len(scores) - 1)]
            calls["n"] += 1
            return value

    return LoopParts(judge=ScriptedMonitor)


def test_the_encoder_that_scored_best_is_the_runs_result(image_folder, tmp_path, monkeypatch):
    # step 0 (taken after step 1), step 2, then worse to the end
    judged = scripted_judge([0.5, 0.9, 0.4])
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=2, labels_from_folders=True),
                        parts=judged))
    assert events[-1].status == "completed" and events[-1].step == 6
    notes = [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    assert notes and "step 2 is kept" in notes[0].message and "better than the last step's 0.400" in notes[0].message
    best = encoder_state(RunFolder(run).best_path, fallback=False)
    last = encoder_state(RunFolder(run).checkpoint_path)
    assert any(not torch.equal(best[k], last[k]) for k in best)
    encoder, _ = load_encoder(run, torch.device("cpu"))
    assert all(torch.equal(v, best[k]) for k, v in encoder.state_dict().items())


def test_a_pretrained_encoder_that_training_did_not_help_comes_back_as_it_came(image_folder, tmp_path,
                                                                              monkeypatch):
    from sslstudio.core.backbones import build_backbone
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in build_backbone("small_cnn", 16).state_dict().items()},
              str(weights))
    judged = scripted_judge([0.8, 0.5, 0.4], every_step=False)
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=2, labels_from_folders=True,
                                   weights=str(weights)), parts=judged))
    notes = [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    assert notes and "continuing did not help" in notes[0].message
    encoder, _ = load_encoder(run, torch.device("cpu"))
    # Weights loaded from the file as they were (BatchNorm statistics kept by step 0).
    from safetensors.torch import load_file

    start = load_file(str(weights))
    state = encoder.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start if "num_batches" not in k)


def test_without_labels_a_continued_encoder_is_judged_by_the_label_free_score(image_folder, tmp_path,
                                                                             monkeypatch):
    from safetensors.torch import load_file, save_file

    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.run import judge

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in build_backbone("small_cnn", 16).state_dict().items()},
              str(weights))
    ranks = iter([9.0, 5.0, 4.0])  # the encoder as it came spreads its features widest
    real = judge.collapse_metrics

    def metrics(features, projections):
        return {**real(features, projections), "effective_rank": next(ranks, 3.0)}

    monkeypatch.setattr(judge, "collapse_metrics", metrics)
    monkeypatch.setattr(judge, "LABEL_FREE_JUDGE", {"image": "effective_rank"})
    every_step = scripted_judge()
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=2, weights=str(weights)),
                        parts=every_step))
    notes = [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    assert notes and "continuing did not help" in notes[0].message
    assert "RankMe" in notes[0].message and "without labels" in notes[0].message
    start, state = load_file(str(weights)), load_encoder(run, torch.device("cpu"))[0].state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start if "num_batches" not in k)
    # From scratch, nothing is judged without labels: the last encoder is the run's.
    ranks = iter([9.0, 5.0, 4.0])
    events = list(train(config_for(image_folder, tmp_path / "scratch", epochs=2), parts=every_step))
    assert not RunFolder(tmp_path / "scratch").best_path.exists()
    assert not [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    # Continued with no judge at all, the run says that nothing judged it.
    monkeypatch.setattr(judge, "LABEL_FREE_JUDGE", {})
    events = list(train(config_for(image_folder, tmp_path / "unjudged", epochs=2,
                                   weights=str(weights)), parts=every_step))
    notes = [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    assert notes and notes[0].message.startswith("nothing judged whether continuing helped")
    assert not RunFolder(tmp_path / "unjudged").best_path.exists()
    # Where the evidence says continuing without labels does not pay, the encoder as it came is
    # kept whatever the scores, and the run says why; the last checkpoint keeps the continued one.
    monkeypatch.setattr(judge, "LABEL_FREE_JUDGE", {"image": "as_it_came"})
    monkeypatch.setattr(judge, "AS_IT_CAME_EVIDENCE", {"image": "3 points on stamps"})
    ranks = iter([3.0, 5.0, 9.0])  # later encoders would look better by RankMe
    run = tmp_path / "as-it-came"
    events = list(train(config_for(image_folder, run, epochs=2, weights=str(weights)),
                        parts=every_step))
    notes = [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]
    assert notes and notes[0].message.startswith("without labels the encoder as it came is kept")
    assert "image encoder without labels lost 3 points on stamps" in notes[0].message
    # The plan said so before the first step; with labels to judge by it does not.
    assert "the encoder as it came is what this run hands over" in of_type(events, RunStarted)[0].plan
    labelled = list(train(config_for(image_folder, tmp_path / "labelled", epochs=1,
                                     labels_from_folders=True, weights=str(weights))))
    assert "as it came is what this run hands over" not in of_type(labelled, RunStarted)[0].plan
    state = load_encoder(run, torch.device("cpu"))[0].state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start if "num_batches" not in k)


def test_without_labels_the_last_encoder_is_the_runs(image_folder, tmp_path):
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=1)))
    assert events[-1].status == "completed"
    assert not RunFolder(run).best_path.exists()
    assert not [w for w in of_type(events, RunWarning) if w.kind == "best_encoder"]


def test_skipgram_trains_only_its_own_encoder():
    with pytest.raises(DataError, match="leave the backbone on auto"):
        check_pairing("skipgram", "text_transformer")
    with pytest.raises(DataError, match="trains only with skipgram"):
        check_pairing("mlm", "word_vectors")
    check_pairing("skipgram", "word_vectors")
    check_pairing("simcse", "text_transformer")


def test_a_text_folder_defaults_to_skipgram_and_a_pretrained_text_encoder_to_simcse(text_folder, tmp_path):
    from sslstudio.cli import default_objective_for

    assert default_objective_for(text_folder) == "skipgram"
    assert default_objective_for(text_folder, str(tmp_path / "some-model-folder")) == "simcse"


def test_a_step_that_would_hold_too_much_memory_gets_a_smaller_batch():
    # 20 MiB kept per item (an ImageNet encoder at 224 px): 256 of them would be 5 GiB.
    plan = fit_to_budget(plan_of(minutes=0.0), TrainConfig(), 1e-5, smallest_batch=16,
                         saved_bytes_per_item=20 * 2**20, memory_budget=1 << 30)
    assert plan.batch_size == 51
    assert any("MiB per item" in reason for reason in plan.reasons)
    mine = fit_to_budget(plan_of(minutes=0.0), TrainConfig(batch_size=256), 1e-5, 16,
                         saved_bytes_per_item=20 * 2**20, memory_budget=1 << 30)
    assert mine.batch_size == 256


def test_a_few_user_labels_judge_the_encoder(image_folder, tmp_path):
    from sslstudio.core.events import EmbeddingSnapshot

    files = sorted(p for p in image_folder.rglob("*.png"))
    by_class: dict[str, list] = {}
    for path in files:
        by_class.setdefault(path.parent.name, []).append(path)
    labels_csv = tmp_path / "labels.csv"
    rows = [f"{p},{name}" for name, paths in by_class.items() for p in paths[:3]]
    labels_csv.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=1, labels=str(labels_csv),
                                   monitor_items=12)))
    assert events[-1].status == "completed"
    snapshot = of_type(events, EmbeddingSnapshot)[-1]
    # Of nine labels, six are drawn into the sample of 12 first (up to half of it); a random
    # draw from 24 items would expect four and a half.
    assert 6 <= (snapshot.labels >= 0).sum() <= 9
    metrics = [e for e in events if isinstance(e, StepMetrics)]
    assert np.isfinite(metrics[-1].probe_accuracy)


def test_running_out_of_memory_while_timing_leaves_the_batch_to_the_loop(image_folder, tmp_path,
                                                                         monkeypatch):
    simclr = OBJECTIVES.get("simclr")
    real_forward = simclr.forward
    calls = {"n": 0}

    def forward(self, images):
        calls["n"] += 1
        if calls["n"] == 1:  # the first timing pass
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real_forward(self, images)

    monkeypatch.setattr(simclr, "forward", forward)
    events = list(train(config_for(image_folder, tmp_path / "run", batch_size=8)))
    assert events[-1].status == "completed"
    assert of_type(events, StepMetrics)[0].batch_size == 8


class _SizeRecordingEncoder(torch.nn.Module):
    """Features that depend on the input's side, and a record of the sides it was given."""

    def __init__(self):
        super().__init__()
        self.sides = []

    def forward(self, x):
        self.sides.append(int(x.shape[-1]))
        return torch.cat([x.mean((2, 3)), x[..., :4, :4].flatten(1)], 1) * x.shape[-1]


class _RecordingObjective(torch.nn.Module):
    can_collapse = False

    def __init__(self):
        super().__init__()
        self.encoder = _SizeRecordingEncoder()

    def head_outputs(self, features):
        return None


def test_the_monitor_judges_at_the_size_the_features_are_read(image_folder, tmp_path):
    # A pretrained encoder trained small is handed over read at its own size: that is what the
    # probe and the best-encoder rule must score, or continuing looks better than it is.
    from sslstudio.core.data import load_image_folder
    from sslstudio.core.control import run_to_end
    from sslstudio.core.modalities.image import ImagePreprocess

    data = run_to_end(load_image_folder(image_folder, 16, labels_from_folders=True))
    preprocess = ImagePreprocess(16, [0.5] * 3, [0.25] * 3, feature_size=32)
    assert preprocess.features_cost() == 4.0
    objective = _RecordingObjective()
    monitor = Monitor(data, config_for(image_folder, tmp_path / "run"), torch.device("cpu"),
                       objective, preprocess, RunFolder(tmp_path / "run"), chunk=8, items=16)
    list(monitor.run(0, 0.0))
    assert 16 in objective.encoder.sides and 32 in objective.encoder.sides
    judged = objective.encoder(preprocess.for_features().model_inputs(
        preprocess.feature_items(data, monitor.indices), torch.device("cpu")))
    from sslstudio.core.monitor import knn_accuracy

    assert monitor.fields["knn_accuracy"] == pytest.approx(
        knn_accuracy(judged, torch.from_numpy(monitor.labels)))
    # Without a feature size, one pass at the training size serves everything.
    objective.encoder.sides.clear()
    same = Monitor(data, config_for(image_folder, tmp_path / "run"), torch.device("cpu"),
                    objective, ImagePreprocess(16, [0.5] * 3, [0.25] * 3), RunFolder(tmp_path / "run"),
                    chunk=8, items=16)
    list(same.run(0, 0.0))
    assert set(objective.encoder.sides) == {16}


def test_a_folder_item_changed_since_the_scan_is_read_from_the_training_copy(image_folder):
    from sslstudio.core.data import load_image_folder
    from sslstudio.core.control import run_to_end
    from sslstudio.core.modalities.image import ImagePreprocess

    data = run_to_end(load_image_folder(image_folder, 16))
    data.paths = [image_folder / "gone.png"] + list(data.paths)[1:]  # as if deleted after the scan
    items = ImagePreprocess(16, [0.5] * 3, [0.25] * 3, feature_size=24).feature_items(data, np.array([0, 1]))
    assert tuple(items.shape) == (2, 24, 24, 3) and items.dtype == torch.uint8


def test_the_monitor_sample_shrinks_by_what_judging_at_the_feature_size_costs():
    plain = fit_to_budget(plan_of(), TrainConfig(), 0.04, smallest_batch=16)
    dearer = fit_to_budget(plan_of(), TrainConfig(), 0.04, smallest_batch=16, features_cost=4.0)
    assert dearer.monitor_items < plain.monitor_items


def test_a_later_encoder_must_beat_the_kept_one_by_more_than_the_judges_noise(image_folder, tmp_path,
                                                                               monkeypatch):
    # 24 labelled items can not tell 0.50 from 0.55: the encoder as it came stays.
    run = tmp_path / "run"
    events = list(train(config_for(image_folder, run, epochs=2, labels_from_folders=True,
                                   monitor_items=24), parts=scripted_judge([0.50, 0.55, 0.56])))
    assert events[-1].status == "completed"
    assert encoder_info(RunFolder(run).best_path)["step"] == 0
    # Far beyond the noise, a later encoder is kept.
    other = tmp_path / "other"
    list(train(config_for(image_folder, other, epochs=2, labels_from_folders=True, monitor_items=24),
               parts=scripted_judge([0.50, 0.95, 0.40])))
    assert encoder_info(RunFolder(other).best_path)["step"] > 0


def test_a_contrastive_loss_at_zero_gets_a_temperature_that_informs():
    """Views a pretrained encoder already tells apart (the same vector twice, the others
    orthogonal): at SimCSE's 0.05 the loss is ~1e-7, and the plan raises the temperature until
    the same batch's loss says something (issue 27)."""
    import dataclasses
    import types

    from sslstudio.core.objectives.simcse import SimCSEConfig, simcse_loss
    from sslstudio.core.run.judge import informative_temperature
    from sslstudio.core.run.plan import RunPlan

    z = torch.eye(8, 16)
    config = SimCSEConfig()
    assert float(simcse_loss(z, z, config.temperature)) < 1e-6
    floor = 0.1 * math.log(8)
    chosen, loss = informative_temperature(lambda t: float(simcse_loss(z, z, t)), config.temperature,
                                           floor)
    assert chosen == 0.5 and loss >= floor > float(simcse_loss(z, z, 0.2))

    class Model:
        def __call__(self, inputs):
            return simcse_loss(inputs, inputs, config.temperature), {}

    plan = RunPlan("simcse", "text", "pretrained_bert", "cpu", 1, 8, 8, 1, 0, 5.0, "w", 0.1)
    loop = types.SimpleNamespace(
        objective_config=config, calibration_loss=float(simcse_loss(z, z, 0.05)),
        forward=lambda inputs, items: Model()(inputs), first_items=np.arange,
        preprocess=types.SimpleNamespace(training_inputs=lambda batch, device: batch),
        data=types.SimpleNamespace(batch=lambda indices: z[indices]),
        setup=types.SimpleNamespace(device=torch.device("cpu")), plan=plan)
    raise_trivial_temperature(loop, 8)
    assert config.temperature == 0.5
    assert "temperature 0.5: at 0.05 a measured batch's loss was" in loop.plan.reasons[-1]
    # A temperature the user chose stays, and so does a loss that informs.
    for chosen_config, measured in ((SimCSEConfig(temperature=0.07), 1e-7), (SimCSEConfig(), 0.5)):
        loop.objective_config, loop.calibration_loss, loop.plan = chosen_config, measured, plan
        before = dataclasses.asdict(chosen_config)
        raise_trivial_temperature(loop, 8)
        assert dataclasses.asdict(chosen_config) == before and loop.plan is plan


def test_the_resolution_is_the_largest_whose_steps_reach_the_wanted_count(monkeypatch):
    from sslstudio.core.modalities import image as preprocess

    monkeypatch.setattr(preprocess, "STEPS_WANTED", 800)
    cost = lambda size: 1e-3 * (size / 32) ** 2  # noqa: E731 - seconds per item grow with pixels
    # 64 px: 0.9 * 300 / (128 * 4e-3) = 527 steps; 48 px: 937; 32 px: 2,109.
    size, reason = preprocess.affordable_image_size([64, 48, 32], cost, 300.0, 128)
    assert size == 48
    assert reason.startswith("image size 48: at 64 px the budget buys about 527 steps of 128")
    assert "at 48 px about 937" in reason
    assert preprocess.affordable_image_size([64, 48, 32], cost, 3000.0, 128) == (64, "")
    assert preprocess.affordable_image_size([64, 48, 32], cost, 10.0, 128)[0] == 32  # the smallest
    # An objective's own target (distillation's) rules where it names one.
    size, reason = preprocess.affordable_image_size([64, 48, 32], cost, 300.0, 128, 1000)
    assert size == 32 and reason.endswith("below 1000 steps on the dev sets")


def test_a_run_from_scratch_trades_pixels_for_steps_and_says_so(tmp_path, monkeypatch):
    from sslstudio.core.modalities import image as preprocess
    from sslstudio.core.events import RunStarted
    from sslstudio.core.run.config import load_run_config
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "images", size=48)
    monkeypatch.setattr(preprocess, "STEPS_WANTED", 10**9)  # no resolution buys enough
    config = config_for(folder, tmp_path / "run", epochs=0, minutes=0.05, batch_size=0, image_size=0)
    events = list(train(config))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert "image size 32" in started.plan and "image size 32: at 48 px the budget buys about" in started.plan
    assert load_run_config(tmp_path / "run" / "config.toml")[2]["image_size"] == 32
    monkeypatch.setattr(preprocess, "STEPS_WANTED", 0)  # resolution by the images alone
    events = list(train(config_for(folder, tmp_path / "run2", epochs=0, minutes=0.05, batch_size=0,
                                   image_size=0)))
    assert "image size 48" in next(e for e in events if isinstance(e, RunStarted)).plan
    # The objective's own target is asked before the modality's.
    from sslstudio.core.data.scan import list_folder

    listing = list_folder(folder, preprocess.IMAGE_EXTENSIONS, False)
    config = config_for(folder, tmp_path / "run3", epochs=0, minutes=0.05, batch_size=0,
                        image_size=0)
    wanting = type("Wanting", (), {"steps_wanted": 10**9, "views": 1})
    assert preprocess.chosen_image_size(config, folder, torch.device("cpu"), None, listing,
                                        "small_cnn", wanting)[0] == 32
    assert preprocess.chosen_image_size(config, folder, torch.device("cpu"), None, listing,
                                        "small_cnn", OBJECTIVES.get("simclr"))[0] == 48


def test_an_objective_names_its_own_budget_on_a_cpu_for_a_modality():
    from sslstudio.core.run.config import default_minutes

    assert default_minutes("cpu", "distill", "image") == 10.0
    assert default_minutes("cpu", "distill", "text") == 5.0
    assert default_minutes("cpu", "simclr", "image") == 5.0
    assert default_minutes("cuda", "distill", "image") == 30.0
    assert default_minutes("cpu", "no such objective", "image") == 5.0
