"""The run setup panel: objective with its explanation, its knobs as a form generated from its
config dataclass (ranges, defaults and tooltips from the field metadata), and the run's settings."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from sslstudio.core.config import knobs
from sslstudio.gui.widgets.teacher_picker import TeacherPicker
from sslstudio.gui.widgets.wheel_guard import guard_wheel
from sslstudio.gui.modalities import VIEWS
import math
from sslstudio.core.run.config import CPU_MINUTES, TrainConfig
from PySide6.QtWidgets import QFileDialog
from sslstudio.core.config import ConfigError, validate, with_overrides

# The run's knobs that only text folders use, shown in their own group.
TEXT_KNOBS = ("text_field", "tokenizer", "vocab_size", "max_length", "text_layers", "text_width",
              "text_heads", "lexical_buckets", "lexical_dims")


def _decimals_for(value: float, low: float | None) -> int:
    """Enough decimals to show the default and the smallest allowed value (lr 1e-6 needs 7)."""

    smallest = min((abs(v) for v in (value, low or 0.0) if v), default=1.0)
    return int(min(8, max(2, 2 - math.floor(math.log10(smallest)))))


def editor_for(field: dataclasses.Field, value):
    """A widget for one knob, with its range and help as tooltip; returns (widget, getter, setter)."""
    meta = field.metadata
    tip = meta.get("help", "")
    low, high = meta.get("low"), meta.get("high")
    if low is not None or high is not None:
        tip += f"\nrange {low:g} to {high:g}, default {field.default}"
    if isinstance(field.default, bool):
        widget = QCheckBox()
        widget.setChecked(bool(value))
        getter, setter = widget.isChecked, widget.setChecked
    elif meta.get("choices"):
        widget = QComboBox()
        widget.addItems(list(meta["choices"]))
        widget.setCurrentText(str(value))
        getter, setter = widget.currentText, lambda v: widget.setCurrentText(str(v))
    elif isinstance(field.default, int):
        widget = QSpinBox()
        widget.setRange(int(low if low is not None else -2**31), int(min(high if high is not None else 2**31 - 1, 2**31 - 1)))
        widget.setValue(int(value))
        if low == 0 and "0: " in tip:
            # "repeats 0" read as none at all; 0 means the method's own choice, and says so.
            widget.setSpecialValueText("auto")
        getter, setter = widget.value, lambda v: widget.setValue(int(v))
    elif isinstance(field.default, float):
        widget = QDoubleSpinBox()
        widget.setDecimals(_decimals_for(float(field.default), low))
        widget.setRange(float(low if low is not None else -1e12), float(high if high is not None else 1e12))
        widget.setSingleStep(max(10 ** -widget.decimals(), abs(float(field.default)) / 10 or 0.1))
        widget.setValue(float(value))
        getter, setter = widget.value, lambda v: widget.setValue(float(v))
    elif isinstance(field.default, str):
        widget = QLineEdit(str(value))
        getter, setter = widget.text, lambda v: widget.setText(str(v))
    else:
        return None
    widget.setToolTip(tip)
    return widget, getter, setter


class KnobForm(QWidget):
    """Editors for a config dataclass's knobs; `values()` gives what differs from nothing."""

    def __init__(self, config_cls, values: dict | None = None, skip: tuple[str, ...] = (),
                 parent=None, only: tuple[str, ...] | None = None):
        super().__init__(parent)
        self.config_cls = config_cls
        self.editors: dict[str, tuple] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        defaults = config_cls()
        for field in knobs(config_cls):
            if field.name in skip or (only is not None and field.name not in only):
                continue
            value = (values or {}).get(field.name, getattr(defaults, field.name))
            made = editor_for(field, value)
            if made is None:
                continue
            self.editors[field.name] = made
            label = QLabel(field.name.replace("_", " "))
            label.setToolTip(made[0].toolTip())
            layout.addRow(label, made[0])
        guard_wheel(self)

    def values(self) -> dict:
        return {name: getter() for name, (_, getter, _) in self.editors.items()}

    def reset(self) -> None:
        defaults = self.config_cls()
        for name, (_, _, setter) in self.editors.items():
            setter(getattr(defaults, name))


def knobs_by_objective(saved: dict, objectives: dict[str, type]) -> dict[str, dict]:
    """Saved knob values keyed by objective name.

    Settings from before were keyed by the config class's name, which a refactor can rename and
    two objectives could share; such keys are read here once and saved under the name from then on.
    """
    objective_for_class = {cls.config_cls.__name__: name for name, cls in objectives.items()}
    by_name = {key: values for key, values in saved.items() if key not in objective_for_class}
    for class_name, name in objective_for_class.items():
        if class_name in saved and name not in by_name:
            by_name[name] = saved[class_name]
    return by_name


class RunSetupPanel(QWidget):
    changed = Signal()
    download_requested = Signal(str)  # a pretrained backbone's name

    def __init__(self, parent=None):
        super().__init__(parent)
        self.objectives: dict[str, type] = {}
        self.saved_knobs: dict[str, dict] = {}  # objective name -> knob values
        self.knob_form: KnobForm | None = None
        self.knob_form_objective = ""
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.loading = QLabel("Loading the training engine…")
        outer.addWidget(self.loading)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # The panel follows the dock's width: long choices are cut in the closed combo box (the
        # open list shows them whole), never a sideways scroll bar.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.body_layout = QVBoxLayout(body)

        method = QGroupBox("Method")
        method_layout = QVBoxLayout(method)
        self.objective = QComboBox()
        self.objective.currentTextChanged.connect(self._objective_changed)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        method_layout.addWidget(self.objective)
        method_layout.addWidget(self.explanation)
        self.knob_box = QGroupBox("Method knobs")
        self.knob_layout = QVBoxLayout(self.knob_box)
        reset = QPushButton("Reset knobs to defaults")
        reset.clicked.connect(lambda: self.knob_form and self.knob_form.reset())
        self.knob_layout.addWidget(reset)

        run = QGroupBox("Run")
        run_form = QFormLayout(run)
        self.backbone = QComboBox()
        self.backbone.setToolTip("The encoder being trained: from scratch, or pretrained by someone "
                                 "else (far stronger on a laptop) and continued on your folder")
        self.backbone.currentIndexChanged.connect(self._backbone_changed)
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("pretrained weights: .safetensors/.pth file, or model folder")
        self.weights.setToolTip("Start from these weights: a state dict file (read without running "
                                "code), or a Hugging Face text model folder (config.json, "
                                "tokenizer.json, model.safetensors)")
        self.weights_button = QPushButton("Choose…")
        self.weights_button.clicked.connect(self._choose_weights)
        self.weights.editingFinished.connect(self._objective_for_weights)
        self.download_button = QPushButton("Download…")
        self.download_button.setToolTip("Fetch the standard weights once, through timm's own source "
                                        "(Hugging Face), after asking")
        self.download_button.clicked.connect(lambda: self.download_requested.emit(
            self.backbone.currentData() or ""))
        self.download_button.hide()
        self.device = QComboBox()
        self.device.setToolTip("Where training runs; auto picks the largest GPU, else the CPU")
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 1024)
        self.image_size.setSpecialValueText("auto")
        self.image_size.setSuffix(" px")
        self.image_size.setToolTip("Training resolution; auto follows the data (28-64 px on a CPU)")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 65536)
        # "auto" is what the run's plan decides (256 at most, fewer to fit memory, the data or
        # the budget; the log says why): showing a number here would contradict the log.
        self.batch_size.setSpecialValueText("auto")
        self.batch_size.setToolTip("Images per step. auto: up to 256, fewer when memory, the "
                                   "folder's size or the time budget call for it; the plan in the "
                                   "log says the batch used and why")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.1)
        self.strength.setToolTip("Augmentation strength: crop scale, colour jitter, blur, grayscale, "
                                 "flip. 0 is none, 1 is SimCLR's full recipe")
        budget_row = QWidget()
        # Two lines, minutes over epochs: on one line the row alone was wider than the dock at
        # 1280 x 800, and the form was cut at its right edge.
        budget_layout = QGridLayout(budget_row)
        budget_layout.setContentsMargins(0, 0, 0, 0)
        self.by_minutes = QRadioButton("minutes")
        self.by_epochs = QRadioButton("epochs")
        group = QButtonGroup(self)
        group.addButton(self.by_minutes)
        group.addButton(self.by_epochs)
        self.by_minutes.setChecked(True)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.1, 100000)
        self.minutes.setValue(CPU_MINUTES)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100000)
        self.epochs.setValue(10)
        budget_layout.addWidget(self.minutes, 0, 0)
        budget_layout.addWidget(self.by_minutes, 0, 1)
        budget_layout.addWidget(self.epochs, 1, 0)
        budget_layout.addWidget(self.by_epochs, 1, 1)
        budget_layout.setColumnStretch(2, 1)
        self.labels = QCheckBox("Subfolders are classes (kNN monitor)")
        self.labels.setToolTip("Only for watching: folder names give a kNN accuracy while training; "
                               "the objective never sees them")
        run_form.addRow("Backbone", self.backbone)
        weights_row = QWidget()
        weights_layout = QHBoxLayout(weights_row)
        weights_layout.setContentsMargins(0, 0, 0, 0)
        weights_layout.addWidget(self.weights, 1)
        weights_layout.addWidget(self.weights_button)
        weights_layout.addWidget(self.download_button)
        run_form.addRow("Weights", weights_row)
        self.teacher = TeacherPicker()
        self.teacher.chosen.connect(self._teacher_chosen)
        run_form.addRow("Teacher", self.teacher)
        run_form.addRow("Device", self.device)
        run_form.addRow("Image size", self.image_size)
        run_form.addRow("Batch size", self.batch_size)
        run_form.addRow("Augmentation", self.strength)
        run_form.addRow("Budget", budget_row)
        run_form.addRow("", self.labels)

        self.text_box = QGroupBox("Text")
        self.text_layout = QVBoxLayout(self.text_box)
        self.text_form: KnobForm | None = None
        self.text_box.hide()
        self.modality = "image"

        self.body_layout.addWidget(method)
        self.body_layout.addWidget(self.knob_box)
        self.body_layout.addWidget(run)
        self.body_layout.addWidget(self.text_box)
        self.body_layout.addStretch(1)
        let_combos_shrink(self)
        guard_wheel(self)
        self.setEnabled(False)

    def populate(self, info: dict, choices: dict) -> None:
        """Fill the panel once the engine is loaded. `info` comes from `engine_info()`."""

        defaults = TrainConfig()
        self.all_objectives = info["objectives"]
        self.objective_modalities = info["objective_modalities"]
        self.objectives = self._objectives_for(self.modality)
        self.summaries = info["summaries"]
        self.all_backbones = info["backbones"]
        self.teacher.set_modality(self.modality, self.all_backbones)
        self.teacher.other_teachers = info.get("teachers", [])
        self.default_objectives = info["default_objectives"]
        self.continuing_objectives = info["continuing_objectives"]
        self._fill_backbones()
        self.text_form = KnobForm(TrainConfig, choices.get("text_knobs"), only=TEXT_KNOBS)
        self.text_layout.addWidget(self.text_form)
        self.device.clear()
        for name, description in info["devices"]:
            self.device.addItem(description, name)
        self.saved_knobs = knobs_by_objective(choices.get("knobs", {}), self.all_objectives)
        self.objective.blockSignals(True)
        self.objective.clear()
        self.objective.addItems(sorted(self.objectives))
        self.objective.blockSignals(False)
        self.saved_objectives = dict(choices.get("objectives_by_modality", {}))
        wanted = self.saved_objectives.get(self.modality, choices.get("objective"))
        if wanted not in self.objectives:
            wanted = self.default_objectives[self.modality]
        self.objective.setCurrentText(wanted)
        self._objective_changed(self.objective.currentText())
        self.default_backbones = info.get("default_backbones", {})
        # The encoder and its weights are remembered per kind of data: an image encoder's
        # weights file would not load into a text run, nor a text model folder into an image one.
        self.saved_encoders = dict(choices.get("encoders_by_modality", {}))
        if self.modality not in self.saved_encoders and choices.get("backbone"):
            self.saved_encoders[self.modality] = {"backbone": choices["backbone"],
                                                  "weights": choices.get("weights", "")}
        self._restore_encoder()
        self._set_combo_data(self.device, choices.get("device", "auto"))
        self.image_size.setValue(int(choices.get("image_size", 0)))
        self.batch_size.setValue(int(choices.get("batch_size", 0)))
        self.strength.setValue(float(choices.get("augmentation_strength", defaults.augmentation_strength)))
        self.minutes.setValue(float(choices.get("minutes", CPU_MINUTES)))
        self.epochs.setValue(int(choices.get("epochs", 10)))
        (self.by_epochs if choices.get("budget") == "epochs" else self.by_minutes).setChecked(True)
        self.labels.setChecked(bool(choices.get("labels_from_folders", True)))
        self._show_modality_widgets()
        self.loading.hide()
        self.setEnabled(True)

    def _fill_backbones(self) -> None:
        """auto, then "from scratch", then "pretrained" (with source, licence and whether the
        weights are on disk); headings are disabled items."""
        current = self.backbone.currentData()
        self.backbone.blockSignals(True)
        self.backbone.clear()
        self.backbone.addItem("auto", "auto")
        entries = [(n, v) for n, v in self.all_backbones.items() if v[1] == self.modality]
        scratch = [(n, v) for n, v in entries if not v[2]]
        pretrained = [(n, v) for n, v in entries if v[2]]
        for heading, group in (("— from scratch —", scratch), ("— pretrained —", pretrained)):
            if not group:
                continue
            self.backbone.addItem(heading, None)
            self.backbone.model().item(self.backbone.count() - 1).setEnabled(False)
            for name, (description, _, extra) in group:
                where = ""
                if extra:
                    where = (f"  [{extra['source']}, {extra['licence']}; "
                             f"{'weights on disk' if extra['cached'] else 'needs weights'}]")
                self.backbone.addItem(f"{name}: {description}{where}", name)
        self._set_combo_data(self.backbone, current or "auto")
        self.backbone.blockSignals(False)
        self._backbone_changed()

    def _backbone_changed(self, *_args) -> None:
        name = self.backbone.currentData()
        entry = self.all_backbones.get(name) if hasattr(self, "all_backbones") else None
        extra = entry[2] if entry else None
        self.download_button.setVisible(bool(extra) and not extra.get("cached")
                                        and extra.get("download", True))
        if extra and extra.get("cached") and not self.weights.text():
            self.weights.setText(extra["cached"])

    def _choose_weights(self) -> None:
        if VIEWS[self.modality].weights_in_folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a Hugging Face model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose pretrained weights", "",
                                                  "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)")
        if path:
            self.weights.setText(path)
            self._objective_for_weights()

    def _objective_for_weights(self) -> None:
        """An objective that trains an encoder of its own (skip-gram) cannot continue a
        pretrained one: offer the one that can."""
        if not hasattr(self, "all_objectives"):
            return  # the engine has not loaded yet; populate() chooses then
        current = self.all_objectives.get(self.objective.currentText())
        if self.weights.text().strip() and getattr(current, "backbone", ""):
            self.objective.setCurrentText(self.continuing_objectives[self.modality])

    def _teacher_chosen(self) -> None:
        """Distil from the teacher chosen: the method becomes distillation and the backbone the
        student (auto: the modality's small one), not the encoder a continued run starts from."""
        if not self.teacher.text() or not hasattr(self, "all_objectives"):
            return
        distill = next((n for n in self.objectives
                        if getattr(self.objectives[n], "needs_teacher", False)), "")
        if distill and self.objective.currentText() != distill:
            self.objective.setCurrentText(distill)
            self._set_combo_data(self.backbone, "auto")
            self.weights.clear()
            # A budget the user never changed becomes distillation's own.
            own_minutes = self.objectives[distill].cpu_minutes.get(self.modality)
            if own_minutes and self.minutes.value() == CPU_MINUTES:
                self.minutes.setValue(own_minutes)
        self.changed.emit()

    def mark_downloaded(self, name: str, path: str) -> None:
        description, modality, extra = self.all_backbones[name]
        self.all_backbones[name] = (description, modality, {**extra, "cached": path})
        if self.backbone.currentData() == name:
            # Only for the encoder chosen now: the dialog downloads others too, and their
            # weights would not load into this one.
            self.weights.setText(path)
        self._fill_backbones()

    def _objectives_for(self, modality: str) -> dict:
        return {n: c for n, c in self.all_objectives.items() if modality in self.objective_modalities[n]}

    def set_modality(self, modality: str) -> None:
        """Offer what trains on this kind of data: its objectives, backbones and knobs."""
        if modality == self.modality or not hasattr(self, "all_objectives"):
            self.modality = modality
            return
        self.saved_objectives[self.modality] = self.objective.currentText()
        self.saved_encoders[self.modality] = self._encoder_choice()
        self.modality = modality
        self.teacher.set_modality(modality, self.all_backbones)
        self.objectives = self._objectives_for(modality)
        self.objective.blockSignals(True)
        self.objective.clear()
        self.objective.addItems(sorted(self.objectives))
        self.objective.blockSignals(False)
        self.objective.setCurrentText(self.saved_objectives.get(modality, self.default_objectives[modality]))
        self._objective_changed(self.objective.currentText())
        self._fill_backbones()
        self._restore_encoder()
        self._show_modality_widgets()

    def _encoder_choice(self) -> dict:
        return {"backbone": self.backbone.currentData() or "auto", "weights": self.weights.text().strip()}

    def _restore_encoder(self) -> None:
        """This kind of data's encoder as last chosen, else its default (weights from the cache)."""
        saved = self.saved_encoders.get(self.modality, {})
        self.weights.setText(saved.get("weights", ""))
        self._set_combo_data(self.backbone, saved.get("backbone") or self.default_backbones.get(self.modality, "auto"))
        self._backbone_changed()

    def _show_modality_widgets(self) -> None:
        view = VIEWS[self.modality]
        self.text_box.setVisible(view.text_knobs)
        for widget in (self.image_size, self.strength):
            widget.setEnabled(view.image_knobs)

    @staticmethod
    def _set_combo_data(combo: QComboBox, value) -> None:
        index = combo.findData(value)
        combo.setCurrentIndex(max(0, index))

    def _objective_changed(self, name: str) -> None:
        if name not in self.objectives:
            return
        if self.knob_form is not None:
            self.saved_knobs[self.knob_form_objective] = self.knob_form.values()
            # Hidden and deleted in place: unparenting would flash it up as a top-level window.
            self.knob_layout.removeWidget(self.knob_form)
            self.knob_form.hide()
            self.knob_form.deleteLater()
        self.knob_form = KnobForm(self.objectives[name].config_cls, self.saved_knobs.get(name))
        let_combos_shrink(self.knob_form)
        self.knob_form_objective = name
        self.knob_layout.insertWidget(0, self.knob_form)
        self.explanation.setText(self.summaries.get(name, ""))
        self.changed.emit()

    def choices(self) -> dict:
        """Everything the user picked, as plain values (saved in QSettings between sessions)."""
        knob_values = dict(self.saved_knobs)
        if self.knob_form is not None:
            knob_values[self.knob_form_objective] = self.knob_form.values()
        by_modality = dict(getattr(self, "saved_objectives", {}))
        by_modality[self.modality] = self.objective.currentText()
        encoders = {**getattr(self, "saved_encoders", {}), self.modality: self._encoder_choice()}
        return {
            "objective": self.objective.currentText(),
            "objectives_by_modality": by_modality,
            "text_knobs": self.text_form.values() if self.text_form is not None else {},
            "knobs": knob_values,
            "backbone": self.backbone.currentData(),
            "weights": self.weights.text().strip(),
            "teacher": self.teacher.text(),
            "encoders_by_modality": encoders,
            "device": self.device.currentData(),
            "image_size": self.image_size.value(),
            "batch_size": self.batch_size.value(),
            "augmentation_strength": self.strength.value(),
            "minutes": self.minutes.value(),
            "epochs": self.epochs.value(),
            "budget": "epochs" if self.by_epochs.isChecked() else "minutes",
            "labels_from_folders": self.labels.isChecked(),
        }

    def build_configs(self, data_dir: str, out_dir: str):
        """(TrainConfig, objective config) from the form; raises ConfigError on a bad value."""

        choice = self.choices()
        name = choice["objective"]
        objective_cls = self.objectives[name]
        objective_config = with_overrides(objective_cls.config_cls(), choice["knobs"].get(name, {}))
        by_epochs = choice["budget"] == "epochs"
        train_config = TrainConfig(
            data=data_dir, out=out_dir, objective=name, backbone=choice["backbone"] or "auto",
            device=choice["device"] or "auto", image_size=choice["image_size"],
            batch_size=choice["batch_size"], augmentation_strength=choice["augmentation_strength"],
            epochs=choice["epochs"] if by_epochs else 0,
            minutes=0.0 if by_epochs else choice["minutes"],
            labels_from_folders=choice["labels_from_folders"], weights=choice["weights"],
            teacher=choice["teacher"] if getattr(objective_cls, "needs_teacher", False) else "")
        if getattr(objective_cls, "needs_teacher", False) and not train_config.teacher:
            raise ConfigError(f"{name} needs a teacher: choose one with Distil from… (a finished "
                              "run, a pretrained encoder, a model folder or a weights file)")
        if VIEWS[self.modality].text_knobs:
            train_config = with_overrides(train_config, choice["text_knobs"])
        validate(train_config)
        validate(objective_config)
        return train_config, objective_config


def let_combos_shrink(widget: QWidget) -> None:
    """Combo boxes sized by their longest entry would make the panel wider than its dock."""
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)


def engine_info() -> dict:
    """Objectives, backbones and devices; imports torch, so call it off the GUI thread."""
    from sslstudio.core.adapt import ADAPTERS
    from sslstudio.core.backbones import BACKBONES
    from sslstudio.core.backbones.pretrained import cached_weights
    from sslstudio.core.devices import list_devices, resolve_device
    from sslstudio.core.objectives import OBJECTIVES
    from sslstudio.core.preprocess import PREPROCESSES, objective_modalities

    best = str(resolve_device("auto"))
    backbones = {}
    for name in BACKBONES.names():
        spec = BACKBONES.get(name)
        if name.startswith("bench_"):
            continue
        extra = None
        if spec.pretrained is not None:
            found = cached_weights(name)
            extra = {"source": spec.pretrained.source, "licence": spec.pretrained.licence,
                     "cached": str(found) if found else "", "hub": spec.pretrained.hf_hub_id,
                     "megabytes": spec.pretrained.download_megabytes}
        elif name == "pretrained_bert":
            from sslstudio.core.backbones.pretrained import (
                TEXT_ENCODER_DOWNLOAD,
                cached_text_encoder,
                cached_text_models,
            )

            # The offered sentence encoder first; else any BERT-family folder in the cache.
            found = cached_text_encoder() or next(iter(cached_text_models()), None)
            extra = {"source": "sentence-transformers, or a Hugging Face model folder you choose",
                     "licence": TEXT_ENCODER_DOWNLOAD["licence"], "cached": str(found) if found else "",
                     "hub": TEXT_ENCODER_DOWNLOAD["repo"], "megabytes": TEXT_ENCODER_DOWNLOAD["megabytes"],
                     "offer": f"{TEXT_ENCODER_DOWNLOAD['title']}: English sentence encoder, for folders of texts",
                     "offer_source": "1 billion sentence pairs"}
        backbones[name] = (spec.description, spec.modality, extra)
    devices = [("auto", f"auto ({best})")]
    for device in list_devices():
        memory = f", {device.memory_bytes / 2**30:.1f} GiB" if device.memory_bytes else ""
        devices.append((device.name, f"{device.name}: {device.description}{memory}"))
    objectives = {name: OBJECTIVES.get(name) for name in OBJECTIVES.names()}
    from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder

    clip = cached_clip_folder()
    # Teachers that are no backbone of their own: a CLIP's image tower.
    teachers = [(f"{CLIP_DOWNLOAD['title']} image tower", "image", str(clip))] if clip else []
    return {
        "teachers": teachers,
        "objectives": objectives,
        "summaries": {name: cls.summary for name, cls in objectives.items()},
        "objective_modalities": {name: objective_modalities(cls) for name, cls in objectives.items()},
        "backbones": backbones,
        # On a CPU a pretrained encoder whose weights are already on disk, where that beat any
        # from scratch.
        "default_backbones": {
            modality: next((n for n, v in backbones.items() if v[2] and v[2]["cached"]
                            and v[1] == modality), "auto")
            if best == "cpu" and PREPROCESSES.get(modality).pretrained_by_default_on_cpu else "auto"
            for modality in PREPROCESSES.names()},
        "devices": devices,
        "default_objectives": {name: PREPROCESSES.get(name).default_objective
                               for name in PREPROCESSES.names()},
        "continuing_objectives": {name: PREPROCESSES.get(name).continuing_objective
                                  for name in PREPROCESSES.names()},
        # Linear first: the fastest, and the best with very few labels.
        "adapters": {name: ADAPTERS.get(name) for name in
                     ["linear"] + [n for n in ADAPTERS.names() if n != "linear"]},
    }
