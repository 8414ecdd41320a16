"""Text folders end to end: tokenizer, encoder, the three text objectives, adaptation and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sslstudio.core.backbones.text_transformer import TextShape, TextTransformer
from sslstudio.core.events import RunFinished, RunStarted, StepMetrics
from sslstudio.core.objectives.infill import span_mask
from sslstudio.core.objectives.masking import corrupt, masked_token_loss
from sslstudio.core.objectives.mlm import choose_positions
from sslstudio.core.objectives.simcse import simcse_loss
from sslstudio.core.tokenizer import TextVocab, configure, load_tokenizer, train_tokenizer
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig, load_run_config
from tests import references

VOCAB = TextVocab(size=200, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)


def sentences(rows=6, length=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 200, (rows, length), generator=generator)
    ids[:, 0], ids[:, -1] = VOCAB.cls_id, VOCAB.sep_id
    ids[1, 12:] = VOCAB.pad_id
    ids[1, 11] = VOCAB.sep_id
    return ids


def test_masked_token_loss_matches_reference():
    ids = sentences()
    chosen = choose_positions(ids, VOCAB, 0.3, torch.Generator().manual_seed(1))
    logits = torch.randn(*ids.shape, VOCAB.size)
    loss, metrics = masked_token_loss(logits, ids, chosen)
    assert float(loss) == pytest.approx(references.masked_cross_entropy(logits, ids, chosen), rel=1e-5)
    assert 0.0 <= float(metrics["masked_accuracy"]) <= 1.0
    assert float(metrics["perplexity"]) == pytest.approx(float(torch.exp(loss)), rel=1e-6)


def test_mlm_masks_only_real_tokens_and_follows_80_10_10():
    ids = sentences(rows=64, length=64, seed=2)
    chosen = choose_positions(ids, VOCAB, 0.15, torch.Generator().manual_seed(3))
    special = torch.isin(ids, torch.tensor(VOCAB.special_ids))
    assert not (chosen & special).any() and chosen.any(1).all()
    assert abs(float(chosen[~special].float().mean()) - 0.15) < 0.02
    corrupted = corrupt(ids, chosen, VOCAB, torch.Generator().manual_seed(4))
    picked = corrupted[chosen]
    masked = float((picked == VOCAB.mask_id).float().mean())
    kept = float((picked == ids[chosen]).float().mean())
    assert abs(masked - 0.8) < 0.05 and abs(kept - 0.1) < 0.04  # the rest is random tokens
    assert torch.equal(corrupted[~chosen], ids[~chosen])


def test_infill_hides_whole_spans_covering_the_ratio():
    ids = sentences(rows=32, length=100, seed=5)
    chosen = span_mask(ids, VOCAB, 0.3, 4.0, torch.Generator().manual_seed(6))
    special = torch.isin(ids, torch.tensor(VOCAB.special_ids))
    assert not (chosen & special).any()
    real = (~special).sum(1).float()
    ratio = chosen.sum(1).float() / real
    assert ((ratio - 0.3).abs() <= 1.0 / real + 1e-6).all()  # the budget, to the nearest token
    # Spans, not scattered tokens: the number of runs is well under the number of hidden tokens.
    runs = (chosen[:, 1:] & ~chosen[:, :-1]).sum() + chosen[:, 0].sum()
    assert int(runs) < 0.5 * int(chosen.sum())


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_simcse_loss_matches_reference(tau):
    generator = torch.Generator().manual_seed(7)
    h1, h2 = torch.randn(6, 16, generator=generator), torch.randn(6, 16, generator=generator)
    assert float(simcse_loss(h1, h2, tau)) == pytest.approx(references.simcse(h1, h2, tau), rel=1e-5)


def test_simcse_loss_with_a_queue_of_past_views_matches_reference():
    generator = torch.Generator().manual_seed(8)
    h1, h2 = torch.randn(4, 16, generator=generator), torch.randn(4, 16, generator=generator)
    queue = torch.nn.functional.normalize(torch.randn(5, 16, generator=generator), dim=1)
    assert float(simcse_loss(h1, h2, 0.1, queue)) == pytest.approx(
        references.simcse(h1, h2, 0.1, queue), rel=1e-5)
    assert float(simcse_loss(h1, h2, 0.1, queue)) > float(simcse_loss(h1, h2, 0.1))


def test_simcse_queue_fills_from_training_steps_only_and_wraps():
    from sslstudio.core.objectives.simcse import SimCSE, SimCSEConfig

    encoder = TextTransformer(TextShape(vocab_size=200, max_length=24, layers=1, width=16, heads=2))
    objective = SimCSE(encoder, SimCSEConfig(queue_size=10), None)
    ids = sentences(rows=4, length=24)
    objective.train()
    objective(ids)[0].backward()
    assert int(objective.queue_filled) == 4
    with torch.no_grad():
        objective(ids)  # a probe of the loss, not a step: no negatives added
    objective.eval()
    objective(ids)
    assert int(objective.queue_filled) == 4
    objective.train()
    for _ in range(2):
        objective(ids)[0].backward()
    assert int(objective.queue_filled) == 10 and int(objective.queue_pointer) == 2
    assert torch.allclose(objective.queue.norm(dim=1), torch.ones(10))
    # Kept with the checkpoint, so a resumed run has the same negatives.
    assert {"queue", "queue_filled", "queue_pointer"} <= set(objective.state_dict())


def test_text_encoder_ignores_padding_and_dropout_gives_two_views():
    encoder = TextTransformer(TextShape(vocab_size=200, max_length=24, layers=2, width=32, heads=2))
    ids = sentences(rows=2, length=24)
    longer = ids.clone()
    longer[1, 12:] = 0  # the same text with more padding after it
    encoder.eval()
    short = ids[:, :12].clone()
    short_padded = torch.zeros_like(ids)
    short_padded[:, :12] = short
    with torch.no_grad():
        a = encoder(short_padded)
        b = encoder(torch.nn.functional.pad(short, (0, 12)))
    torch.testing.assert_close(a, b)
    encoder.train()
    assert not torch.allclose(encoder(ids), encoder(ids))  # SimCSE's positive pair


def test_tokenizer_trains_on_the_folder_and_pads_to_max_length():
    texts = ["the film was great", "a dull boring film", "great acting, great story"] * 5
    tokenizer = configure(train_tokenizer(texts, "wordpiece", 200), 12)
    encoding = tokenizer.encode("The film was GREAT")
    assert len(encoding.ids) == 12 and encoding.ids[0] == tokenizer.token_to_id("[CLS]")
    assert encoding.ids[-1] == 0  # padded with [PAD]
    bpe = configure(train_tokenizer(texts, "bpe", 300), 12)
    assert bpe.token_to_id("[PAD]") == 0 and len(bpe.encode("Ünïcode never seen").ids) == 12


@pytest.mark.parametrize("name", ["mlm", "infill", "simcse", "nsp"])
def test_every_text_objective_trains_three_steps(text_folder, tmp_path, name):
    run = tmp_path / "run"
    config = TrainConfig(data=str(text_folder), out=str(run), objective=name, epochs=1, batch_size=8,
                         labels_from_folders=True, vocab_size=600, text_layers=1, text_width=32,
                         monitor_items=16, log_every_steps=1)
    events = list(train(config))
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert [s.step for s in steps] == [1, 2, 3] and all(np.isfinite(s.loss) for s in steps)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.backbone == "text_transformer" and started.num_items == 24
    if name != "simcse":
        assert "masked_accuracy" in steps[-1].extra and steps[-1].extra["perplexity"] >= 1.0
    assert np.isfinite(steps[-1].knn_accuracy)
    train_config, _, preprocess = load_run_config(run / "config.toml")
    assert preprocess["modality"] == "text" and preprocess["max_length"] >= 16
    tokenizer = load_tokenizer(run / "tokenizer.json")
    assert tokenizer.get_vocab_size() <= 600 and tokenizer.token_to_id("[MASK]") is not None


def test_text_run_resumes_to_the_same_weights(text_folder, tmp_path):
    from safetensors.torch import load_file

    from sslstudio.core.control import RunControl

    def config(out):
        return TrainConfig(data=str(text_folder), out=str(out), objective="mlm", epochs=2,
                           batch_size=8, vocab_size=600, text_layers=1, text_width=32,
                           monitor_items=16, log_every_steps=1)

    list(train(config(tmp_path / "straight")))
    # `tokenizers` breaks frequency ties differently from run to run, so both runs read the
    # text through one tokenizer; a run keeps its own tokenizer.json when it resumes.
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "tokenizer.json").write_text((tmp_path / "straight" / "tokenizer.json").read_text())
    control = RunControl()
    for event in train(config(tmp_path / "stopped"), control=control):
        if isinstance(event, StepMetrics) and event.step == 2:
            control.cancel()
    list(train(config(tmp_path / "stopped"), resume=True))

    def weights(run):
        tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
        return {k: v for k, v in tensors.items() if k.startswith("model.")}

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_image_objective_on_a_text_folder_says_what_to_choose(text_folder, tmp_path):
    from sslstudio.core.data.scan import DataError

    with pytest.raises(DataError, match="holds texts, and simclr trains on images; choose distill, infill, mlm, nsp, simcse"):
        list(train(TrainConfig(data=str(text_folder), out=str(tmp_path / "r"), objective="simclr")))


def test_text_adapt_lora_targets_attention_and_feed_forward(text_folder, tmp_path):
    from sslstudio.core.adapt.job import AdaptRequest, adapt, predict_folder

    run = tmp_path / "run"
    list(train(TrainConfig(data=str(text_folder), out=str(run), objective="simcse", epochs=2,
                           batch_size=8, vocab_size=600, text_layers=1, text_width=32, monitor_items=16)))
    labels = {f"{c}/{i:03d}.txt": c for c in ("good", "bad") for i in range(5)}
    results = {}
    for method in ("linear", "finetune", "lora"):
        events = list(adapt(AdaptRequest(run, text_folder, labels, method,
                                         {} if method == "linear" else {"epochs": 2, "repeats": 1},
                                         out_dir=tmp_path / method)))
        results[method] = {type(e).__name__: e for e in events}
        assert results[method]["AdaptFinished"].status == "completed"
        assert (tmp_path / method / "tokenizer.json").exists()
    started = results["lora"]["AdaptStarted"]
    assert 0 < started.trainable_parameters < started.total_parameters
    import safetensors.torch

    adapter = safetensors.torch.load_file(str(tmp_path / "lora" / "lora.safetensors"))
    wrapped = {k.rsplit(".lora_", 1)[0] for k in adapter}
    assert any(k.endswith("attention.query") for k in wrapped)
    assert any("feed_forward" in k for k in wrapped)
    out = tmp_path / "pred.csv"
    list(predict_folder(tmp_path / "lora", text_folder, out, "cpu"))
    rows = out.read_text().splitlines()
    assert rows[0] == "path,label,confidence" and len(rows) == 25
    summary = json.loads((tmp_path / "linear" / "estimate.json").read_text())
    assert summary["num_labels"] == 10


def test_text_classifier_export_and_the_readme_text_script(text_folder, tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    from sslstudio.core.adapt.job import AdaptRequest, adapt, load_adapted
    from sslstudio.core.export import FLOAT_MAX_PROBABILITY_DIFF, ExportRequest, export_model

    run = tmp_path / "run"
    list(train(TrainConfig(data=str(text_folder), out=str(run), objective="simcse", epochs=2,
                           batch_size=8, vocab_size=600, text_layers=1, text_width=32, monitor_items=16)))
    labels = {f"{c}/{i:03d}.txt": c for c in ("good", "bad") for i in range(5)}
    list(adapt(AdaptRequest(run, text_folder, labels, "lora", {"epochs": 2, "repeats": 1},
                            out_dir=tmp_path / "lora")))
    out = tmp_path / "export" / "model.onnx"
    events = list(export_model(ExportRequest(tmp_path / "lora", out, latency_repeats=2)))
    check = next(e for e in events if type(e).__name__ == "ExportCheck")
    assert check.passed and check.items == 24 and check.labelled_items == 10
    assert events[-1].status == "completed"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.onnx", "model.tokenizer.json"]
    info = json.loads((out.parent / "model.json").read_text())
    assert info["input"]["name"] == "input_ids" and info["files"]["tokenizer"] == "model.tokenizer.json"

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    script = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                  if b.startswith("# classify_text.py"))
    (tmp_path / "classify_text.py").write_text(script)
    model = load_adapted(tmp_path / "lora", torch.device("cpu"))
    tokenizer = configure(load_tokenizer(tmp_path / "lora" / "tokenizer.json"),
                          model.preprocess.max_length)
    no_torch = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    for path in sorted(text_folder.rglob("*.txt"))[::5]:
        text = path.read_text()
        with torch.no_grad():
            ids = torch.tensor([tokenizer.encode(text).ids])
            app = torch.softmax(model.model(ids), 1)[0].numpy()
        result = subprocess.run([sys.executable, "-c", no_torch, str(tmp_path / "classify_text.py"),
                                 str(out), text], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        name, probability = result.stdout.splitlines()[0].split("\t")
        assert name == model.class_names[int(app.argmax())]
        # The file keeps the tables in half precision: it agrees within the export's parity limit.
        assert abs(float(probability) - float(app.max())) < FLOAT_MAX_PROBABILITY_DIFF


def test_nsp_pairs_keep_each_half_of_a_text_and_borrow_the_other_halves():
    from sslstudio.core.objectives.nsp import sentence_pairs

    vocab = TextVocab(size=200, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4, sentence_end_ids=(9,))
    rows = []
    for r in range(8):  # two sentences each (9 ends one), one text without an end
        body = [20 + r, 30 + r, 9, 40 + r, 50 + r, 60 + r] if r != 5 else [70, 71, 72, 73, 74, 75]
        rows.append([2, *body, 3] + [0] * 4)
    ids = torch.tensor(rows)
    pairs, labels = sentence_pairs(ids, vocab, torch.Generator().manual_seed(3))
    assert pairs.shape == ids.shape and set(labels.tolist()) == {0, 1}
    halves = []
    for r in range(8):
        tokens = pairs[r][pairs[r] != 0].tolist()
        assert tokens[0] == 2 and tokens[-1] == 3 and tokens.count(3) == 2  # [CLS] a [SEP] b [SEP]
        cut = tokens.index(3)
        halves.append((tokens[1:cut], tokens[cut + 1:-1]))
    body = {r: [t for t in rows[r][1:] if t not in (0, 3)] for r in range(8)}
    for r, (a, b) in enumerate(halves):
        assert a and b and body[r][:len(a)] == a  # the first segment is the text's own start
        if r != 5:
            assert a[-1] == 9  # cut after the sentence end
        if labels[r] == 1:
            assert a + b == body[r]  # its own continuation
        else:
            owner = [o for o in range(8) if o != r and body[o][-len(b):] == b]
            assert owner, "a negative's second segment is another text's ending"


def test_nsp_loss_is_cross_entropy_of_the_pooled_pair_plus_weighted_mlm():
    from sslstudio.core.objectives.nsp import NSP, NSPConfig, sentence_pairs

    vocab = TextVocab(size=200, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4, sentence_end_ids=(9,))
    encoder = TextTransformer(TextShape(200, 20, 1, 32, 2)).eval()
    ids = sentences(rows=6, length=20)
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        objective = NSP(encoder, NSPConfig(mlm_weight=weight), vocab)
        objective.generator = torch.Generator().manual_seed(5)
        loss, metrics = objective(ids)
        # The same draws again, by hand: pairs, then masking, then the two losses.
        generator = torch.Generator().manual_seed(5)
        pairs, labels = sentence_pairs(ids, vocab, generator)
        if weight:
            chosen = choose_positions(pairs, vocab, 0.15, generator)
            states, keep = encoder.token_states(corrupt(pairs, chosen, vocab, generator))
            mlm = references.masked_cross_entropy(objective.head(states), pairs, chosen)
            pooled = (states * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
        else:
            mlm, pooled = 0.0, encoder(pairs)
        nsp = references.cross_entropy(objective.classifier(pooled), labels)
        assert float(loss.detach()) == pytest.approx(nsp + weight * mlm, rel=1e-4)
        assert 0.0 <= float(metrics["nsp_accuracy"]) <= 1.0
