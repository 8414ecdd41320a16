"""A project is a folder: which data folder it trains on, and its runs. No Qt here."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslstudio.core.run_files import has_checkpoint
from sslstudio.core.config import read_toml, write_toml

PROJECT_FILE = "sslstudio-project.toml"


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
    def resumable(self) -> bool:
        return self.status in ("cancelled", "interrupted") and has_checkpoint(self.path)


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
        values = read_toml(file)
        return cls(path, values.get("name", path.name), values.get("data_dir", ""))

    def save(self) -> None:
        write_toml(self.path / PROJECT_FILE, {"name": self.name, "data_dir": self.data_dir,
                                              "format": 1})

    def set_data_dir(self, data_dir: str) -> None:
        from sslstudio.core.outputs import is_within

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
        return self.path / "cache"

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
        found = [summarize_run(p) for p in self.runs_dir.iterdir() if (p / "config.toml").exists()]
        return sorted(found, key=lambda r: r.modified, reverse=True)


def summarize_run(run_dir: Path) -> RunSummary:
    config = read_toml(run_dir / "config.toml").get("train", {})
    status_file = run_dir / "status.json"
    status, step = "interrupted", 0
    if status_file.exists():
        try:
            data = json.loads(status_file.read_text())
            status, step = data.get("status", status), int(data.get("step", 0))
        except (OSError, ValueError):
            pass
    else:
        history = read_metrics(run_dir)
        if len(history["step"]):
            step = int(history["step"][-1])
    modified = max((p.stat().st_mtime for p in run_dir.iterdir()), default=0.0)
    return RunSummary(run_dir, run_dir.name, config.get("objective", "?"),
                      config.get("backbone", "?"), status, step, modified)


def read_metrics(run_dir: Path) -> dict[str, np.ndarray]:
    """metrics.csv as one float array per column (NaN where a row has no value)."""
    path = Path(run_dir) / "metrics.csv"
    columns: dict[str, list[float]] = {}
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            names = reader.fieldnames or []
            columns = {name: [] for name in names}
            for row in reader:
                for name in names:
                    value = row.get(name) or ""
                    try:
                        columns[name].append(float(value) if value else float("nan"))
                    except ValueError:
                        columns[name].append(float("nan"))
    out = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    out.setdefault("step", np.zeros(0))
    return out


def read_snapshot(run_dir: Path) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / "embedding.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
