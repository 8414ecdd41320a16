"""What the window shows of one open project, with no Qt: the project, its data, its runs and
their states, the selected run, the curves, the banner and the last export. Opening another
folder or project makes a new session, so nothing of the last one can show; the window renders
the session and forwards the user's actions to it. (Labels, the item map and classifiers are
the `LabellingSession`'s.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sslstudio.core.describe import status_word
from sslstudio.core.history import RunHistory
from sslstudio.core.project import Project, RunSummary

# The run warnings that stay in view as a banner: what changes what the run hands over.
BANNER_KINDS = {"collapse": "problem", "non_finite": "problem", "loss_zero": "problem",
                # An earlier encoder kept is news, not an error; so is how a student compares.
                "best_encoder": "notice", "summary": "notice"}


@dataclass(frozen=True)
class BannerMessage:
    text: str
    tone: str  # "problem" or "notice"
    run: str  # the run folder it speaks of ("" none)


@dataclass(frozen=True)
class RunRow:
    """A run as the runs list shows it."""

    summary: RunSummary
    status: str  # in the user's words: running, paused, completed, stopped, ...
    text: str


class ProjectSession:
    def __init__(self, project: Project | None = None):
        self.project = project
        self.data_set = None  # the folder as scanned; None before and during a scan
        self.history = RunHistory()  # the curves shown: the live run's, or the selected run's
        self.banner: BannerMessage | None = None
        self.selected_run: Path | None = None
        self.exported_to = ""  # where this project's last export went ("" none yet)
        self.exported_source = ""  # the classifier or run that export was made of
        self.map_after_run: Path | None = None  # a run just completed: its own map comes next
        if project is not None:
            self._read_last_export()

    def _read_last_export(self) -> None:
        # A model exported in an earlier session still counts as the flow's last step done, for
        # the run it was made of (its .json says which).
        exports = sorted((self.project.path / "exports").glob("**/*.onnx"),
                         key=lambda p: p.stat().st_mtime)
        if not exports:
            return
        self.exported_to = str(exports[-1].parent)
        try:
            model = json.loads(exports[-1].with_suffix(".json").read_text()).get("model", {})
            self.exported_source = str(model.get("adapted") or model.get("run") or "")
        except (OSError, ValueError, AttributeError):
            pass

    # -- runs ------------------------------------------------------------------------------
    def run_rows(self, live_run: str | None, paused: bool) -> list[RunRow]:
        """The project's runs, newest first, each in the words of the runs list. One source for
        a run's state: its folder, unless this window is training it right now (`live_run`)."""
        rows = []
        for summary in self.project.runs() if self.project else []:
            live_here = live_run is not None and summary.path == Path(live_run)
            status = ("paused" if paused else "running") if live_here else status_word(summary.status)
            step = "" if live_here else f", step {summary.step}"
            rows.append(RunRow(summary, status, f"{summary.name}  ·  {summary.objective} on "
                                                f"{summary.backbone}  ·  {status}{step}"))
        return rows

    def teacher_runs(self) -> list[tuple[str, str]]:
        """The project's finished runs, as Run setup offers them to distil from: (label, folder)."""
        return [(f"{summary.name} ({summary.objective} on {summary.backbone})", str(summary.path))
                for summary in (self.project.runs() if self.project else [])
                if summary.status == "completed" and summary.folder.has_checkpoint()]

    def select_run(self, run: Path | None) -> None:
        self.selected_run = Path(run) if run is not None else None
        if self.banner and self.banner.run and run is not None and Path(self.banner.run) != Path(run):
            self.banner = None  # it spoke of another run

    def run_completed(self, run_dir: Path) -> None:
        self.map_after_run = Path(run_dir)

    def take_map_after_run(self) -> Path | None:
        """The completed run whose map is still to be made, once."""
        mapped, self.map_after_run = self.map_after_run, None
        return mapped

    # -- banner ----------------------------------------------------------------------------
    def run_warning(self, kind: str, message: str, run: str) -> bool:
        """A run's warning; True when it is one that stays in view (the banner changed)."""
        tone = BANNER_KINDS.get(kind)
        if tone is None:
            return False
        self.banner = BannerMessage(message, tone, run or "")
        return True

    def dismiss_banner(self) -> None:
        self.banner = None

    # -- export ----------------------------------------------------------------------------
    def exported(self, folder: str, source: str) -> None:
        self.exported_to, self.exported_source = folder, source

    def export_of_run(self, run: Path | None) -> str:
        """Where the last export went, while it is of `run` (its encoder or one of its
        classifiers): after another run is made or chosen, Export is to do again."""
        if run is None or not self.exported_source:
            return ""
        source = Path(self.exported_source)
        return self.exported_to if source == run or run in source.parents else ""
