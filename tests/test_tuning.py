"""Adapters, prefix tuning, prompt tuning and (IA)^3: each starts as the pretrained encoder, trains
only its own weights, saves them, reloads into a fresh encoder, and exports to ONNX with the
same outputs as PyTorch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sslstudio.core.adapt import ADAPTERS, Classifier
from sslstudio.core.adapt.base import unfit_methods
from sslstudio.core.backbones import build_backbone
from sslstudio.core.backbones.text_transformer import TextShape
from sslstudio.core.backbones.tuning import TuningModule, own_state
from sslstudio.core.onnx_file import write_onnx

TUNED = ["adapter", "prefix", "prompt", "ia3"]


def _encoder_and_input(backbone: str):
    torch.manual_seed(0)
    if backbone == "pretrained_bert":  # the layout of MiniLM, post-norm, at a tiny size
        from sslstudio.core.backbones.bert import BertShape
        from tests.test_weights import TINY_BERT

        # Read as a run's is: the folder's own words beside the states (4 dimensions here).
        encoder = build_backbone(backbone, BertShape(TINY_BERT, 16, lexical_buckets=64, lexical_dims=4))
        ids = torch.randint(1, 100, (3, 16))
        ids[0, 9:] = 0
        encoder.observe_corpus(ids.numpy())
        encoder.read_for_probe()
        return encoder.eval(), ids
    if backbone == "text_transformer":
        encoder = build_backbone(backbone, TextShape(vocab_size=60, max_length=16, layers=2,
                                                     width=32, heads=4))
        ids = torch.randint(1, 60, (3, 16))
        ids[0, 9:] = 0  # padding, which attention and pooling must keep ignoring
        return encoder.eval(), ids
    return build_backbone(backbone, 32).eval(), torch.rand(3, 3, 32, 32)


def _perturb(encoder: nn.Module) -> None:
    """Move every added weight, as training would, so that a method's effect shows."""
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, TuningModule):
                for p in module.parameters():
                    p.add_(torch.randn_like(p) * 0.3)


CASES = ([(m, b) for m in TUNED for b in ("text_transformer", "vit_tiny", "pretrained_bert")]
         + [("adapter", "small_cnn"), ("adapter", "pretrained_efficientnet_lite0")])


@pytest.mark.parametrize("method,backbone", CASES)
def test_a_tuning_method_starts_as_the_pretrained_encoder_and_trains_only_its_own_weights(method, backbone):
    encoder, x = _encoder_and_input(backbone)
    before = encoder(x)
    base_names = {n for n, _ in encoder.named_parameters()}
    cls = ADAPTERS.get(method)
    for p in encoder.parameters():
        p.requires_grad_(False)
    cls.attach(encoder, cls.config_cls())
    assert torch.equal(encoder(x), before)  # exactly, not nearly: the identity at step 0
    added = own_state(encoder)
    assert added and not any(name in base_names for name in added)
    share = sum(v.numel() for v in added.values()) / sum(p.numel() for p in encoder.parameters())
    # A small share even of this tiny encoder (2 blocks 32 wide; prefix tuning's MLP, which
    # goes once trained, is the largest).
    assert 0 < share < 0.5, share
    _perturb(encoder)
    assert not torch.allclose(encoder(x), before, atol=1e-4)


@pytest.mark.parametrize("method,backbone", CASES)
def test_a_tuned_classifier_reloads_from_what_is_saved_and_exports_with_parity(method, backbone, tmp_path):
    encoder, x = _encoder_and_input(backbone)
    cls = ADAPTERS.get(method)
    config = cls.config_cls()
    cls.attach(encoder, config)
    _perturb(encoder)
    model = Classifier(encoder, 3).eval()
    trained = model(x)
    # As the adapt job saves it: settled (prefixes kept, not their MLP), own weights apart,
    # merged where the method merges.
    model.encoder = cls.settle(model.encoder)
    torch.testing.assert_close(model(x), trained, atol=1e-5, rtol=1e-5)
    own = own_state(model.encoder)
    model.encoder = cls.merge(model.encoder)
    torch.testing.assert_close(model(x), trained, atol=1e-4, rtol=1e-4)
    if method == "ia3":
        assert not any(isinstance(m, TuningModule) for m in model.encoder.modules())  # merged away
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    fresh, _ = _encoder_and_input(backbone)
    reloaded = Classifier(cls.restore(fresh, config), 3).eval()
    reloaded.load_state_dict(saved)  # strict: the restored shape is the saved one
    torch.testing.assert_close(reloaded(x), trained, atol=1e-4, rtol=1e-4)
    assert own
    if method != "ia3":  # the wrapped methods' own weights are the model's; (IA)^3's are merged in
        for key, value in own.items():
            assert torch.equal(reloaded.encoder.state_dict()[key], value)

    path = tmp_path / "m.onnx"
    # Float32 tables: the graph is compared at 1e-4 here; half-precision tables, which the app's
    # exports use, move a BERT's logits by up to 2e-4 and are checked in test_skipgram.py.
    write_onnx(reloaded, x[:1], path, "logits", {}, half_tables=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = x.numpy() if x.dtype != torch.int64 else x.numpy().astype(np.int64)
    onnx_out = session.run(None, {name: feed})[0]  # a batch of 3 through a graph traced on 1
    np.testing.assert_allclose(onnx_out, reloaded(x).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_methods_that_need_attention_are_not_offered_for_a_convnet():
    assert unfit_methods(build_backbone("small_cnn", 32)).keys() == {"prefix", "prompt", "ia3"}
    # timm's convnets take adapters after the stages it lists as feature levels.
    assert unfit_methods(build_backbone("pretrained_efficientnet_lite0", 32)).keys() == {"prefix", "prompt", "ia3"}
    assert unfit_methods(_encoder_and_input("vit_tiny")[0]) == {}
    assert unfit_methods(_encoder_and_input("text_transformer")[0]) == {}
    assert unfit_methods(_encoder_and_input("pretrained_bert")[0]) == {}
