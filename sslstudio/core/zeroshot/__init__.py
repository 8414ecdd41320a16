"""Zero-shot labels from a model that embeds items and class descriptions together."""

from sslstudio.core.zeroshot.base import (
    ZERO_SHOT_MODELS,
    ZeroShotModel,
    ZeroShotRequest,
    class_descriptions,
    open_zero_shot_model,
    zero_shot,
)

# Importing the modules registers them.
from sslstudio.core.zeroshot import clip as _clip  # noqa: F401,E402
from sslstudio.core.zeroshot import sentence as _sentence  # noqa: F401,E402

__all__ = ["ZERO_SHOT_MODELS", "ZeroShotModel", "ZeroShotRequest", "class_descriptions",
           "open_zero_shot_model", "zero_shot"]
