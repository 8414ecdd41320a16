from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from sslstudio.core.backbones import BACKBONES, WeightsError, build_backbone


TINY_BERT = ('{"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, '
             '"num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 32, '
             '"type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}')


def shape_and_input(name):
    if name == "pretrained_bert":
        from sslstudio.core.backbones.bert import BertShape

        ids = torch.randint(5, 100, (2, 16))
        ids[1, 10:] = 0
        return BertShape(TINY_BERT, 16), ids
    if BACKBONES.get(name).modality == "text":
        from sslstudio.core.backbones.text_transformer import TextShape

        ids = torch.randint(5, 100, (2, 16))
        ids[1, 10:] = 0  # padding
        return TextShape(vocab_size=100, max_length=16, layers=2, width=64, heads=2), ids
    return 32, torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("name", BACKBONES.names())
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_state_dict_round_trip_through_the_user_file_path(tmp_path, name, suffix):
    shape, x = shape_and_input(name)
    source = build_backbone(name, shape)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = build_backbone(name, shape, weights=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.allclose(source.eval()(x), loaded.eval()(x))


def test_torchvision_key_names_and_a_classifier_head_are_accepted(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "imagenet_style.pth")
    loaded = build_backbone("resnet18", 224, weights=tmp_path / "imagenet_style.pth")
    assert torch.equal(loaded.net.conv1.weight, reference.conv1.weight)


def test_wrong_shapes_and_unexpected_keys_are_named(tmp_path):
    state = build_backbone("small_cnn", 32).state_dict()
    state["stem.0.weight"] = torch.zeros(3, 3, 3, 3)
    state["extra.layer"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as error:
        build_backbone("small_cnn", 32, weights=tmp_path / "bad.pth")
    message = str(error.value)
    assert "stem.0.weight" in message and "extra.layer" in message


class _Exploit:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Exploit()}, f)
    with pytest.raises(WeightsError, match="could run code"):
        build_backbone("small_cnn", 32, weights=path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        build_backbone("small_cnn", 32, weights=tmp_path / "nope.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 50)
    with pytest.raises(WeightsError, match="not a weights file"):
        build_backbone("small_cnn", 32, weights=tmp_path / "junk.safetensors")
