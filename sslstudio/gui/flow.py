"""Where the user is in the flow from a folder to an exported model, and what comes next.

One function reads the facts the window holds (the data, the runs, the labels, the classifiers)
and says, for each of the five steps, whether it is done, current or still to come, with a few
words; and names the next action. The flow bar shows it; a test can read it without a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

STEPS = ("Data", "Pretrain", "Label", "Classify", "Export")
DONE, CURRENT, TO_DO = "done", "current", "to do"
# Labels a class wants before a classifier's estimate means much; the flow asks for this many.
LABELS_PER_CLASS_HINT = 5


@dataclass(frozen=True)
class FlowFacts:
    items: int = 0  # usable items of the open folder (0: none open)
    item_noun: str = "images"
    scanning: bool = False
    job: str = ""  # the running job's kind ("train", "adapt", ...), "" when idle
    paused: bool = False  # the running job is paused
    runs_with_checkpoint: int = 0
    classes: int = 0  # classes with at least one label
    class_names: tuple[str, ...] = ()  # the project's classes, in key order (1-9)
    folder_classes: tuple[str, ...] = ()  # the folder's subfolder names, offered as classes
    labels_shown: bool = False  # the Labels panel is on screen: "Go to labels" has nothing to do
    labelled: int = 0
    classifiers: int = 0  # trained from the selected run
    current_classifier: str = ""
    exported: str = ""  # where the last export of this session went


@dataclass(frozen=True)
class FlowStep:
    title: str
    state: str  # DONE, CURRENT or TO_DO
    detail: str


@dataclass(frozen=True)
class FlowState:
    steps: tuple[FlowStep, ...]
    next_text: str  # a sentence: what to do now
    next_action: str  # "open", "train", "stop", "label", "classify", "export" or "" (nothing to press)
    next_button: str  # the words on the button for next_action

    def step(self, title: str) -> FlowStep:
        return next(s for s in self.steps if s.title == title)


def flow_state(facts: FlowFacts) -> FlowState:
    data_done = facts.items > 0
    pretrain_done = facts.runs_with_checkpoint > 0
    label_done = facts.classes >= 2
    classify_done = facts.classifiers > 0
    export_done = bool(facts.exported)
    training = facts.job in ("train",)

    details = {
        "Data": ("scanning…" if facts.scanning else
                 f"{facts.items:,} {facts.item_noun}" if data_done else "no folder open"),
        "Pretrain": ("paused" if training and facts.paused else "training…" if training else
                     f"{facts.runs_with_checkpoint} run{'s' if facts.runs_with_checkpoint != 1 else ''}"
                     if pretrain_done else "no run yet"),
        "Label": (f"{facts.labelled} labelled, {facts.classes} class{'es' if facts.classes != 1 else ''}"
                  if facts.labelled else "nothing labelled"),
        "Classify": (facts.current_classifier or f"{facts.classifiers} trained") if classify_done
        else "none yet",
        # The folder's name only: a whole path squeezed the bar's other steps at 1280 px.
        "Export": f"saved to {PurePath(facts.exported).name}" if export_done else "not yet",
    }
    done = {"Data": data_done, "Pretrain": pretrain_done, "Label": label_done,
            "Classify": classify_done, "Export": export_done}

    if facts.scanning:
        current, text, action, button = "Data", "Scanning the folder…", "", ""
    elif not data_done:
        current, text, action, button = ("Data", "Open a folder of images or texts (or Help > Open "
                                         "sample dataset) to begin.", "open", "Open a folder…")
    elif training and facts.paused:
        current, text, action, button = ("Pretrain", "Training is paused: Resume (Pause again) to "
                                         "go on, or stop it; the best encoder so far is kept.",
                                         "stop", "Stop training")
    elif training:
        current, text, action, button = ("Pretrain", "The encoder is learning your data: watch the "
                                         "curves and the map; stop when you like, the best "
                                         "encoder so far is kept.", "stop", "Stop training")
    elif not pretrain_done:
        current, text, action, button = ("Pretrain", "Pretrain an encoder on your folder: the "
                                         "defaults suit this machine.", "train", "Start training")
    elif not label_done:
        current, text, action, button = ("Label", *label_step(facts))
    elif not classify_done:
        few = facts.labelled < LABELS_PER_CLASS_HINT * facts.classes
        current, text, action, button = (
            "Classify", "Train a classifier on your labels" +
            (f" (about {LABELS_PER_CLASS_HINT} a class make its estimate worth reading)" if few else "")
            + ".", "classify", "Train classifier")
    elif not export_done:
        current, text, action, button = ("Export", "Export the classifier as ONNX, checked against "
                                         "PyTorch, with its preprocessing and class names.",
                                         "export", "Export…")
    else:
        current, text, action, button = ("Export", "Done: label more items or try another method "
                                         "to improve the estimate, then export again.", "export",
                                         "Export…")
    if facts.job and not training and not facts.scanning:
        text = f"Working ({facts.job})… " + text
        action, button = "", ""
    steps = tuple(FlowStep(title, CURRENT if title == current else DONE if done[title] else TO_DO,
                           details[title]) for title in STEPS)
    return FlowState(steps, text, action, button)


def label_step(facts: FlowFacts) -> tuple[str, str, str]:
    """The Label step's words and action for someone who has never labelled: classes first (the
    folder's subfolder names when it has them), then which key labels with which class."""
    defined = facts.class_names
    if not defined and facts.folder_classes:
        shown = ", ".join(facts.folder_classes[:4]) + (", …" if len(facts.folder_classes) > 4 else "")
        return (f"Name your classes first: take the folder's {len(facts.folder_classes)} subfolder "
                f"names ({shown}), or add your own in the Labels panel.", "folder_classes",
                "Use the folder names")
    if not defined:
        return ("Add your first class: one for each kind of item you want told apart (you will "
                "label a few of each).", "add_class", "Add a class…")
    if len(defined) < 2:
        return (f"Add a second class beside \u201c{defined[0]}\u201d: a classifier tells at least "
                "two apart.", "add_class", "Add a class…")
    keys = ", ".join(f"{number} {name}" for number, name in enumerate(defined[:9], 1))
    needed = "two classes" if facts.classes == 0 else "one more class"
    text = (f"Label a few items of {needed}: select them in the gallery or lasso them on the map, "
            f"then press the class's key ({keys}).")
    return (text, "", "") if facts.labels_shown else (text, "label", "Go to labels")
