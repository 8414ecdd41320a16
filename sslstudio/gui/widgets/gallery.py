"""A virtualised gallery: thumbnails come straight from the scan's uint8 array, made into images
only for the rows the view asks for, so 100,000 items scroll like 100."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QImage, QImageReader, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QSizePolicy, QSplitter, QVBoxLayout, QWidget

THUMBNAIL_CACHE = 2048


def array_to_qimage(array: np.ndarray) -> QImage:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: the numpy buffer may be a memmap page that goes away


class GalleryModel(QAbstractListModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.data_set = None
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()

    def set_data(self, data_set) -> None:
        self.beginResetModel()
        self.data_set = data_set
        self._cache.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() or self.data_set is None else len(self.data_set)

    def thumbnail(self, row: int) -> QPixmap:
        pixmap = self._cache.get(row)
        if pixmap is None:
            pixmap = QPixmap.fromImage(array_to_qimage(self.data_set.images[row]))
            self._cache[row] = pixmap
            if len(self._cache) > THUMBNAIL_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(row)
        return pixmap

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.data_set is None:
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            path = self.data_set.paths[row]
            label = int(self.data_set.labels[row])
            folder = f"\nfolder: {self.data_set.class_names[label]}" if label >= 0 else ""
            return f"{path.name}{folder}"
        if role == Qt.ItemDataRole.UserRole:
            return str(self.data_set.paths[row])
        return None


class GalleryView(QWidget):
    """The gallery and, under it, a preview of the selected item at full resolution."""

    item_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = GalleryModel(self)
        self.list = QListView()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setUniformItemSizes(True)  # lets the view skip measuring 100,000 items
        self.list.setLayoutMode(QListView.LayoutMode.Batched)
        self.list.setBatchSize(500)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.list.setIconSize(QSize(64, 64))
        self.list.setGridSize(QSize(72, 72))
        self.list.setModel(self.model)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        self.preview = QLabel("Select an image to preview it")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(160)
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel("")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setWordWrap(True)
        preview_box = QWidget()
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(self.preview, 1)
        preview_layout.addWidget(self.caption)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.list)
        splitter.addWidget(preview_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def set_data(self, data_set) -> None:
        self.model.set_data(data_set)
        self.preview.setText("Select an image to preview it")
        self.caption.setText("")

    def select(self, row: int) -> None:
        index = self.model.index(row)
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index)

    def _current_changed(self, current: QModelIndex, _previous) -> None:
        if not current.isValid():
            return
        row = current.row()
        path = Path(self.model.data_set.paths[row])
        reader = QImageReader(str(path))
        reader.setAutoTransform(True)  # EXIF orientation, as training sees it
        size = reader.size()
        box = self.preview.size()
        if size.isValid() and (size.width() > box.width() or size.height() > box.height()):
            reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():
            image = array_to_qimage(self.model.data_set.images[row])
        pixmap = QPixmap.fromImage(image)
        if pixmap.width() < box.width() // 2 and pixmap.height() < box.height() // 2:
            # Small images (28 px) are enlarged without smoothing so pixels stay visible.
            pixmap = pixmap.scaled(box, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.FastTransformation)
        self.preview.setPixmap(pixmap)
        dims = f"{size.width()}x{size.height()} px" if size.isValid() else ""
        self.caption.setText(f"{path}\n{dims}")
        self.item_selected.emit(row)
