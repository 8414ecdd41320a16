"""Zero-shot labels: a sentence encoder for texts, CLIP for images, the job and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from conftest import fake_snapshot_download, make_image_folder
from sslstudio.core.control import RunControl
from sslstudio.core.data.scan import DataError
from sslstudio.core.zeroshot import ZeroShotRequest, class_descriptions, zero_shot
from sslstudio.core.zeroshot.clip import Clip, ClipConfig, end_positions, load_clip
from tests.conftest import make_bert_folder

TINY_CLIP = {"model_type": "clip", "projection_dim": 16,
             "text_config": {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 2, "num_attention_heads": 4,
                             "max_position_embeddings": 16, "eos_token_id": 39},
             "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "image_size": 32, "patch_size": 8}}
WORDS = "a photo of red green blue circle square dog cat".split()


def make_clip_folder(folder, config=TINY_CLIP):
    """A CLIP folder in Hugging Face's layout with random weights and a word-level tokenizer
    that adds start and end tokens as CLIP's does."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(3)
    model = Clip(ClipConfig.from_json(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(16)[None]  # as some versions save
    save_file(state, str(folder / "model.safetensors"))
    vocab = {"<|startoftext|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)},
             "<|endoftext|>": 39}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 39)])
    tokenizer.save(str(folder / "tokenizer.json"))
    return model.eval()


def test_the_real_clip_architecture_has_vit_b32s_parameters_and_shapes():
    model = Clip(ClipConfig.from_json({"model_type": "clip"})).eval()  # Hugging Face's defaults
    assert sum(p.numel() for p in model.parameters()) == 151_277_313  # openai/clip-vit-base-patch32
    with torch.no_grad():
        images = model.encode_image(torch.randn(2, 3, 224, 224))
        ids = torch.tensor([[49406, 320, 1125, 49407, 49407], [49406, 320, 49407, 49407, 49407]])
        texts = model.encode_text(ids, torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]))
    assert images.shape == texts.shape == (2, 512)
    assert torch.allclose(images.norm(dim=1), torch.ones(2)) and torch.allclose(texts.norm(dim=1), torch.ones(2))


def test_clip_text_pools_at_the_end_token_and_ignores_what_follows():
    config = ClipConfig.from_json(TINY_CLIP)
    # Legacy configs (eos id 2) mark the end by the largest id; others by the end token's id.
    assert end_positions(torch.tensor([[0, 5, 39, 39]]), {"eos_token_id": 2}).tolist() == [2]
    assert end_positions(torch.tensor([[0, 39, 5, 39]]), {"eos_token_id": 39}).tolist() == [1]
    torch.manual_seed(0)
    model = Clip(config).eval()
    with torch.no_grad():
        short = model.encode_text(torch.tensor([[0, 4, 39]]), torch.ones(1, 3, dtype=torch.long))
        padded = model.encode_text(torch.tensor([[0, 4, 39, 39, 39, 39]]),
                                   torch.tensor([[1, 1, 1, 0, 0, 0]]))
        # The causal mask: tokens after the end change nothing even where the mask says keep.
        trailing = model.encode_text(torch.tensor([[0, 4, 39, 7, 8]]), torch.ones(1, 5, dtype=torch.long))
    assert torch.allclose(short, padded, atol=1e-6) and torch.allclose(short, trailing, atol=1e-6)


def test_clip_zero_shot_on_a_tiny_model_matches_its_own_embeddings(tmp_path):
    make_clip_folder(tmp_path / "clip")
    data = make_image_folder(tmp_path / "images", classes=2, per_class=3, size=40)
    before = sorted(p.name for p in (tmp_path / "clip").iterdir())
    out = tmp_path / "zs.csv"
    events = list(zero_shot(ZeroShotRequest(tmp_path / "clip", data, ["dog", "cat=a photo of a cat"],
                                            out_csv=out, device="cpu")))
    predictions = next(e for e in events if type(e).__name__ == "ZeroShotPredictions")
    assert events[-1].status == "completed" and predictions.class_names == ("dog", "cat")
    # A bare name goes through the image template; a given description is used as it is.
    assert predictions.descriptions == ("a photo of a dog.", "a photo of a cat")
    # The reference: the model applied by hand to the images as CLIP prepares them.
    model = load_clip(tmp_path / "clip")
    tokenizer = Tokenizer.from_file(str(tmp_path / "clip" / "tokenizer.json"))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    images = []
    for item in predictions.items:
        image = Image.open(data / item).convert("RGB").resize((32, 32), Image.BILINEAR)
        images.append((torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - mean) / std)
    texts = [tokenizer.encode(d).ids for d in predictions.descriptions]
    width = max(map(len, texts))
    ids = torch.tensor([t + [39] * (width - len(t)) for t in texts])
    mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in texts])
    with torch.no_grad():
        logits = model.logit_scale.exp() * model.encode_image(torch.stack(images)) @ model.encode_text(ids, mask).T
    np.testing.assert_allclose(predictions.proba, torch.softmax(logits, 1).numpy(), atol=2e-2)
    assert (predictions.predicted == logits.argmax(1).numpy()).mean() >= 0.8  # resize filters differ
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == [predictions.class_names[p] for p in predictions.predicted]
    assert sorted(p.name for p in (tmp_path / "clip").iterdir()) == before  # nothing written there


def test_sentence_zero_shot_gives_each_text_the_class_it_describes(tmp_path):
    """With any encoder, a text identical to one class's description is nearest to it: the
    items and the descriptions go through the same tokenizer, length and pooling."""
    data = tmp_path / "texts"
    data.mkdir()
    descriptions = {"good": "great wonderful moving film", "bad": "dull boring awful film",
                    "meh": "the plot and the music"}
    truth = {}
    for i in range(9):
        name = list(descriptions)[i % 3]
        (data / f"{i}.txt").write_text(descriptions[name])
        truth[f"{i}.txt"] = name
    make_bert_folder(tmp_path / "minibert", list(descriptions.values()) * 4)
    before = sorted(p.name for p in (tmp_path / "minibert").iterdir())
    events = list(zero_shot(ZeroShotRequest(tmp_path / "minibert", data,
                                            [f"{n}={d}" for n, d in descriptions.items()], device="cpu")))
    predictions = next(e for e in events if type(e).__name__ == "ZeroShotPredictions")
    assert [predictions.class_names[p] for p in predictions.predicted] == [truth[i] for i in predictions.items]
    assert np.allclose(predictions.proba.sum(1), 1) and (predictions.confidence > 1 / 3).all()
    assert sorted(p.name for p in (tmp_path / "minibert").iterdir()) == before
    assert "good 3, bad 3, meh 3" in events[-1].message


def test_zero_shot_says_what_it_needs(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=2, size=20)
    with pytest.raises(DataError, match="needs a model that reads both.*CLIP model folder.*sentence-encoder"):
        list(zero_shot(ZeroShotRequest(folder, folder, ["a", "b"], device="cpu")))
    with pytest.raises(DataError, match="at least two classes"):
        class_descriptions(["only"], "{}")
    with pytest.raises(DataError, match="repeat: a"):
        class_descriptions(["a", "a=the letter a"], "{}")
    assert class_descriptions(["cat", "dog=a small dog"], "a photo of a {}.") == (
        ["cat", "dog"], ["a photo of a cat.", "a small dog"])


def test_zero_shot_stops_when_cancelled_and_writes_nothing(tmp_path):
    make_clip_folder(tmp_path / "clip")
    data = make_image_folder(tmp_path / "images", classes=2, per_class=40, size=40)
    control = RunControl()
    out = tmp_path / "zs.csv"
    events = []
    for event in zero_shot(ZeroShotRequest(tmp_path / "clip", data, ["dog", "cat"], out_csv=out,
                                           device="cpu"), control):
        events.append(event)
        if type(event).__name__ == "EmbedProgress":
            control.cancel()
    assert events[-1].status == "cancelled" and not out.exists()
    assert not any(type(e).__name__ == "ZeroShotPredictions" for e in events)


def test_cli_zeroshot_writes_a_csv_and_refuses_to_overwrite(tmp_path, capsys):
    from sslstudio.cli import main

    make_clip_folder(tmp_path / "clip")
    data = make_image_folder(tmp_path / "images", classes=2, per_class=3, size=40)
    out = tmp_path / "zs.csv"
    assert main(["zeroshot", str(tmp_path / "clip"), "--data", str(data), "--classes", "dog", "cat",
                 "--out", str(out), "--device", "cpu"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["label"] for r in rows} <= {"dog", "cat"}
    assert all(r["path"].startswith(str(data.resolve())) for r in rows)
    assert "6 image items" in capsys.readouterr().out
    assert main(["zeroshot", str(tmp_path / "clip"), "--data", str(data), "--classes", "dog", "cat",
                 "--out", str(out), "--device", "cpu"]) != 0
    assert "exists" in capsys.readouterr().err


def test_a_text_run_labels_its_folder_zero_shot(tmp_path):
    from sslstudio.core.run.train import train
    from sslstudio.core.run.config import TrainConfig

    data = tmp_path / "texts"
    data.mkdir()
    descriptions = {"good": "great wonderful moving film", "bad": "dull boring awful film"}
    for i in range(12):
        (data / f"{i:02d}.txt").write_text(descriptions["good" if i % 2 else "bad"])
    run = tmp_path / "run"
    list(train(TrainConfig(data=str(data), out=str(run), objective="mlm", epochs=1, batch_size=4,
                           vocab_size=600, text_layers=1, text_width=32, monitor_items=16)))
    events = list(zero_shot(ZeroShotRequest(run, data, [f"{n}={d}" for n, d in descriptions.items()],
                                            device="cpu")))
    predictions = next(e for e in events if type(e).__name__ == "ZeroShotPredictions")
    expected = ["good" if int(item[:2]) % 2 else "bad" for item in predictions.items]
    assert [predictions.class_names[p] for p in predictions.predicted] == expected


def test_clip_is_downloaded_only_when_asked_and_then_found_in_the_cache(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from sslstudio.cli import main
    from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder, download_clip

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    asked = []

    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        fake_snapshot_download(tmp_path / "hub", make_clip_folder, asked))
    assert cached_clip_folder() is None
    assert main(["weights", "list"]) == 0
    assert "not on disk (`sslstudio weights download clip`)" in capsys.readouterr().out
    assert main(["weights", "download", "clip"]) != 0  # no terminal to ask in, and no --yes
    assert "consent" in capsys.readouterr().err and asked == []
    assert main(["weights", "download", "clip", "--yes"]) == 0
    assert asked == [(CLIP_DOWNLOAD["repo"], sorted(CLIP_DOWNLOAD["files"]))]
    folder = cached_clip_folder()
    assert folder == tmp_path / "hub" / "models--openai--clip-vit-base-patch32" / "snapshots" / "abc"
    assert f"sslstudio zeroshot {folder}" in capsys.readouterr().out

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match="could not download.*no route to host.*Without a network"):
        download_clip()
