"""PyInstaller runtime hook of the Linux bundle: torchvision without its compiled operators.

PyPI's Linux torchvision is built against CUDA torch: its `_C` and `image` extensions need
libtorch_cuda and libcudart, which the CPU-only torch of the bundle does not have (with them,
CUDA would add gigabytes). The app uses torchvision's models and nothing of its detection
operators, so the bundle leaves both extensions out. torchvision still declares shape functions
for `nms` and `qnms` when it is imported, which fails unless the operators exist: their schemas
are declared here, just before torchvision's first import (not at start-up: importing torch
then would hold back the window by seconds). Calling them still fails with PyTorch's "no kernel"
error, which is the truth.
"""

import importlib.abc
import sys
import warnings

SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
           "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _DeclareTorchvisionOperators(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.library = None  # a torch.library.Library forgets its operators when collected

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and self.library is None:
            import torch

            self.library = torch.library.Library("torchvision", "DEF")
            for schema in SCHEMAS:
                self.library.define(schema)
            # torchvision.io says once that its image extension is missing; the app reads
            # images with Pillow.
            warnings.filterwarnings("ignore", message="Failed to load image Python extension")
        return None  # the import itself goes on as usual


sys.meta_path.insert(0, _DeclareTorchvisionOperators())
