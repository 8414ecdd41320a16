"""A project is a folder: which data folder it trains on, and its runs. No Qt here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sslstudio.core.config import read_toml, write_toml
from sslstudio.core.outputs import is_within
from sslstudio.core.run.folder import PROJECT_CACHE, PROJECT_FILE, RunFolder


class ProjectError(ValueError):
    pass


@dataclass
class RunSummary:
    path: Path
    name: str
    objective: str
    backbone: str
    status: str  # completed, cancelled, failed, interrupted (no status written: crashed or killed)
    step: int
    modified: float

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def resumable(self) -> bool:
        return self.status in ("cancelled", "interrupted") and self.folder.has_checkpoint()


@dataclass
class Project:
    path: Path
    name: str
    data_dir: str = ""

    @classmethod
    def create(cls, path: Path, data_dir: str = "") -> "Project":
        path = Path(path).expanduser().resolve()
        if (path / PROJECT_FILE).exists():
            return cls.open(path)
        if path.exists() and not path.is_dir():
            raise ProjectError(f"{path} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        project = cls(path, path.name, data_dir)
        project.save()
        return project

    @classmethod
    def open(cls, path: Path) -> "Project":
        path = Path(path).expanduser().resolve()
        file = path / PROJECT_FILE
        if not file.exists():
            raise ProjectError(f"{path} is not an SSL Studio project (no {PROJECT_FILE})")
        try:
            values = read_toml(file)
        except (OSError, ValueError) as error:  # binary, cut short, not TOML
            raise ProjectError(f"{file} cannot be read as an SSL Studio project ({error}); "
                               "fix or remove that file, or open another folder") from None
        name, data_dir = values.get("name", path.name), values.get("data_dir", "")
        for key, value in (("name", name), ("data_dir", data_dir)):
            if not isinstance(value, str):
                raise ProjectError(f"{file}: {key} = {value!r} should be text in quotes (a "
                                   f"{'folder path' if key == 'data_dir' else 'name'}); fix that "
                                   "line, or open another folder")
        return cls(path, name, data_dir)

    def save(self) -> None:
        write_toml(self.path / PROJECT_FILE, {"name": self.name, "data_dir": self.data_dir,
                                              "format": 1})

    def set_data_dir(self, data_dir: str) -> None:
        if is_within(self.path, Path(data_dir)):
            # Runs, caches and labels would be written into the data folder, which stays read-only.
            raise ProjectError(f"the project {self.path} lies inside the data folder {data_dir}; "
                               "SSL Studio never writes into a data folder: keep the project elsewhere")
        self.data_dir = str(data_dir)
        self.save()

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.path / PROJECT_CACHE

    def new_run_dir(self, objective: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        candidate = self.runs_dir / f"{stamp}-{objective}"
        suffix = 2
        while candidate.exists():
            candidate = self.runs_dir / f"{stamp}-{objective}-{suffix}"
            suffix += 1
        return candidate

    def runs(self) -> list[RunSummary]:
        if not self.runs_dir.is_dir():
            return []
        found = [summarize_run(p) for p in self.runs_dir.iterdir() if RunFolder(p).is_run()]
        return sorted(found, key=lambda r: r.modified, reverse=True)


def summarize_run(run_dir: Path) -> RunSummary:
    folder = RunFolder(run_dir)
    try:
        settings = folder.train_settings()
        objective, backbone = settings.objective, settings.backbone
    except (ValueError, TypeError):  # a hand-edited config: the list still shows it
        objective = backbone = "?"
    status = folder.status()
    return RunSummary(folder.path, folder.path.name, objective, backbone, status.status,
                      status.step, folder.modified())
