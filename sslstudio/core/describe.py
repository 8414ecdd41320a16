"""The words for every event a job yields, in one place, so the terminal and the app say the same.

Each event is described once, as text and a kind; the CLI and the GUI only decide where a kind goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sslstudio.core.events import (
    AdaptEstimate,
    AdaptFinished,
    AdaptPredictions,
    AdaptProgress,
    AdaptStarted,
    Checkpointed,
    EmbeddingSnapshot,
    EmbedFinished,
    EmbedProgress,
    ExportCheck,
    ExportFinished,
    ExportLatency,
    ExportProgress,
    FeaturesReady,
    MapProgress,
    MapReady,
    RunFinished,
    RunStarted,
    RunWarning,
    ScanFinished,
    ScanProgress,
    StepMetrics,
    ZeroShotFinished,
    ZeroShotPredictions,
)
from sslstudio.core.text import format_duration, format_loss

# How a job's status reads. "cancelled" is the word on disk (status.json) and in events; a person
# pressed Stop, so the words say stopped.
STATUS_WORDS = {"cancelled": "stopped"}


def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def stopped_aside(message: str) -> str:
    """What a stop message adds after "stopped by the user", as " (...)" or "": a job the user
    stopped reads "stopped by the user (nothing saved)", not "stopped (stopped by the user;
    nothing saved)"."""
    rest = message.removeprefix("stopped by the user").lstrip("; :,").strip()
    return f" ({rest})" if rest else ""

# progress: superseded by the next progress line (a terminal rewrites it; the app has bars and plots).
# note:     a line of the log.
# warning:  a line the user must not miss (a terminal sends it to stderr).
# detail:   worth a line in the app's session log, too chatty between a terminal's progress lines.
# data:     carries data for widgets; its text is only a label, never shown as a line.
Kind = Literal["progress", "note", "warning", "detail", "data"]


@dataclass(frozen=True)
class Description:
    text: str
    kind: Kind


def describe(event, total_steps: int = -1) -> Description:
    """`total_steps` comes from the run's RunStarted: StepMetrics alone does not know the budget."""
    match event:
        case ScanProgress(phase="scanning"):
            return Description(f"scanning {event.done}/{event.total} files, {event.skipped} skipped",
                               "progress")
        case ScanProgress():
            return Description(f"{event.phase} {event.done}/{event.total} {event.noun}", "progress")
        case ScanFinished():
            reasons = ", ".join(f"{n} {r}" for r, n in event.skipped_by_reason.items())
            extra = f" ({reasons})" if reasons else ""
            if event.lazy:
                return Description(
                    f"listed {event.total_files:,} files in {event.elapsed_s:.1f}s: thumbnails are "
                    "made as they are shown; unreadable files are found when a run scans them", "note")
            changes = event.changes_text()
            changes = f"; {changes}" if changes else ""
            return Description(f"scanned {event.total_files} files in {event.elapsed_s:.1f}s: "
                               f"{event.usable} usable, {event.skipped} skipped{extra}{changes}",
                               "note")
        case RunStarted():
            start = f", resuming at step {event.start_step}" if event.start_step else ""
            workers = f" x{event.world_size} processes" if event.world_size > 1 else ""
            plan = f"\n{event.plan}" if event.plan else ""
            return Description(f"training {event.objective} on {event.backbone} ({event.feature_dim}-d) "
                               f"on {event.device}{workers}: {event.num_items} items, batch "
                               f"{event.batch_size}{start} -> {event.run_dir}{plan}", "note")
        case StepMetrics():
            return Description(_step_line(event, total_steps), "progress")
        case EmbeddingSnapshot():
            return Description(f"embedding map at step {event.step}", "data")
        case RunWarning(kind="summary"):
            return Description(event.message, "note")
        case RunWarning():
            return Description(f"warning: {event.message}", "warning")
        case Checkpointed():
            return Description(f"checkpoint at step {event.step}", "detail")
        case RunFinished():
            if event.status == "cancelled":
                text = f"run stopped by the user at step {event.step}{stopped_aside(event.message)}"
            else:
                text = f"run {status_word(event.status)} at step {event.step}"
                if event.message:
                    text += f": {event.message}"
            if event.checkpoint:
                text += f"\ncheckpoint: {event.checkpoint}"
            return Description(text, "note")
        case EmbedProgress():
            return Description(f"embedding {event.done}/{event.total}", "progress")
        case EmbedFinished():
            return Description(f"wrote {event.count} x {event.dim} features to {event.path}", "note")
        case FeaturesReady():
            return Description(f"features of {len(event.items)} items", "data")
        case MapProgress():
            return Description(f"{event.phase}: {event.done}/{event.total}", "progress")
        case MapReady():
            how = (f"in {format_duration(event.elapsed_s)}" if event.elapsed_s
                   else "from the run's cache")
            return Description(f"{event.method} map of {len(event.items):,} items {how}", "note")
        case AdaptStarted():
            share = event.trainable_parameters / max(1, event.total_parameters)
            return Description(f"{event.method}: {event.num_labels} labels in {len(event.class_names)} "
                               f"classes; estimate by {event.scheme}; {event.trainable_parameters:,} of "
                               f"{event.total_parameters:,} parameters train ({share:.1%})", "note")
        case AdaptProgress():
            loss = "" if event.loss != event.loss else f" | loss {format_loss(event.loss)}"
            return Description(f"{event.method} {event.phase} {event.done}/{event.total}{loss}",
                               "progress")
        case AdaptEstimate():
            return Description(format_estimate(event), "note")
        case AdaptPredictions():
            return Description(f"predictions for {len(event.items)} items", "data")
        case AdaptFinished():
            where = f" -> {event.path}" if event.path else ""
            why = f" ({event.message})" if event.message else ""
            methods = event.method.split(",")
            what = (f"comparing {', '.join(methods[:-1])} and {methods[-1]}" if len(methods) > 1
                    else event.method)
            if event.status == "cancelled":
                return Description(f"{what} stopped by the user{stopped_aside(event.message)}{where}",
                                   "note")
            return Description(f"{what} {status_word(event.status)}{where}{why}", "note")
        case ZeroShotPredictions():
            return Description(f"zero-shot labels for {len(event.items)} items", "data")
        case ZeroShotFinished():
            where = f" -> {event.path}" if event.path else ""
            why = f" ({event.message})" if event.message else ""
            return Description(f"zero-shot {status_word(event.status)}{where}{why}", "note")
        case ExportProgress():
            return Description(f"{event.phase}: {event.message}", "note")
        case ExportCheck():
            return Description(_parity_line(event), "note")
        case ExportLatency():
            speedup = event.torch_ms / max(event.onnx_ms, 1e-9)
            return Description(f"latency ({event.variant}, batch {event.batch}, CPU): PyTorch "
                               f"{event.torch_ms:.2f} ms, onnxruntime {event.onnx_ms:.2f} ms "
                               f"({speedup:.2f}x)", "note")
        case ExportFinished():
            files = "".join(f"\n  {f}" for f in event.files)
            return Description(f"export {status_word(event.status)}: {event.message}{files}", "note")
        case _:
            # An event this module has not learnt yet: named in the app's log, where a developer
            # notices it, and kept out of a terminal's output.
            return Description(type(event).__name__, "detail")


def _step_line(event: StepMetrics, total_steps: int) -> str:
    total = f"/{total_steps}" if total_steps > 0 else ""
    monitor = "" if event.knn_accuracy != event.knn_accuracy else f" | kNN {event.knn_accuracy:.3f}"
    if event.probe_accuracy == event.probe_accuracy:
        monitor += f" | 10-shot probe {event.probe_accuracy:.3f}"
        if event.teacher_probe_accuracy == event.teacher_probe_accuracy:
            monitor += f" (teacher {event.teacher_probe_accuracy:.3f})"
    return (f"step {event.step}{total} | epoch {event.epoch} | loss {format_loss(event.loss)} | "
            f"lr {event.lr:.2e} | {event.samples_per_s:.0f} items/s{monitor} | "
            f"{event.progress * 100:.0f}% | ETA {format_duration(event.eta_s)}")


def _parity_line(event: ExportCheck) -> str:
    verdict = "PASSED" if event.passed else "FAILED"
    top1 = ("" if event.top1_agreement != event.top1_agreement
            else f", top-1 agreement {event.top1_agreement:.1%}")
    accuracy = ""
    if event.labelled_items:
        accuracy = (f"; accuracy on the {event.labelled_items} labelled items: PyTorch "
                    f"{event.labelled_accuracy_torch:.1%}, ONNX {event.labelled_accuracy_onnx:.1%}")
    return (f"parity ({event.variant}, {event.items} items of the folder): {verdict}: "
            f"max |difference| {event.max_abs_diff:.3g}, cosine mean {event.mean_cosine:.6f} "
            f"min {event.min_cosine:.6f}{top1}{accuracy} (needed {event.tolerance})")


def format_estimate(event: AdaptEstimate) -> str:
    """The headline, then a per-class table. The method leads the headline because the app
    compares several methods in one log."""
    trained = (f"; each fit trained {event.epochs} epoch{'s' * (event.epochs != 1)}"
               if event.epochs else "")
    if not event.estimated:
        return f"{event.method}: {event.scheme}"
    lines = [f"{event.method}: estimated accuracy {event.accuracy:.1%} (95% interval "
             f"{event.ci_low:.1%}-{event.ci_high:.1%}), balanced {event.balanced_accuracy:.1%}; "
             f"{event.scheme}{trained}"]
    if event.chance_words():
        lines[0] += f"; {event.chance_words()}"
    if event.caution:
        lines[0] += f"; caution: {event.caution}"
    width = max([len("class"), *(len(n) for n in event.class_names)])
    lines.append(f"  {'class':<{width}}  labels  recall  precision")
    for name, support, recall, precision in zip(event.class_names, event.support, event.recall,
                                                event.precision):
        lines.append(f"  {name:<{width}}  {support:>6}  {recall:>6.0%}  {precision:>9.0%}")
    return "\n".join(lines)
