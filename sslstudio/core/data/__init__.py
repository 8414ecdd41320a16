"""Data folders. Each modality has a loader that yields scan progress and returns a dataset with
the same small interface: `len()`, `labels`, `class_names`, `paths`, `batch(indices)`."""

import hashlib
import os
from dataclasses import dataclass

from sslstudio.core.data.image_folder import ImageFolderData, load_image_folder
from sslstudio.core.data.scan import DataError, ScanReport
# Registers the text files' kind beside the images' (`scan.detect_modality` tells them apart).
from sslstudio.core.data import text_folder as _text_folder  # noqa: F401,E402


def item_keys(data) -> list[str]:
    """Each item's key, stable across runs and machines: its path relative to the data folder,
    and for a record of a .jsonl or .csv file, `file#record`. Labels are stored under it."""
    return list(data.items)


__all__ = ["DataError", "DataIdentity", "ImageFolderData", "ScanReport", "absolute_data_path",
           "item_keys", "load_image_folder"]


@dataclass(frozen=True)
class DataIdentity:
    """Which folder a run was trained on, as it was: its absolute path, its item count and a
    hash of its sorted item keys. A run keeps it, so that a resume or an embed can tell the
    folder it is given from the one the run knows (a relative path means a different folder
    from another working directory)."""

    path: str
    items: int
    listing: str

    @classmethod
    def of(cls, root, keys: list[str]) -> "DataIdentity":
        digest = hashlib.sha256("\n".join(keys).encode("utf-8", "surrogateescape")).hexdigest()
        return cls(absolute_data_path(root), len(keys), digest[:32])

    @classmethod
    def from_table(cls, table: dict) -> "DataIdentity | None":
        try:
            return cls(str(table["path"]), int(table["items"]), str(table["listing"]))
        except (KeyError, TypeError, ValueError):
            return None

    def to_table(self) -> dict:
        return {"path": self.path, "items": self.items, "listing": self.listing}

    def same_items(self, other: "DataIdentity") -> bool:
        return (self.items, self.listing) == (other.items, other.listing)

    def same_place(self, path) -> bool:
        return absolute_data_path(path) == self.path


def absolute_data_path(path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))
