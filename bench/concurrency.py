"""Concurrency benchmark: many commands started at random moments on one project and one run.

    python bench/faults.py concurrency [--trials 8] [--processes 6] [--window 3] [--seed 0]
                                       [--threads 1] [--workdir DIR] [--keep] [--json PATH]

A project is made on a copy of the bundled sample with one finished run R in it. Each trial
then starts --processes commands, each at a moment drawn uniformly in the first --window
seconds, each drawn from:

  train-new      train --project P                    (a new run in the project)
  train-twin     train --out P/runs/twin              (the same named run as the others of its kind)
  resume         train --resume R --epochs E+k        (the one run, extended)
  adapt          adapt R                              (the default name: TIME-METHOD)
  adapt-shared   adapt R --out W/adapted/shared       (one named adapted model)
  embed          embed R --out W/features/shared.npy  (one named features file)
  export         export R --out W/exports/shared.onnx (one named export)

and waits for all of them. A command may succeed (exit 0), be refused (exit 2, naming who
holds what it wants to write, or that the output exists), or fail otherwise (counted). After
each trial every output is checked:

  mixed folders  a run whose config, checkpoint, status and metrics disagree (the checkpoint's
                 step, status.json's step and the last metrics row differ, or metrics steps
                 repeat or go back); an adapted model whose listed files are missing or whose
                 estimate and predictions do not match its adapted.toml; an export whose .json
                 and the metadata inside its .onnx differ; features whose rows and paths differ
  lost results   a command that exited 0 and named an output that is not there, not whole, or
                 was later replaced by another process (its run was changed by a later writer
                 without a resume, its adapted model or export overwritten)
  leftovers      any partial, temporary, lock or set-aside file left once every command ended
                 (the project's own lock file, left in place by design and empty, excepted)

Exit 0 when every trial has no mixed folder, no lost result, no leftover and no command that
failed other than by a refusal.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "samples" / "fashion-mnist"
KINDS = ("train-new", "train-twin", "resume", "adapt", "adapt-shared", "embed", "export")
TRAIN = ["--backbone", "small_cnn", "--image-size", "28", "--batch-size", "32", "--quiet"]
LEFTOVER = re.compile(r"\.partial|\.tmp|sslstudio-lock|\.old$|sslstudio-probe")


@dataclass
class Command:
    kind: str
    start_s: float
    argv: list[str]
    rc: int | None = None
    refused: str = ""  # "held" (another writer), "exists", or "" when not refused
    output: str = ""   # what it says it wrote, when it exited 0
    tail: str = ""


@dataclass
class TrialResult:
    index: int
    commands: list[Command] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def sslstudio(*args: str) -> list[str]:
    return [sys.executable, "-m", "sslstudio", *args]


def setup(workdir: Path, env: dict) -> dict:
    data = workdir / "data"
    shutil.copytree(SAMPLE, data, ignore=shutil.ignore_patterns("LICENSE"))
    project = workdir / "project"
    subprocess.run(sslstudio("train", "--project", str(project), "--data", str(data), "--epochs", "1",
                             *TRAIN), check=True, env=env, capture_output=True)
    run = next((project / "runs").iterdir())
    labels = workdir / "labels.csv"
    rows = [f"{p.relative_to(data).as_posix()},{p.parent.name}"
            for folder in sorted(data.iterdir()) for p in sorted(folder.glob("*.png"))[:5]]
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    return {"data": data, "project": project, "run": run, "labels": labels}


def command_for(kind: str, made: dict, workdir: Path, epochs: int) -> list[str]:
    """`epochs` differs between commands of a kind, so that two writers of one run would leave
    a config, a checkpoint and a status that disagree (two identical writers leave no trace)."""
    data, project, run, labels = made["data"], made["project"], made["run"], made["labels"]
    return {
        "train-new": sslstudio("train", "--project", str(project), "--epochs", "1", *TRAIN),
        "train-twin": sslstudio("train", "--data", str(data), "--out", str(project / "runs" / "twin"),
                                "--epochs", str(1 + epochs % 3), *TRAIN),
        "resume": sslstudio("train", "--resume", str(run), "--epochs", str(epochs), "--quiet"),
        "adapt": sslstudio("adapt", str(run), "--data", str(data), "--labels", str(labels)),
        "adapt-shared": sslstudio("adapt", str(run), "--data", str(data), "--labels", str(labels),
                                  "--out", str(workdir / "adapted" / "shared")),
        "embed": sslstudio("embed", str(run), "--data", str(data), "--out",
                           str(workdir / "features" / "shared.npy")),
        "export": sslstudio("export", str(run), "--out", str(workdir / "exports" / "shared.onnx")),
    }[kind]


def run_trial(index: int, rng: random.Random, made: dict, workdir: Path, env: dict, args) -> TrialResult:
    result = TrialResult(index)
    # Each trial's resumes extend the run to 2-4 epochs past the trial's number, each its own.
    commands = sorted((Command(kind, rng.uniform(0, args.window),
                               command_for(kind, made, workdir, 2 + index + rng.randrange(3)))
                       for kind in (rng.choice(KINDS) for _ in range(args.processes))),
                      key=lambda c: c.start_s)
    result.commands = commands
    logs = workdir / "logs" / f"trial{index}"
    logs.mkdir(parents=True)
    started = time.monotonic()
    running = []
    for number, command in enumerate(commands):
        time.sleep(max(0.0, command.start_s - (time.monotonic() - started)))
        log = open(logs / f"{number}-{command.kind}.log", "w+")
        running.append((command, log, subprocess.Popen(command.argv, stdout=log, stderr=subprocess.STDOUT,
                                                       env=env, cwd=workdir)))
    for command, log, process in running:
        command.rc = process.wait(timeout=600)
        log.seek(0)
        text = log.read()
        log.close()
        command.tail = text.strip().splitlines()[-1] if text.strip() else ""
        if command.rc == 2:
            command.refused = ("held" if ("being written by" in text or "is open in" in text) else
                               "exists" if ("already" in text or "exists" in text) else "")
            if not command.refused:
                result.failed.append(f"{command.kind}: {command.tail}")
        elif command.rc != 0:
            result.failed.append(f"{command.kind} exit {command.rc}: {command.tail}")
        else:
            command.output = output_named(command.kind, text, made, workdir)
    result.wall_s = time.monotonic() - started
    check_outputs(result, made, workdir)
    return result


def output_named(kind: str, text: str, made: dict, workdir: Path) -> str:
    if kind.startswith("train") or kind == "resume":
        found = re.findall(r"-> (\S+)", text)
        return found[-1] if found else ""
    if kind.startswith("adapt"):
        found = re.findall(r"completed -> (\S+)", text)
        return found[-1] if found else ""
    if kind == "embed":
        return str(workdir / "features" / "shared.npy")
    return str(workdir / "exports" / "shared.onnx")


# -- checks ----------------------------------------------------------------------------------------
def check_outputs(result: TrialResult, made: dict, workdir: Path) -> None:
    from sslstudio.core.run.checkpoint import read_checkpoint
    from sslstudio.core.run.folder import AdaptedFolder, RunFolder

    runs = [p for p in (made["project"] / "runs").iterdir() if RunFolder(p).is_run()]
    for run in runs:
        folder = RunFolder(run)
        steps = folder.metrics()["step"]
        status = folder.status()
        try:
            checkpoint_step = json.loads(read_checkpoint(folder.checkpoint_path).metadata["loop"])["step"]
        except Exception as error:  # noqa: BLE001 - a damaged checkpoint is a finding
            result.mixed.append(f"{run.name}: checkpoint unreadable ({error})")
            continue
        if not len(steps) or (np.diff(steps) <= 0).any():
            result.mixed.append(f"{run.name}: metrics steps repeat or go back")
        elif not (status.step == checkpoint_step == int(steps[-1])):
            result.mixed.append(f"{run.name}: status step {status.step}, checkpoint step "
                                f"{checkpoint_step}, last metrics step {int(steps[-1])}")
        # A completed epochs run ends at epochs x steps per epoch of its own config: a config
        # written by one process beside a checkpoint of another does not.
        train = folder.settings()["train"]
        usable = json.loads((run / RunFolder.SCAN_REPORT).read_text())["usable"]
        expected = int(train["epochs"]) * (usable // int(train["batch_size"]))
        if status.status == "completed" and train["epochs"] and checkpoint_step != expected:
            result.mixed.append(f"{run.name}: config.toml asks {train['epochs']} epochs ({expected} "
                                f"steps), the checkpoint is at step {checkpoint_step}")
    adapted = [p for p in (made["run"] / "adapted").glob("*") if AdaptedFolder(p).is_adapted()]
    adapted += [p for p in [workdir / "adapted" / "shared"] if AdaptedFolder(p).is_adapted()]
    for path in adapted:
        folder = AdaptedFolder(path)
        info = folder.info()
        missing = [n for n in info.get("files", {}).get("written", []) if not (path / n).exists()]
        estimate = json.loads(folder.estimate_path.read_text())
        rows = sum(1 for _ in csv.reader(open(folder.predictions_path))) - 1
        if missing or estimate["method"] != info["adapt"]["method"] or rows != 300:
            result.mixed.append(f"{path.name}: missing {missing}, estimate of {estimate['method']}, "
                                f"{rows} predictions")
    onnx_path = workdir / "exports" / "shared.onnx"
    if onnx_path.exists():
        import onnx

        inside = json.loads({p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}["sslstudio"])
        beside = json.loads(onnx_path.with_suffix(".json").read_text())
        if inside.get("created") != beside.get("created"):
            result.mixed.append("shared.onnx and shared.json come from two exports")
    features = workdir / "features" / "shared.npy"
    if features.exists():
        lines = features.with_suffix(".paths.txt").read_text().splitlines()
        if np.load(features).shape[0] != len(lines):
            result.mixed.append("shared.npy and shared.paths.txt differ in rows")
    check_results(result, made)
    for path in workdir.rglob("*"):
        if LEFTOVER.search(path.name) and "logs" not in path.parts:
            result.leftovers.append(str(path.relative_to(workdir)))
    lock = made["project"] / ".sslstudio.lock"
    if lock.exists() and lock.read_text():
        result.leftovers.append("project/.sslstudio.lock still names a holder")


def check_results(result: TrialResult, made: dict) -> None:
    """Every output a successful command named is there and whole, and no later process replaced
    it: a run a later train (not a resume) wrote again, an adapted model or an export overwritten
    (no command here passes --overwrite, so any such replacement would be silent)."""
    from sslstudio.core.run.folder import AdaptedFolder, RunFolder

    succeeded = [c for c in result.commands if c.rc == 0]
    for command in succeeded:
        path = Path(command.output) if command.output else None
        if path is None or not path.exists():
            result.lost.append(f"{command.kind}: said it wrote {command.output or '(nothing named)'}")
            continue
        if command.kind.startswith("adapt") and not AdaptedFolder(path).is_complete():
            result.lost.append(f"{command.kind}: {path} is not a whole adapted model")
        if command.kind in ("train-new", "train-twin") and not RunFolder(path).has_checkpoint():
            result.lost.append(f"{command.kind}: {path} has no checkpoint")
    for kind in ("adapt-shared", "embed", "export", "train-twin"):
        writers = [c for c in succeeded if c.kind == kind]
        if len(writers) > 1:  # the second could only have written by replacing the first's
            result.lost.append(f"{kind}: {len(writers)} commands each wrote the one output")
    named = [c.output for c in succeeded if c.kind == "adapt"]
    if len(set(named)) != len(named):
        result.lost.append("adapt: two commands reported the same default folder")


def summarize(results: list[TrialResult]) -> dict:
    commands = [c for r in results for c in r.commands]
    return {
        "trials": len(results), "commands": len(commands),
        "succeeded": sum(c.rc == 0 for c in commands),
        "refused_held": sum(c.refused == "held" for c in commands),
        "refused_exists": sum(c.refused == "exists" for c in commands),
        "failed": sum(len(r.failed) for r in results),
        "mixed_folders": sum(len(r.mixed) for r in results),
        "results_lost": sum(len(r.lost) for r in results),
        "leftovers": sum(len(r.leftovers) for r in results),
        "wall_s": round(sum(r.wall_s for r in results), 1),
        "by_kind": {kind: {"started": sum(c.kind == kind for c in commands),
                           "succeeded": sum(c.kind == kind and c.rc == 0 for c in commands),
                           "refused": sum(c.kind == kind and bool(c.refused) for c in commands)}
                    for kind in KINDS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/faults.py concurrency", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--processes", type=int, default=6, help="commands per trial")
    parser.add_argument("--window", type=float, default=3.0, help="start moments are drawn in this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per command (0: torch's default)")
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", help="write the summary and every trial here")
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sslstudio-concurrency-"))
    rng = random.Random(args.seed)
    results = []
    try:
        made = setup(workdir, env)
        for index in range(args.trials):
            result = run_trial(index, rng, made, workdir, env, args)
            results.append(result)
            kinds = ", ".join(f"{c.kind}@{c.start_s:.1f}s:{'ok' if c.rc == 0 else c.refused or c.rc}"
                              for c in result.commands)
            print(f"trial {index}: {result.wall_s:.0f} s; {kinds}; mixed {len(result.mixed)}, lost "
                  f"{len(result.lost)}, leftovers {len(result.leftovers)}, failed {len(result.failed)}",
                  flush=True)
            for finding in result.mixed + result.lost + result.leftovers + result.failed:
                print(f"    {finding}", flush=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(results)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary,
                                               "trials": [asdict(r) for r in results]}, indent=1))
    bad = summary["mixed_folders"] + summary["results_lost"] + summary["leftovers"] + summary["failed"]
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
