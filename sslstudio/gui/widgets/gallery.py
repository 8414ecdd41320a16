"""A virtualised gallery: thumbnails come straight from the scan's uint8 array, made into images
only for the rows the view asks for, so 100,000 items scroll like 100.

Labels and predictions are drawn by a delegate over the thumbnail (a bar in the label's colour,
a dot in the predicted class's colour), so changing them never rebuilds a pixmap. Rows can be a
filtered or reordered view of the items (labelled, unlabelled, suggested, least confident)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QTimer,
    QAbstractListModel,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QListView,
    QMenu,
    QSizePolicy,
    QSplitter,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from sslstudio.gui.modalities import view_of
from sslstudio.core.data import item_keys
from sslstudio.core.data.text_folder import snippet

THUMBNAIL_CACHE = 2048
FILTERS = ("All items", "Labelled", "Unlabelled", "Suggested to label next",
           "Least confident first")
FOLDER_FILTER, LABEL_FILTER = "In folder: ", "Labelled as: "  # then a name, one entry per name
THUMBNAIL_SIDES = (40, 200)  # the slider's range, px; 64 is what the scan decodes


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
        self.order: np.ndarray | None = None  # row -> item; None shows every item in order
        self.label_of = np.zeros(0, np.int64)  # item -> class position, -1 unlabelled
        self.class_names: list[str] = []
        self.class_colours: list[QColor] = []
        self.predicted: np.ndarray | None = None  # item -> class position, -1 unknown
        self.confidence: np.ndarray | None = None
        self.side = 64  # px the thumbnails are shown at

    def set_data(self, data_set) -> None:
        self.beginResetModel()
        self.data_set = data_set
        self._cache.clear()
        self.order = None
        n = 0 if data_set is None else len(data_set)
        self.label_of = np.full(n, -1, np.int64)
        self.predicted = self.confidence = None
        self.endResetModel()

    def set_order(self, order: np.ndarray | None) -> None:
        self.beginResetModel()
        self.order = None if order is None else np.asarray(order, np.int64)
        self.endResetModel()

    def set_labels(self, label_of: np.ndarray, names: list[str], colours: list[QColor]) -> None:
        self.label_of, self.class_names, self.class_colours = label_of, names, colours
        self._repaint()

    def set_predictions(self, predicted: np.ndarray | None, confidence: np.ndarray | None) -> None:
        self.predicted, self.confidence = predicted, confidence
        self._repaint()

    def _repaint(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1),
                                  [Qt.ItemDataRole.ToolTipRole])

    def item_at(self, row: int) -> int:
        return int(self.order[row]) if self.order is not None else row

    def row_of(self, item: int) -> int:
        if self.order is None:
            return item
        hits = np.flatnonzero(self.order == item)
        return int(hits[0]) if len(hits) else -1

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        if parent.isValid() or self.data_set is None:
            return 0
        return len(self.order) if self.order is not None else len(self.data_set)

    def set_side(self, side: int) -> None:
        self.side = side
        self._cache.clear()
        self._repaint()

    def thumbnail(self, item: int) -> QPixmap:
        pixmap = self._cache.get(item)
        if pixmap is None:
            pixmap = QPixmap.fromImage(array_to_qimage(self.data_set.images[item]))
            if pixmap.width() != self.side:
                # Larger than decoded: enlarged without smoothing, so pixels stay honest.
                pixmap = pixmap.scaled(self.side, self.side, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.FastTransformation
                                       if self.side > pixmap.width() else
                                       Qt.TransformationMode.SmoothTransformation)
            self._cache[item] = pixmap
            if len(self._cache) > THUMBNAIL_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(item)
        return pixmap

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.data_set is None:
            return None
        item = self.item_at(index.row())
        text_items = view_of(self.data_set).textual
        if role == Qt.ItemDataRole.DecorationRole and not text_items:
            return self.thumbnail(item)
        if role == Qt.ItemDataRole.DisplayRole and text_items:
            return snippet(self.data_set.texts[item], 140)
        if role == Qt.ItemDataRole.ToolTipRole:
            path = self.data_set.paths[item]
            lines = [self.data_set.items[item] if text_items else path.name]
            folder = int(self.data_set.labels[item])
            if folder >= 0:
                lines.append(f"folder: {self.data_set.class_names[folder]}")
            label = int(self.label_of[item]) if item < len(self.label_of) else -1
            if label >= 0:
                lines.append(f"label: {self.class_names[label]}")
            if self.predicted is not None and self.predicted[item] >= 0:
                lines.append(f"predicted: {self.class_names[self.predicted[item]]} "
                             f"({self.confidence[item]:.0%})")
            return "\n".join(lines)
        if role == Qt.ItemDataRole.UserRole:
            return str(self.data_set.paths[item])
        return None


class LabelDelegate(QStyledItemDelegate):
    """The thumbnail, then the user's label as a thick bar along the bottom with the class's
    number in a tab at its left (never a frame, which is what the selection looks like), and the
    classifier's prediction as a dot in the corner (faint when unsure)."""

    def __init__(self, model: GalleryModel, parent=None):
        super().__init__(parent)
        self.model = model

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        model = self.model
        item = model.item_at(index.row())
        rect: QRect = option.rect
        painter.save()
        label = int(model.label_of[item]) if item < len(model.label_of) else -1
        if 0 <= label < len(model.class_colours):
            colour = QColor(model.class_colours[label])
            painter.fillRect(QRect(rect.left() + 2, rect.bottom() - 7, rect.width() - 4, 6), colour)
            tab = QRect(rect.left() + 2, rect.bottom() - 19, 14, 13)
            painter.fillRect(tab, colour)
            painter.setPen(QPen(QColor(255, 255, 255) if colour.lightness() < 150 else QColor(0, 0, 0)))
            painter.drawText(tab, Qt.AlignmentFlag.AlignCenter, str(label + 1) if label < 9 else "+")
        if model.predicted is not None and item < len(model.predicted):
            predicted = int(model.predicted[item])
            if 0 <= predicted < len(model.class_colours):
                colour = QColor(model.class_colours[predicted])
                colour.setAlphaF(0.35 + 0.65 * float(model.confidence[item]))
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(colour)
                painter.drawEllipse(QRect(rect.right() - 13, rect.top() + 3, 10, 10))
        painter.restore()


class GalleryView(QWidget):
    """The gallery, a filter over it and, under it, a preview of the selected item."""

    item_selected = Signal(int)  # item index
    label_key = Signal(int)  # 1..9: label the selection with that class; 0: remove its label
    label_class = Signal(int)  # class position from the context menu; -1: remove the label

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = GalleryModel(self)
        self.suggested = np.zeros(0, np.int64)
        self.margin: np.ndarray | None = None
        self.filter = QComboBox()
        self.filter.addItems(FILTERS)
        self.filter.setToolTip("Which items the gallery shows. Keys 1-9 label the selected items "
                               "with that class; 0 or Backspace removes their labels")
        self.filter.currentIndexChanged.connect(self.apply_filter)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search names…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show the items whose path in the folder contains this text")
        self._search_timer = QTimer(self)  # one filter per pause in typing, not per key
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(250)
        self._search_timer.timeout.connect(self.apply_filter)
        self.search.textChanged.connect(self._search_timer.start)
        self._keys_lower: np.ndarray | None = None
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(*THUMBNAIL_SIDES)
        self.size_slider.setValue(64)
        self.size_slider.setMaximumWidth(110)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.valueChanged.connect(self.set_thumbnail_side)
        self.list = QListView()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setUniformItemSizes(True)  # lets the view skip measuring 100,000 items
        self.list.setLayoutMode(QListView.LayoutMode.Batched)
        # The scroll bar reaches the end only when the last batch is laid out: 500 a batch left a
        # million items scrollable over their first screens for most of a minute; 20,000 take
        # about 25 ms a batch (the window stays responsive) and a million are laid out in ~1.3 s.
        self.list.setBatchSize(20_000)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.list.setIconSize(QSize(64, 64))
        self.list.setGridSize(QSize(72, 72))
        self.list.setModel(self.model)
        self.list.setItemDelegate(LabelDelegate(self.model, self.list))
        self.list.installEventFilter(self)
        self.list.viewport().installEventFilter(self)
        # The selection's colour is not a class's: the default highlight blue was all but class
        # 1's blue (Tableau's), and a labelled item looked selected.
        palette = self.list.palette()
        palette.setColor(QPalette.ColorRole.Highlight, QColor(70, 70, 78))
        palette.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        self.list.setPalette(palette)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        self.preview = QLabel("Select an image to preview it")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(160)
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel("")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Two lines that never wrap (a wrapped path broke mid-word and pushed under the image):
        # the item's path in the folder, shortened in the middle to fit, whole in the tooltip.
        self.caption.setWordWrap(False)
        self.caption.setIndent(6)  # off the panel's edge
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
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
        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.size_slider)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(splitter)

    def set_data(self, data_set) -> None:
        text = view_of(data_set).textual
        # Texts read best as a list of one-line snippets; images as a grid of thumbnails.
        self.list.setViewMode(QListView.ViewMode.ListMode if text else QListView.ViewMode.IconMode)
        self.list.setGridSize(QSize())
        self._fit_grid()
        self.size_slider.setVisible(not text)
        self.list.setWordWrap(False)
        self.preview.setWordWrap(text)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop if text
                                  else Qt.AlignmentFlag.AlignCenter)
        self.model.set_data(data_set)
        self._keys_lower = None
        self.suggested = np.zeros(0, np.int64)
        self.margin = None
        self._fill_filters()
        self.filter.setCurrentIndex(0)
        self.preview.setText("Select an image to preview it")
        self.caption.setText("")

    # -- labels, predictions, filters ---------------------------------------------------------
    def set_thumbnail_side(self, side: int) -> None:
        self.model.set_side(side)
        self.list.setIconSize(QSize(side, side))
        self._fit_grid()

    def _fit_grid(self) -> None:
        """Cells share the row's width out, so the columns fill it instead of leaving a gutter
        of up to a cell's width at the right."""
        if self.list.viewMode() != QListView.ViewMode.IconMode:
            return
        cell = self.size_slider.value() + 8
        # A few pixels short of the width: a row exactly as wide as the viewport wraps its last
        # cell onto the next row.
        width = self.list.viewport().width() - 4
        fitted = QSize(max(cell, width // max(1, width // cell)), cell)
        if self.list.gridSize() != fitted:
            self.list.setGridSize(fitted)

    def _fill_filters(self) -> None:
        """The fixed filters, then one per folder class and one per label class."""
        data = self.model.data_set
        folders = list(data.class_names) if data is not None else []
        wanted = list(FILTERS) + [FOLDER_FILTER + n for n in folders] + \
            [LABEL_FILTER + n for n in self.model.class_names]
        present = [self.filter.itemText(i) for i in range(self.filter.count())]
        if wanted == present:
            return
        current = self.filter.currentText()
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItems(wanted)
        self.filter.setCurrentIndex(wanted.index(current) if current in wanted else 0)
        self.filter.blockSignals(False)
        if current not in wanted:
            self.apply_filter()

    def set_labels(self, label_of: np.ndarray, names: list[str], colours: list[QColor]) -> None:
        self.model.set_labels(label_of, names, colours)
        self._fill_filters()
        if self.filter.currentIndex() in (1, 2, 4) or self.filter.currentText().startswith(LABEL_FILTER):
            self.apply_filter()  # a newly labelled item leaves "Unlabelled" at once

    def set_predictions(self, predicted, confidence, margin) -> None:
        self.model.set_predictions(predicted, confidence)
        self.margin = margin
        if self.filter.currentIndex() == 4:
            self.apply_filter()

    def show_suggestions(self, items: np.ndarray) -> None:
        self.suggested = np.asarray(items, np.int64)
        if self.filter.currentIndex() == 3:
            self.apply_filter()
        else:
            self.filter.setCurrentIndex(3)
        if len(self.suggested):
            self.list.setCurrentIndex(self.model.index(0))

    def apply_filter(self) -> None:
        if self.model.data_set is None:
            return
        mode = self.filter.currentIndex()
        chosen = self.filter.currentText()
        labelled = self.model.label_of >= 0
        if chosen.startswith(FOLDER_FILTER):
            names = list(self.model.data_set.class_names)
            name = chosen[len(FOLDER_FILTER):]
            order = np.flatnonzero(np.asarray(self.model.data_set.labels) == names.index(name)) \
                if name in names else None
        elif chosen.startswith(LABEL_FILTER):
            name = chosen[len(LABEL_FILTER):]
            names = list(self.model.class_names)
            order = np.flatnonzero(self.model.label_of == names.index(name)) if name in names else None
        elif mode == 1:
            order = np.flatnonzero(labelled)
        elif mode == 2:
            order = np.flatnonzero(~labelled)
        elif mode == 3:
            order = self.suggested[~labelled[self.suggested]] if len(self.suggested) else self.suggested
        elif mode == 4 and self.margin is not None:
            unlabelled = np.flatnonzero(~labelled)
            order = unlabelled[np.argsort(self.margin[unlabelled], kind="stable")]
        else:
            order = None
        typed = self.search.text().strip().lower()
        if typed:
            hits = np.flatnonzero(np.char.find(self._searchable(), typed) >= 0)
            order = hits if order is None else order[np.isin(order, hits)]
        self.model.set_order(order)

    def _searchable(self) -> np.ndarray:
        if self._keys_lower is None:
            self._keys_lower = np.char.lower(np.asarray(item_keys(self.model.data_set), dtype=str))
        return self._keys_lower

    def selected_items(self) -> list[int]:
        rows = sorted(i.row() for i in self.list.selectionModel().selectedIndexes())
        return [self.model.item_at(r) for r in rows]

    def select(self, item: int) -> None:
        row = self.model.row_of(item)
        if row < 0:  # filtered out: show everything so the item can be shown
            self.filter.setCurrentIndex(0)
            row = item
        index = self.model.index(row)
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index)

    def select_items(self, items) -> None:
        selection = QItemSelection()
        for item in items:
            row = self.model.row_of(int(item))
            if row >= 0:
                index = self.model.index(row)
                selection.select(index, index)
        self.list.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _context_menu(self, position) -> None:
        """Right-click: label the selected items with any class (also past the ninth)."""
        if not self.selected_items():
            return
        menu = QMenu(self)
        for number, name in enumerate(self.model.class_names):
            action = menu.addAction(f"Label as {name}" + (f"\t{number + 1}" if number < 9 else ""))
            action.triggered.connect(lambda _=False, n=number: self.label_class.emit(n))
        if self.model.class_names:
            menu.addSeparator()
        remove = menu.addAction("Remove label\t0")
        remove.triggered.connect(lambda: self.label_class.emit(-1))
        if not self.model.class_names:
            menu.addAction("Add classes in the Labels panel first").setEnabled(False)
        menu.popup(self.list.viewport().mapToGlobal(position))
        self._menu = menu

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.list.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_grid()
        if watched is self.list and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
                self.label_key.emit(int(key - Qt.Key.Key_0))
                return True
            if key in (Qt.Key.Key_0, Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
                self.label_key.emit(0)
                return True
        return super().eventFilter(watched, event)

    def _set_caption(self, key: str, path: Path, detail: str) -> None:
        """`key`, the item's name in the folder, shortened in the middle to fit; `path` whole in
        the tooltip."""
        width = max(40, self.caption.width() - 6)
        elided = self.caption.fontMetrics().elidedText(key, Qt.TextElideMode.ElideMiddle, width)
        self.caption.setText(f"{elided}\n{detail}")
        self.caption.setToolTip(str(path))

    def _current_changed(self, current: QModelIndex, _previous) -> None:
        if not current.isValid():
            return
        item = self.model.item_at(current.row())
        path = Path(self.model.data_set.paths[item])
        if view_of(self.model.data_set).textual:
            text = self.model.data_set.texts[item]
            self.preview.setText(text if len(text) < 4000 else text[:4000] + "…")
            self._set_caption(self.model.data_set.items[item], path, f"{len(text.split()):,} words")
            self.item_selected.emit(item)
            return
        reader = QImageReader(str(path))
        reader.setAutoTransform(True)  # EXIF orientation, as training sees it
        size = reader.size()
        box = self.preview.size()
        if size.isValid() and (size.width() > box.width() or size.height() > box.height()):
            reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():
            image = array_to_qimage(self.model.data_set.images[item])
        pixmap = QPixmap.fromImage(image)
        if pixmap.width() < box.width() // 2 and pixmap.height() < box.height() // 2:
            # Small images (28 px) are enlarged without smoothing so pixels stay visible.
            pixmap = pixmap.scaled(box, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.FastTransformation)
        self.preview.setPixmap(pixmap)
        self._set_caption(path.relative_to(self.model.data_set.root).as_posix(), path,
                          f"{size.width()}x{size.height()} px" if size.isValid() else "")
        self.item_selected.emit(item)
