"""One file per kind of data the app trains on, each a registered `Preprocess`."""

from sslstudio.core.modalities import image, text  # noqa: F401 - registers them
