"""Data folders. Each modality has a loader that yields scan progress and returns a dataset with
the same small interface: `len()`, `labels`, `class_names`, `paths`, `batch(indices)`."""

from sslstudio.core.data.image_folder import ImageFolderData, load_image_folder
from sslstudio.core.data.scan import DataError, ScanReport

__all__ = ["DataError", "ImageFolderData", "ScanReport", "load_image_folder"]
