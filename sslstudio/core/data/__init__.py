"""Data folders. Each modality has a loader that yields scan progress and returns a dataset with
the same small interface: `len()`, `labels`, `class_names`, `paths`, `batch(indices)`."""

from sslstudio.core.data.image_folder import ImageFolderData, load_image_folder
from sslstudio.core.data.scan import DataError, ScanReport


def item_keys(data) -> list[str]:
    """Each item's key, stable across runs and machines: its path relative to the data folder,
    and for a record of a .jsonl or .csv file, `file#record`. Labels are stored under it."""
    return list(data.items)


__all__ = ["DataError", "ImageFolderData", "ScanReport", "item_keys", "load_image_folder"]
