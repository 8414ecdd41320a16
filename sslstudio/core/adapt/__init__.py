"""Few-shot adaptation of a pretrained encoder to the user's classes, one file per method."""

from sslstudio.core.adapt.base import ADAPTERS, AdaptConfig, Adapter, AdaptTask, Classifier, Fitted

# Importing the modules registers them.
from sslstudio.core.adapt import linear as _linear  # noqa: F401,E402
from sslstudio.core.adapt import finetune as _finetune  # noqa: F401,E402
from sslstudio.core.adapt import lora as _lora  # noqa: F401,E402
from sslstudio.core.adapt import adapter as _adapter  # noqa: F401,E402
from sslstudio.core.adapt import prefix as _prefix  # noqa: F401,E402
from sslstudio.core.adapt import prompt as _prompt  # noqa: F401,E402
from sslstudio.core.adapt import ia3 as _ia3  # noqa: F401,E402
from sslstudio.core.adapt import setfit as _setfit  # noqa: F401,E402

__all__ = ["ADAPTERS", "AdaptConfig", "AdaptTask", "Adapter", "Classifier", "Fitted"]
