"""Self-supervised objectives, one file each, registered by name."""

from __future__ import annotations

from sslstudio.core.objectives.base import OBJECTIVES, Objective, ObjectiveConfig

# Importing the modules registers them.
from sslstudio.core.objectives import simclr as _simclr  # noqa: F401,E402
from sslstudio.core.objectives import moco as _moco  # noqa: F401,E402
from sslstudio.core.objectives import byol as _byol  # noqa: F401,E402
from sslstudio.core.objectives import simsiam as _simsiam  # noqa: F401,E402
from sslstudio.core.objectives import rotation as _rotation  # noqa: F401,E402
from sslstudio.core.objectives import jigsaw as _jigsaw  # noqa: F401,E402
from sslstudio.core.objectives import mlm as _mlm  # noqa: F401,E402
from sslstudio.core.objectives import infill as _infill  # noqa: F401,E402
from sslstudio.core.objectives import simcse as _simcse  # noqa: F401,E402
from sslstudio.core.objectives import nsp as _nsp  # noqa: F401,E402
from sslstudio.core.objectives import skipgram as _skipgram  # noqa: F401,E402
from sslstudio.core.objectives import distill as _distill  # noqa: F401,E402

__all__ = ["OBJECTIVES", "Objective", "ObjectiveConfig"]
