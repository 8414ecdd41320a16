"""Few-shot adaptation: LoRA's algebra, the probe, the estimate, and the jobs end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from sslstudio.core.adapt.base import AdaptTask
from sslstudio.core.adapt.estimate import make_scheme, summarize, wilson_interval
from sslstudio.core.adapt.job import (
    AdaptRequest,
    adapt,
    compare,
    estimate,
    load_adapted,
    method_config,
    predict_folder,
)
from sslstudio.core.adapt.lora import LoRAConv2d, LoRALinear, inject_lora, merge_lora
from sslstudio.core.adapt.selection import (
    kmeans,
    least_confident,
    suggest_k,
    suggest_to_label,
)
from sslstudio.core.backbones import build_backbone
from sslstudio.core.config import ConfigError
from sslstudio.core.control import RunControl
from sslstudio.core.logistic import fit_logistic
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig


@pytest.mark.parametrize("backbone", ["small_cnn", "vit_tiny"])
def test_lora_starts_as_the_identity_and_merges_to_the_same_outputs(backbone):
    torch.manual_seed(0)
    encoder = build_backbone(backbone, 32).eval()
    x = torch.randn(4, 3, 32, 32)
    before = encoder(x)
    wrapped = inject_lora(encoder, rank=4, alpha=8.0, dropout=0.0, targets=["conv", "linear"])
    assert wrapped and all(isinstance(encoder.get_submodule(n), (LoRAConv2d, LoRALinear)) for n in wrapped)
    assert torch.equal(encoder(x), before)  # B = 0: exactly the pretrained model
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)  # base weights frozen
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (LoRAConv2d, LoRALinear)):
                module.lora_B.weight.normal_(0, 0.05)
    adapted = encoder(x)
    assert not torch.allclose(adapted, before, atol=1e-4)
    merge_lora(encoder)
    assert not any(isinstance(m, (LoRAConv2d, LoRALinear)) for m in encoder.modules())
    torch.testing.assert_close(encoder(x), adapted, atol=2e-5, rtol=1e-4)


def test_lora_conv_matches_its_formula_with_stride_and_padding():
    torch.manual_seed(1)
    base = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    layer = LoRAConv2d(base, rank=2, alpha=6.0, dropout=0.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(2, 3, 9, 9)
    delta = torch.einsum("or,rikl->oikl", layer.lora_B.weight[:, :, 0, 0], layer.lora_A.weight) * 3.0
    reference = nn.functional.conv2d(x, base.weight + delta, base.bias, stride=2, padding=1)
    torch.testing.assert_close(layer(x), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", [96, 97])
def test_lora_on_a_tensorflow_same_padded_conv_lines_up_and_merges(side):
    """timm's EfficientNet-Lite pads 'same' in its forward, unevenly at stride 2: the update
    must see the same windows (a plain padded A gave 112 against 111 columns at 96 px)."""
    from timm.layers import Conv2dSame

    torch.manual_seed(2)
    base = Conv2dSame(3, 6, 3, stride=2, bias=True)
    layer = LoRAConv2d(base, rank=2, alpha=4.0, dropout=0.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(2, 3, side, side)
    out = layer(x)
    assert out.shape == base(x).shape
    merged = layer.merged()
    torch.testing.assert_close(merged(x), out, atol=1e-5, rtol=1e-5)


def test_logistic_regression_reaches_the_optimum_of_its_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    weight, bias = fit_logistic(x, y, 3, regularization=2.0)
    # Gradient of mean cross-entropy + reg ||W||^2 / (2n), written out with numpy: zero at the optimum.
    logits = x @ weight.T + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(40), y] -= 1
    grad_w = p.T @ x / 40 + 2.0 * weight / 40
    grad_b = p.mean(0)
    assert np.abs(grad_w).max() < 1e-5 and np.abs(grad_b).max() < 1e-5


def toy_task(features: np.ndarray, targets: np.ndarray, names) -> AdaptTask:
    encoder = build_backbone("small_cnn", 16)
    return AdaptTask(None, targets, tuple(names), features.astype(np.float32), "small_cnn",
                     {"image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}, encoder.state_dict(),
                     torch.device("cpu"))


def test_probe_on_separable_toy_features_reaches_100_percent():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 8))
    targets = np.repeat(np.arange(3), 30)
    features = centres[targets] + rng.normal(0, 0.5, (90, 8))
    labelled = np.concatenate([np.flatnonzero(targets == c)[:6] for c in range(3)])
    partial = np.full(90, -1)
    partial[labelled] = targets[labelled]
    task = toy_task(features, partial, ["a", "b", "c"])
    scheme = make_scheme(labelled, partial, repeats=3)
    assert scheme.description.startswith("stratified 5-fold x 3 repeats")
    job = estimate(task, "linear", method_config("linear", {}), scheme, RunControl())
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as stop:
        result = stop.value
    assert result.accuracy == 1.0 and result.balanced_accuracy == 1.0 and result.epochs == 0
    assert result.confusion.trace() == pytest.approx(18) and result.support.tolist() == [6, 6, 6]
    assert result.ci_low < 1.0  # 18 labels cannot prove perfection


def test_folds_cover_every_label_once_and_keep_every_class_in_training():
    targets = np.repeat(np.arange(3), 10)
    labelled = np.arange(30)
    scheme = make_scheme(labelled, targets, repeats=2, seed=3)
    for folds in scheme.repeats:
        held_out = np.sort(np.concatenate([val for _, val in folds]))
        assert held_out.tolist() == labelled.tolist()
        for fit_items, val in folds:
            assert not set(fit_items) & set(val)
            assert np.bincount(targets[val], minlength=3).tolist() == [2, 2, 2]  # stratified
    # Two labels a class: 2-fold, so each fold trains on one of every class (leave-one-out would
    # train on one of the held-out class against two of the others, and the prior wins).
    pairs = np.repeat(np.arange(3), 2)
    small = make_scheme(np.arange(6), pairs, repeats=4, seed=1)
    assert small.description == "stratified 2-fold x 4 repeats over 6 labels" and small.fits == 8
    for folds in small.repeats:
        for fit_items, val in folds:
            assert np.bincount(pairs[fit_items], minlength=3).tolist() == [1, 1, 1]
    # A class with one label trains in every fold and is not scored.
    lone = np.array([0, 0, 0, 1, 1, 1, 2])
    scheme = make_scheme(np.arange(7), lone, repeats=1, class_names=("a", "b", "c"))
    assert scheme.description.endswith("1 class with a single label (c) not scored")
    for fit_items, val in scheme.repeats[0]:
        assert 6 in fit_items and 6 not in val
    # One label in every class: nothing can be scored, and the scheme says what to do.
    none = make_scheme(np.arange(3), np.arange(3), repeats=3)
    assert none.fits == 0 and none.description.startswith("no estimate") and "two or more" in none.description
    estimate = summarize("linear", none, np.arange(3), ("a", "b", "c"), [])
    assert estimate.num_labels == 0 and np.isnan(estimate.accuracy) and not estimate.estimated


def test_wilson_interval_matches_published_values():
    low, high = wilson_interval(8, 10)  # Newcombe (1998), table I: 0.490-0.943
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_groups_and_suggestions():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (4, 6))
    truth = np.repeat(np.arange(4), 50)
    features = centres[truth] + rng.normal(0, 0.3, (200, 6))
    clusters, _ = kmeans(features, 4)
    # Every true group is one cluster.
    assert all(len(set(clusters[truth == g])) == 1 for g in range(4))
    assert suggest_k(features, range(2, 8)) == 4
    labelled = np.flatnonzero(truth == 0)[:2]
    picks = suggest_to_label(features, labelled, 3)
    assert len(picks) == 3 and not set(picks) & set(labelled)
    assert sorted(truth[picks].tolist()) == [1, 2, 3]  # one typical item of each unlabelled group
    margin = np.linspace(0, 1, 200)
    assert least_confident(margin, [0, 1], 3).tolist() == [2, 3, 4]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("adapt")
    folder = make_image_folder(root / "images", classes=3, per_class=10, size=20)
    run = root / "run"
    config = TrainConfig(data=str(folder), out=str(run), epochs=2, batch_size=10, image_size=16,
                         monitor_items=16)
    list(train(config))
    return folder, run


def folder_labels(folder, per_class):
    labels = {}
    for class_dir in sorted(folder.iterdir()):
        for path in sorted(class_dir.iterdir())[:per_class]:
            labels[path.relative_to(folder).as_posix()] = class_dir.name
    return labels


@pytest.mark.parametrize("method", ["linear", "finetune", "lora", "adapter", "setfit"])
def test_adapt_estimates_saves_and_predicts_like_the_saved_model(pretrained_run, tmp_path, method):
    folder, run = pretrained_run
    out = tmp_path / "adapted"
    knobs = {"linear": {}, "setfit": {"iterations": 2, "repeats": 1}}.get(method, {"epochs": 3, "repeats": 1})
    request = AdaptRequest(run, folder, folder_labels(folder, 5), method, knobs, out_dir=out)
    events = list(adapt(request))
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("AdaptStarted") < kinds.index("AdaptEstimate") < kinds.index("AdaptPredictions")
    finished = events[-1]
    assert finished.status == "completed" and finished.path == str(out)
    estimate_event = next(e for e in events if type(e).__name__ == "AdaptEstimate")
    assert 0 <= estimate_event.ci_low <= estimate_event.accuracy <= estimate_event.ci_high <= 1
    assert estimate_event.num_labels == 15
    # Only SetFit's estimate carries a caution (measured running opposite to the truth), saved too.
    assert bool(estimate_event.caution) == (method == "setfit")
    assert json.loads((out / "estimate.json").read_text())["caution"] == estimate_event.caution
    if method not in ("linear", "setfit"):
        # No epoch is chosen on the folds (that flattered the estimate): the folds and the final
        # fit train the whole schedule, so the estimate measures what is saved.
        final = [e for e in events if type(e).__name__ == "AdaptProgress" and e.phase == "final"]
        assert estimate_event.epochs == 3 and [e.done for e in final] == [1, 2, 3]
        assert load_adapted(out, torch.device("cpu")).info["adapt"]["epochs"] == 3
    started = events[kinds.index("AdaptStarted")]
    if method in ("lora", "adapter"):
        assert 0 < started.trainable_parameters < started.total_parameters * 0.5
        assert (out / f"{method}.safetensors").exists()
    for name in ("adapted.toml", "model.safetensors", "estimate.json", "labels.csv", "predictions.csv"):
        assert (out / name).exists(), name
    # The saved model (LoRA merged) reproduces the job's predictions for every item.
    predictions = next(e for e in events if type(e).__name__ == "AdaptPredictions")
    csv_out = tmp_path / "pred.csv"
    list(predict_folder(out, folder, csv_out, "cpu"))
    with open(csv_out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    names = load_adapted(out, torch.device("cpu")).class_names
    assert [r["label"] for r in rows] == [names[p] for p in predictions.predicted]
    confidences = np.array([float(r["confidence"]) for r in rows])
    np.testing.assert_allclose(confidences, predictions.confidence, atol=1e-3)


def test_a_method_that_does_not_fit_the_runs_encoder_says_which_do(pretrained_run):
    folder, run = pretrained_run
    with pytest.raises(ConfigError, match="prefix does not apply to small_cnn.*attention.*"
                                          "methods that do: adapter, finetune, linear, lora, setfit$"):
        list(adapt(AdaptRequest(run, folder, folder_labels(folder, 5), "prefix", {"epochs": 1})))


def test_compare_runs_methods_on_the_same_folds(pretrained_run):
    folder, run = pretrained_run
    events = list(compare(AdaptRequest(run, folder, folder_labels(folder, 5)), ["linear", "lora"],
                          {"lora": {"epochs": 2}}))
    results = [e for e in events if type(e).__name__ == "AdaptEstimate"]
    assert [r.method for r in results] == ["linear", "lora"]
    assert results[0].scheme == results[1].scheme
    assert events[-1].status == "completed"


def test_cancelled_adapt_leaves_nothing_behind(pretrained_run, tmp_path):
    folder, run = pretrained_run
    control = RunControl()
    out = tmp_path / "adapted"
    events = []
    for event in adapt(AdaptRequest(run, folder, folder_labels(folder, 5), "finetune",
                                    {"epochs": 3, "repeats": 1}, out_dir=out), control):
        events.append(event)
        if type(event).__name__ == "AdaptProgress" and event.phase == "estimate":
            control.cancel()
    assert events[-1].status == "cancelled"
    assert not out.exists() and not list(tmp_path.glob("adapted*"))


def test_labels_of_one_class_only_fail_with_advice(pretrained_run):
    folder, run = pretrained_run
    labels = {k: v for k, v in folder_labels(folder, 3).items() if v == "class_0"}
    from sslstudio.core.data.scan import DataError

    with pytest.raises(DataError, match="at least two classes"):
        list(adapt(AdaptRequest(run, folder, labels)))


def test_cli_adapt_and_predict(pretrained_run, tmp_path, capsys):
    from sslstudio.cli import main

    folder, run = pretrained_run
    labels_csv = tmp_path / "labels.csv"
    rows = ["path,label"] + [f"{k},{v}" for k, v in folder_labels(folder, 4).items()]
    labels_csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "adapted"
    assert main(["adapt", str(run), "--data", str(folder), "--labels", str(labels_csv),
                 "--method", "linear", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "estimated accuracy" in printed and "stratified 4-fold x 10 repeats over 12 labels" in printed
    assert main(["predict", str(out), "--data", str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "path,label,confidence" and len(lines) == 31
    assert lines[1].startswith(str(folder.resolve()))
    assert main(["adapt", str(run), "--data", str(folder), "--labels", str(labels_csv),
                 "--method", "lora", "--set", "rank=0"]) == 2
    assert "rank=0 is out of range" in capsys.readouterr().err


def test_setfit_pairs_one_positive_and_one_negative_per_item_and_iteration():
    from sslstudio.core.adapt.setfit import setfit_pairs

    targets = np.array([0, 0, 0, 1, 1, 2])  # class 2 has one label: its positive is itself
    first, second, same = setfit_pairs(targets, 4, np.random.default_rng(0))
    assert len(first) == len(second) == len(same) == 2 * 4 * len(targets)
    assert np.bincount(first).tolist() == [8] * len(targets)  # every item anchors 4 + 4 pairs
    positive = same == 1
    assert positive.sum() == (~positive).sum()
    assert (targets[first[positive]] == targets[second[positive]]).all()
    assert (targets[first[~positive]] != targets[second[~positive]]).all()
    # An item with classmates never pairs with itself; the lone one does.
    lone = first[positive] == 5
    assert (second[positive][lone] == 5).all()
    assert (first[positive][~lone] != second[positive][~lone]).all()
    # Positives are drawn among all classmates, not always the same one.
    assert len(set(second[positive & (first == 0)].tolist())) == 2


def test_one_label_a_class_trains_a_classifier_and_says_there_is_no_estimate(pretrained_run, tmp_path):
    from sslstudio.core.describe import describe

    folder, run = pretrained_run
    events = list(adapt(AdaptRequest(run, folder, folder_labels(folder, 1), "linear", out_dir=tmp_path / "one")))
    estimate_event = next(e for e in events if type(e).__name__ == "AdaptEstimate")
    assert not estimate_event.estimated and np.isnan(estimate_event.accuracy)
    assert describe(estimate_event).text.startswith("linear: no estimate: every class has a single label")
    assert events[-1].status == "completed" and "no estimate" in events[-1].message
    assert np.isnan(load_adapted(tmp_path / "one", torch.device("cpu")).info["estimate"]["accuracy"])


def test_setfit_with_one_label_a_class_skips_the_pair_stage_and_is_the_linear_probe(pretrained_run, tmp_path):
    """No pair of one class exists: tuning on self-pairs and negatives measured worse than no
    tuning (bench/ladder.py), so the head fits the untuned features as the probe does."""
    folder, run = pretrained_run
    labels = folder_labels(folder, 1)
    probabilities = {}
    for method in ("linear", "setfit"):
        events = list(adapt(AdaptRequest(run, folder, labels, method, out_dir=tmp_path / method)))
        assert events[-1].status == "completed"
        fits = [e for e in events if type(e).__name__ == "AdaptProgress" and e.phase == "final"]
        assert [(e.done, e.total) for e in fits] == [(1, 1)]  # one step: no pair training
        probabilities[method] = next(e for e in events if type(e).__name__ == "AdaptPredictions")
    assert list(probabilities["setfit"].items) == list(probabilities["linear"].items)
    np.testing.assert_allclose(probabilities["setfit"].confidence, probabilities["linear"].confidence, atol=1e-4)
    assert (probabilities["setfit"].predicted == probabilities["linear"].predicted).all()
