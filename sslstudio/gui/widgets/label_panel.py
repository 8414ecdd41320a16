"""The Labels panel: the classes (add, rename, recolour, delete), which run's encoder labelling
uses, group discovery and suggestions. It shows state and emits requests; the window acts."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)


def swatch(colour: str) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(colour))
    return QIcon(pixmap)


ZEROSHOT_TIP = ("A model that reads items and text (CLIP for images, a sentence encoder for "
                "texts) gives every item the class whose description is nearest; you accept or "
                "correct")


NO_RUN_TEXT = ("Select a finished run in the Runs list: its encoder embeds the items when a "
               "button below needs it.")


class LabelPanel(QWidget):
    prepare_requested = Signal()
    add_requested = Signal()
    rename_requested = Signal(int)  # class id
    recolour_requested = Signal(int)
    delete_requested = Signal(int)
    find_groups_requested = Signal(int)  # k; 0: suggest k
    label_group_requested = Signal()
    suggest_requested = Signal(int)  # how many
    zeroshot_requested = Signal()
    accept_requested = Signal(str, float)  # "confident", "selected" or "group"; least confidence

    def __init__(self, parent=None):
        super().__init__(parent)
        # In a scroll area, as Run setup and the Classifier are: at 1280x800 the panel's last row
        # was cut off with no way to reach it. As wide as its rows need (see the end).
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        scroll.setWidget(body)
        outer.addWidget(scroll)
        self._body = body
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)

        encoder_box = QGroupBox("Encoder")
        encoder_layout = QVBoxLayout(encoder_box)
        self.encoder_text = QLabel(NO_RUN_TEXT)
        self.encoder_text.setWordWrap(True)
        self.prepare_button = QPushButton("Map every item with the selected run")
        self.prepare_button.setToolTip("Embeds every item with the run's encoder (kept for next "
                                       "time) and maps them all, so you can label on the map")
        self.prepare_button.clicked.connect(self.prepare_requested)
        encoder_layout.addWidget(self.encoder_text)
        encoder_layout.addWidget(self.prepare_button)

        classes_box = QGroupBox("Classes")
        classes_layout = QVBoxLayout(classes_box)
        self.class_list = QListWidget()
        self.class_list.setToolTip("The class that map clicks and lassos label with. In the gallery, "
                                   "keys 1-9 label the selected items with the class of that number")
        self.class_list.itemDoubleClicked.connect(lambda item: self.rename_requested.emit(self._id(item)))
        self.class_list.currentItemChanged.connect(lambda *_: self._update_buttons())
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add…")
        self.rename_button = QPushButton("Rename…")
        self.colour_button = QPushButton("Colour…")
        self.delete_button = QPushButton("Delete")
        self.add_button.clicked.connect(self.add_requested)
        self.rename_button.clicked.connect(lambda: self.rename_requested.emit(self.current_class_id()))
        self.colour_button.clicked.connect(lambda: self.recolour_requested.emit(self.current_class_id()))
        self.delete_button.clicked.connect(lambda: self.delete_requested.emit(self.current_class_id()))
        for button in (self.add_button, self.rename_button, self.colour_button, self.delete_button):
            buttons.addWidget(button)
        self.count_text = QLabel("")
        classes_layout.addWidget(self.class_list, 1)
        classes_layout.addLayout(buttons)
        classes_layout.addWidget(self.count_text)

        groups_box = QGroupBox("Discover groups (no labels needed)")
        groups_layout = QHBoxLayout(groups_box)
        self.k = QSpinBox()
        self.k.setRange(0, 100)
        self.k.setSpecialValueText("suggest k")
        self.k.setToolTip("How many groups k-means looks for; 'suggest k' picks the k with the best "
                          "silhouette score")
        self.find_groups_button = QPushButton("Find groups")
        self.find_groups_button.clicked.connect(lambda: self.find_groups_requested.emit(self.k.value()))
        self.label_group_button = QPushButton("Label selected item's group")
        self.label_group_button.setToolTip("Gives the current class to every item in the group of the "
                                           "item selected in the gallery; then fix its mistakes")
        self.label_group_button.clicked.connect(self.label_group_requested)
        groups_layout.addWidget(self.k)
        groups_layout.addWidget(self.find_groups_button)
        groups_layout.addWidget(self.label_group_button)

        suggest_box = QGroupBox("What to label next")
        suggest_layout = QHBoxLayout(suggest_box)
        self.suggest_count = QSpinBox()
        self.suggest_count.setRange(1, 500)
        self.suggest_count.setValue(20)
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip("Before a classifier: typical items of regions no label covers "
                                       "yet. After one: the items it is least sure of")
        self.suggest_button.clicked.connect(lambda: self.suggest_requested.emit(self.suggest_count.value()))
        suggest_layout.addWidget(self.suggest_count)
        suggest_layout.addWidget(self.suggest_button, 1)

        zeroshot_box = QGroupBox("Pre-labels from class descriptions (zero-shot)")
        zeroshot_layout = QVBoxLayout(zeroshot_box)
        self.zeroshot_button = QPushButton("Pre-label with a model…")
        self.zeroshot_button.clicked.connect(self.zeroshot_requested)
        self.zeroshot_text = QLabel("")
        self.zeroshot_text.setWordWrap(True)
        self.zeroshot_text.hide()
        accept_row = QHBoxLayout()
        self.accept_confidence = QSpinBox()
        self.accept_confidence.setRange(0, 100)
        self.accept_confidence.setValue(80)
        self.accept_confidence.setSuffix("%")
        self.accept_confidence.setToolTip("Accept pre-labels at least this sure")
        self.accept_confident_button = QPushButton("Accept above")
        self.accept_selected_button = QPushButton("Accept selected")
        self.accept_selected_button.setToolTip("Accept the pre-labels of the items selected in the gallery")
        self.accept_group_button = QPushButton("Accept group")
        self.accept_group_button.setToolTip("Accept the pre-labels in the group of the selected item "
                                            "(Find groups first)")
        self.accept_confident_button.clicked.connect(
            lambda: self.accept_requested.emit("confident", self.accept_confidence.value() / 100))
        self.accept_selected_button.clicked.connect(lambda: self.accept_requested.emit("selected", 0.0))
        self.accept_group_button.clicked.connect(lambda: self.accept_requested.emit("group", 0.0))
        for widget in (self.accept_confidence, self.accept_confident_button,
                       self.accept_selected_button, self.accept_group_button):
            accept_row.addWidget(widget)
        zeroshot_layout.addWidget(self.zeroshot_button)
        zeroshot_layout.addWidget(self.zeroshot_text)
        zeroshot_layout.addLayout(accept_row)

        layout.addWidget(encoder_box)
        layout.addWidget(classes_box, 1)
        layout.addWidget(groups_box)
        layout.addWidget(suggest_box)
        layout.addWidget(zeroshot_box)
        # The dock stays as wide as the rows of buttons need; only the height scrolls.
        scroll.setMinimumWidth(body.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width() + 2)
        self.has_pre_labels = False
        self.features_ready = False
        self._update_buttons()

    def sizeHint(self):  # noqa: N802 - Qt's name
        # What the rows want, as before the scroll area: the window lays its docks out by it
        # (with a scroll area's small hint the bottom docks took 120 px of the centre's height).
        return self._body.sizeHint().grownBy(self.layout().contentsMargins())

    def set_classes(self, classes, counts: dict[int, int]) -> None:
        current = self.current_class_id()
        self.class_list.blockSignals(True)
        self.class_list.clear()
        for number, cls in enumerate(classes, start=1):
            key = f"{number}  " if number <= 9 else "    "
            item = QListWidgetItem(swatch(cls.colour), f"{key}{cls.name}  ({counts.get(cls.id, 0)})")
            item.setData(Qt.ItemDataRole.UserRole, cls.id)
            self.class_list.addItem(item)
            if cls.id == current:
                self.class_list.setCurrentItem(item)
        if self.class_list.currentItem() is None and self.class_list.count():
            self.class_list.setCurrentRow(0)
        self.class_list.blockSignals(False)
        total = sum(counts.values())
        self.count_text.setText(f"{total} labelled items" if classes else
                                "Add a class to start labelling")
        self._update_buttons()

    def set_encoder(self, text: str, features_ready: bool) -> None:
        self.encoder_text.setText(text)
        self.features_ready = features_ready
        # Once every item is embedded there is nothing left to prepare; before, the buttons that
        # need features compute them themselves, so this one is only a shortcut to the map.
        self.prepare_button.setVisible(not features_ready)
        self._update_buttons()

    def set_features_available(self, available: bool) -> None:
        """Features are ready, or can be computed when a button needs them."""
        if available != self.features_ready:
            self.features_ready = available
            self._update_buttons()

    def current_class_id(self) -> int:
        item = self.class_list.currentItem()
        return self._id(item) if item is not None else -1

    def _id(self, item) -> int:
        return int(item.data(Qt.ItemDataRole.UserRole))

    def _update_buttons(self) -> None:
        has_class = self.class_list.currentItem() is not None
        for button in (self.rename_button, self.colour_button, self.delete_button):
            button.setEnabled(has_class)
        for button in (self.find_groups_button, self.suggest_button):
            button.setEnabled(self.features_ready)
        self.label_group_button.setEnabled(self.features_ready and has_class)
        self.zeroshot_button.setEnabled(self.class_list.count() >= 2)
        self.zeroshot_button.setToolTip(ZEROSHOT_TIP if self.class_list.count() >= 2
                                        else "Add two classes or more first: their names (or "
                                             "descriptions) are what items are matched to")
        for button in (self.accept_confident_button, self.accept_selected_button):
            button.setEnabled(self.has_pre_labels)
        self.accept_group_button.setEnabled(self.has_pre_labels and self.features_ready)

    def set_pre_labels(self, summary: str) -> None:
        """What the zero-shot pre-labels hold now; empty when there are none."""
        self.has_pre_labels = bool(summary)
        self.zeroshot_text.setText(summary)
        self.zeroshot_text.setVisible(bool(summary))  # no empty line under the button
        self._update_buttons()
