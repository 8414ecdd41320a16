"""Encoders, one file each, registered by name. `build_backbone` is the one way to make one."""

from __future__ import annotations

from pathlib import Path

from sslstudio.core.backbones.base import BACKBONES, Backbone, BackboneSpec
from sslstudio.core.backbones.bert import is_model_folder, model_folder_weights
from sslstudio.core.backbones.weights import WeightsError, load_weights

# Importing the modules registers them.
from sslstudio.core.backbones import small_cnn as _small_cnn  # noqa: F401,E402
from sslstudio.core.backbones import resnet as _resnet  # noqa: F401,E402
from sslstudio.core.backbones import vit as _vit  # noqa: F401,E402
from sslstudio.core.backbones import text_transformer as _text_transformer  # noqa: F401,E402
from sslstudio.core.backbones import word_vectors as _word_vectors  # noqa: F401,E402
from sslstudio.core.backbones import pretrained as _pretrained  # noqa: F401,E402
from sslstudio.core.backbones import bert as _bert  # noqa: F401,E402
from sslstudio.core.backbones import lcnet as _lcnet  # noqa: F401,E402


def build_backbone(name: str, shape, weights: str | Path | None = None) -> Backbone:
    """`shape` is what the modality's `Preprocess.encoder_shape()` gives: the side in pixels for
    image backbones, a TextShape or BertShape for text ones."""
    spec: BackboneSpec = BACKBONES.get(name)
    model = spec.build(shape)
    if weights:
        path = Path(weights)
        load_weights(model, model_folder_weights(path) if is_model_folder(path) else path)
    return model


__all__ = ["BACKBONES", "Backbone", "WeightsError", "build_backbone", "load_weights"]
