"""Skip-gram over word pieces and the averaged word-vector encoder it trains."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from conftest import reference_lexical

from sslstudio.core.backbones.text_transformer import TextShape
from sslstudio.core.backbones.word_vectors import WordVectors
from sslstudio.core.events import RunFinished, RunStarted, StepMetrics
from sslstudio.core.objectives.skipgram import SkipGram, SkipGramConfig, skipgram_loss
from sslstudio.core.tokenizer import TextVocab
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig, load_run_config

VOCAB = TextVocab(size=60, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)


def reference_loss(centre, output_weight, ids, valid, reach, negatives) -> float:
    """The formula pair by pair: mean over (i, j) of -log σ(u_j·v_i) - Σ_k log σ(-u_k·v_i)."""
    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    total, pairs = 0.0, 0
    rows, length = ids.shape
    for b in range(rows):
        for i in range(length):
            if not valid[b, i]:
                continue
            v = centre[b, i].double()
            for j in range(length):
                if j == i or not valid[b, j] or abs(i - j) > int(reach[b, i]):
                    continue
                term = -log_sigmoid(float(output_weight[ids[b, j]].double() @ v))
                for k in negatives[b, i]:
                    term -= log_sigmoid(-float(output_weight[k].double() @ v))
                total += term
                pairs += 1
    return total / pairs


def sample(rows=3, length=9, dim=6, window=3, negatives=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB.size, (rows, length), generator=generator)
    valid = torch.ones(rows, length, dtype=torch.bool)
    valid[1, 5:] = False  # a shorter text: padding after it
    valid[2, 2] = False  # a gap, as a subsampled piece leaves (if not compacted)
    ids[~valid] = VOCAB.pad_id
    centre = torch.randn(rows, length, dim, generator=generator)
    output_weight = torch.randn(VOCAB.size, dim, generator=generator) * 0.5
    reach = torch.randint(1, window + 1, (rows, length), generator=generator)
    noise = torch.randint(5, VOCAB.size, (rows, length, negatives), generator=generator)
    return centre, output_weight, ids, valid, reach, noise


def test_loss_matches_the_pair_by_pair_formula():
    centre, output_weight, ids, valid, reach, noise = sample()
    loss, pairs = skipgram_loss(centre, output_weight, ids, valid, reach, noise)
    assert float(loss) == pytest.approx(reference_loss(centre, output_weight, ids, valid, reach,
                                                       noise), rel=1e-5)
    expected_pairs = sum(1 for b in range(3) for i in range(9) for j in range(9)
                         if i != j and valid[b, i] and valid[b, j] and abs(i - j) <= reach[b, i])
    assert int(pairs) == expected_pairs


def test_loss_ignores_padded_positions():
    centre, output_weight, ids, valid, reach, noise = sample()
    loss, _ = skipgram_loss(centre, output_weight, ids, valid, reach, noise)
    scrambled = centre.clone()
    scrambled[~valid] = torch.randn(int((~valid).sum()), centre.shape[-1]) * 100
    again, _ = skipgram_loss(scrambled, output_weight, ids, valid, torch.where(valid, reach, 3),
                             torch.where(valid[..., None], noise, 7))
    assert float(again) == pytest.approx(float(loss), rel=1e-6)


def encoder_and_objective(**knobs):
    shape = TextShape(VOCAB.size, max_length=12, layers=0, width=8, heads=0)
    encoder = WordVectors(shape)
    objective = SkipGram(encoder, SkipGramConfig(**knobs), VOCAB)
    objective.generator = torch.Generator().manual_seed(0)
    return encoder, objective


def corpus(rows=40, length=12, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB.size, (rows, length), generator=generator)
    ids[:, 0] = VOCAB.cls_id
    lengths = torch.randint(4, length, (rows,), generator=generator)
    for row, n in enumerate(lengths):
        ids[row, n] = VOCAB.sep_id
        ids[row, n + 1:] = VOCAB.pad_id
    return ids


def test_padding_and_special_pieces_get_no_gradient_and_no_weight():
    encoder, objective = encoder_and_objective(subsample=0.0)
    ids = corpus()
    objective.observe_corpus(ids.numpy())
    special = list(VOCAB.special_ids)
    assert torch.all(encoder.token_weight[special] == 0) and torch.all(objective.noise[special] == 0)
    with torch.no_grad():
        objective.output.weight.normal_()  # so the input vectors get a gradient too
    loss, metrics = objective(ids)
    loss.backward()
    assert float(metrics["pairs"]) > 0
    for weight in (encoder.token_embedding.weight, objective.output.weight):
        assert torch.all(weight.grad[special] == 0) and weight.grad[5:].abs().sum() > 0
    # The pooled vector reads no padding: more of it after a text changes nothing.
    with torch.no_grad():
        longer = torch.nn.functional.pad(ids, (0, 5), value=VOCAB.pad_id)
        torch.testing.assert_close(encoder(ids), encoder(longer))


def test_frequent_pieces_weigh_less_and_are_subsampled():
    encoder, objective = encoder_and_objective(subsample=1e-2, smoothing=1e-2)
    ids = corpus()
    ids[:, 1:3] = 7  # a piece in every text, like "the"
    objective.observe_corpus(ids.numpy())
    rare = int(ids[0, 3])
    assert encoder.token_weight[7] < encoder.token_weight[rare] <= 1.0
    assert objective.keep[7] < objective.keep[rare] and objective.noise[7] > objective.noise[rare]


def test_a_few_steps_lower_the_loss_and_change_the_features():
    encoder, objective = encoder_and_objective(subsample=0.0)
    ids = corpus()
    objective.observe_corpus(ids.numpy())
    with torch.no_grad():
        before = encoder(ids).clone()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=0.05, weight_decay=0.0)
    losses = []
    for _ in range(30):
        objective.generator.manual_seed(0)  # the same draws, so the losses compare
        loss, _ = objective(ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx((1 + 5) * math.log(2), rel=1e-5)  # output vectors start at 0
    assert losses[-1] < 0.8 * losses[0]
    with torch.no_grad():
        assert not torch.allclose(encoder(ids), before)


def test_skipgram_asks_for_the_word_vectors_backbone():
    from sslstudio.core.backbones.text_transformer import TextTransformer
    from sslstudio.core.data.scan import DataError

    encoder = TextTransformer(TextShape(VOCAB.size, 12, 1, 16, 2))
    with pytest.raises(DataError, match="word_vectors"):
        SkipGram(encoder, SkipGramConfig(), VOCAB)


def config(folder, out, **extra):
    return TrainConfig(data=str(folder), out=str(out), objective="skipgram", batch_size=8,
                       vocab_size=600, text_width=16, monitor_items=16, log_every_steps=1,
                       **{"epochs": 2, **extra})


def test_skipgram_run_trains_embeds_and_exports(text_folder, tmp_path):
    from sslstudio.core.embed import load_encoder
    from sslstudio.core.export import ExportRequest, export_model
    from sslstudio.core.onnx_file import with_half_tables

    run = tmp_path / "run"
    events = list(train(config(text_folder, run, labels_from_folders=True, lexical_buckets=64)))
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert [s.step for s in steps] == list(range(1, 7)) and all(np.isfinite(s.loss) for s in steps)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    started = next(e for e in events if isinstance(e, RunStarted))
    buckets, dims = 64, 32  # the buckets reduced to the default's dimensions by the folder's SVD
    assert started.backbone == "word_vectors" and started.feature_dim == 16 + dims
    train_config, _, preprocess = load_run_config(run / "config.toml")
    assert train_config.backbone == "word_vectors" and preprocess["layers"] == 0
    assert preprocess.get("lexical_buckets", 0) == buckets and preprocess["lexical_dims"] == dims

    encoder, _ = load_encoder(run, torch.device("cpu"))
    weights = encoder.token_weight
    assert weights[0] == 0 and weights.min() < weights.max()  # the corpus's weights were saved
    fresh = WordVectors(encoder.shape)
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0]])
    with torch.no_grad():
        assert not torch.allclose(fresh.token_embedding.weight, encoder.token_embedding.weight)
        assert torch.isfinite(encoder(ids)).all()

    out = tmp_path / "export" / "words.onnx"
    exported = list(export_model(ExportRequest(run, out, latency_repeats=2, quantize="int8")))
    checks = {e.variant: e for e in exported if type(e).__name__ == "ExportCheck"}
    assert checks["float"].passed and checks["float"].items == 24
    # int8 is quantized from float32 tables (onnxruntime's quantizer cannot read half ones).
    assert checks["int8"].passed and out.with_suffix(".int8.onnx").exists()
    assert exported[-1].status == "completed"
    # The vectors and the lexical basis are stored in half precision (the exporter kept the
    # basis's cast, which reads it after a gather): the file is mostly those, at 2 bytes a number.
    import onnx

    table, basis = encoder.token_embedding.weight, encoder.lexical_basis
    stored = {i.name: i for i in onnx.load(str(out)).graph.initializer}
    halves = [i for i in stored.values() if i.data_type == onnx.TensorProto.FLOAT16]
    assert sorted(list(i.dims) for i in halves) == sorted([list(table.shape), list(basis.shape)])
    assert not [i for i in stored.values() if list(i.dims) == list(basis.shape)
                and i.data_type != onnx.TensorProto.FLOAT16]
    assert out.stat().st_size < 2.5 * (table.numel() + basis.numel()) + 40_000
    halved = with_half_tables(encoder)
    assert encoder.token_embedding.weight.dtype == torch.float32, "the exported copy is halved, not the encoder"
    with torch.no_grad():
        expected = encoder(ids)
        assert torch.allclose(halved(ids), expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_skipgram_run_resumes_to_the_same_weights(text_folder, tmp_path):
    from safetensors.torch import load_file

    from sslstudio.core.control import RunControl

    list(train(config(text_folder, tmp_path / "straight")))
    # One tokenizer for both runs (`tokenizers` breaks frequency ties differently per run).
    (tmp_path / "stopped").mkdir()
    shutil.copy(tmp_path / "straight" / "tokenizer.json", tmp_path / "stopped" / "tokenizer.json")
    control = RunControl()
    for event in train(config(text_folder, tmp_path / "stopped"), control=control):
        if isinstance(event, StepMetrics) and event.step == 2:
            control.cancel()
    list(train(config(text_folder, tmp_path / "stopped"), resume=True))

    def weights(run):
        tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
        return {k: v for k, v in tensors.items() if k.startswith("model.")}

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and any("output" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lexical_part_is_the_tfidf_of_hashed_pieces_and_pairs():
    shape = TextShape(VOCAB.size, max_length=12, layers=0, width=8, heads=0, lexical_buckets=64)
    encoder = WordVectors(shape)
    objective = SkipGram(encoder, SkipGramConfig(subsample=0.0), VOCAB)
    ids = corpus()
    ids[:5, 3] = VOCAB.sep_id  # a special piece inside a text breaks its pairs
    objective.observe_corpus(ids.numpy())
    with torch.no_grad():
        features = encoder(ids)
    assert features.shape == (len(ids), 8 + 64) and encoder.feature_dim == 72
    expected = reference_lexical(ids, set(VOCAB.special_ids), 64)
    np.testing.assert_allclose(features[:, 8:].numpy(), expected, rtol=1e-5, atol=1e-6)
    # The learned part is the pooled mean, as without the lexical part.
    plain = WordVectors(TextShape(VOCAB.size, 12, 0, 8, 0))
    plain.load_state_dict({k: v for k, v in encoder.state_dict().items() if k != "bucket_weight"})
    with torch.no_grad():
        torch.testing.assert_close(features[:, :8], plain(ids))


def stopped_as_an_earlier_version_wrote_it(text_folder, run, knob: str, **extra) -> None:
    """A run stopped at its second step whose config.toml has no `knob` anywhere, as a version
    from before the knob wrote it."""
    from sslstudio.core import config as cfg
    from sslstudio.core.control import RunControl

    control = RunControl()
    for event in train(config(text_folder, run, **extra), control=control):
        if isinstance(event, StepMetrics) and event.step == 2:
            control.cancel()
    tables = cfg.read_toml(run / "config.toml")
    del tables["train"][knob]
    tables["preprocess"].pop(knob, None)
    cfg.write_toml(run / "config.toml", tables)


def test_a_run_from_before_the_lexical_part_resumes_without_it(text_folder, tmp_path):
    from sslstudio.core.embed import load_encoder

    run = tmp_path / "old"
    stopped_as_an_earlier_version_wrote_it(text_folder, run, "lexical_buckets", lexical_buckets=0)
    events = list(train(config(text_folder, run), resume=True))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    encoder, _ = load_encoder(run, torch.device("cpu"))
    assert encoder.feature_dim == 16 and not hasattr(encoder, "bucket_weight")


def topic_corpus(sizes=(20, 15, 12, 8, 5), length=12, seed=2):
    """Texts on five topics of different sizes, each topic's pieces its own: a folder whose
    centred TF-IDF has four clear leading directions (the topics, less their mean)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for topic, size in enumerate(sizes):
        first = 5 + 11 * topic
        ids = torch.randint(first, first + 11, (size, length), generator=generator)
        ids[:, 0], ids[:, -1] = VOCAB.cls_id, VOCAB.sep_id
        rows.append(ids)
    return torch.cat(rows)


def test_the_reduced_lexical_part_is_the_folders_tfidf_on_its_leading_singular_directions():
    shape = TextShape(VOCAB.size, max_length=12, layers=0, width=8, heads=0, lexical_buckets=64,
                      lexical_dims=4)
    encoder = WordVectors(shape)
    objective = SkipGram(encoder, SkipGramConfig(subsample=0.0), VOCAB)
    ids = topic_corpus()
    objective.observe_corpus(ids.numpy())
    with torch.no_grad():
        features = encoder(ids)
    assert features.shape == (60, 8 + 4) and encoder.feature_dim == 12
    # From the formula: the TF-IDF rows, centred, on the top right singular vectors of the
    # folder's (every text: fewer than the sample's limit). Compared by their inner products,
    # which do not depend on each direction's sign.
    tfidf = reference_lexical(ids, set(VOCAB.special_ids), 64).astype(np.float64)
    centred = tfidf - tfidf.mean(0)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ right[:4].T
    got = features[:, 8:].numpy().astype(np.float64)
    np.testing.assert_allclose(got @ got.T, expected @ expected.T, atol=1e-3)
    basis = encoder.lexical_basis.numpy()
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-4)
    # The learned part is the pooled mean, as without the lexical part.
    plain = WordVectors(TextShape(VOCAB.size, 12, 0, 8, 0))
    plain.load_state_dict({k: v for k, v in encoder.state_dict().items()
                           if k not in ("bucket_weight", "lexical_centre", "lexical_basis")})
    with torch.no_grad():
        torch.testing.assert_close(features[:, :8], plain(ids))


def test_a_run_from_before_the_lexical_svd_resumes_with_its_raw_buckets(text_folder, tmp_path,
                                                                        monkeypatch):
    import sslstudio.core.modalities.text as text_modality
    from sslstudio.core.embed import load_encoder

    run = tmp_path / "old"  # buckets, and no lexical_dims: no SVD, as that version had none
    with monkeypatch.context() as patched:
        patched.setattr(text_modality, "DIMS_BESIDE_WORD_VECTORS", 0)
        stopped_as_an_earlier_version_wrote_it(text_folder, run, "lexical_dims", lexical_buckets=32)
    events = list(train(config(text_folder, run), resume=True))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    encoder, _ = load_encoder(run, torch.device("cpu"))
    assert encoder.feature_dim == 16 + 32 and not hasattr(encoder, "lexical_basis")
    # A new run keeps the default: the buckets reduced by the folder's SVD.
    fresh = tmp_path / "new"
    list(train(config(text_folder, fresh)))
    encoder, _ = load_encoder(fresh, torch.device("cpu"))
    assert encoder.feature_dim == 16 + 32 and encoder.lexical_dims == 32
    assert encoder.lexical_basis.abs().sum() > 0
