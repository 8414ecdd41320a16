"""Fault benchmark: does a training run killed at a random moment resume to the same weights?

    python bench/faults.py [--trials 20] [--seed 0] [--data DIR] [--epochs 4]
                           [--objective simclr] [--workdir DIR] [--keep] [--json PATH]

Everything goes through the `sslstudio train` command line, as a user or a cluster job drives
it, so the benchmark holds whatever the checkpoint format becomes.

1. A reference run trains for a fixed number of epochs (not minutes: an epoch budget makes the
   run a pure function of the seed) with checkpoints as often as the knobs allow. A second,
   identical uninterrupted run checks that training is reproducible at all on this machine;
   without that, a weight mismatch after a resume could not be blamed on the resume.
2. Each trial starts the same command into a fresh run folder, sends SIGKILL after a delay
   drawn uniformly within the wall time of the faster uninterrupted run (seeded, so the kill
   points repeat), notes the last step in metrics.csv and the checkpoint on disk, then runs
   `sslstudio train --resume RUN --epochs E` to the end. A kill before the first checkpoint
   leaves nothing to resume; the trial then starts the run afresh in the same folder, as a
   user would, and counts as "restarted". A run that ended before its kill time (marked *) is
   resumed all the same: resuming a finished run must leave its weights as they are.
3. Per trial it reports: steps lost (last step logged before the kill minus the step the resume
   started at), whether the resume completed (exit 0 and status "completed" in status.json),
   and whether every `model.*` tensor of the final checkpoint equals the reference's bit for bit.

Exit code 0 when every trial completed and matched the reference, else 1. Without --data the
bundled Fashion-MNIST sample (300 images, 28 px) is copied into the work folder. The defaults
(small_cnn, 28 px, batch 32, 4 epochs, 20 trials) take about 10 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "samples" / "fashion-mnist"
CHECKPOINT = Path("checkpoints") / "last.safetensors"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class Trial:
    index: int
    kill_after_s: float
    exited_before_kill: bool = False  # the run ended (completed or crashed) before its kill time
    first_rc: int | None = None       # its exit code then
    step_at_kill: int = 0            # last step in metrics.csv when the process died
    train_s_at_kill: float | None = None  # its elapsed_s: training time, start-up excluded
    checkpoint_train_s: float | None = None  # elapsed_s of the checkpoint on disk then
    checkpoint_step_at_kill: int | None = None  # loop.step in last.safetensors, None if absent
    files_at_kill: list[str] = field(default_factory=list)
    # resumed; restarted (nothing to resume yet, so a fresh start); resume failed; restart failed
    outcome: str = ""
    nothing_to_resume: bool = False  # the resume found no checkpoint
    resumed_from: int | None = None
    steps_lost: int | None = None
    resume_rc: int | None = None
    resume_s: float = 0.0
    final_status: str = ""
    final_step: int | None = None
    resumed_ok: bool = False
    identical: bool | None = None
    max_abs_diff: float | None = None
    mismatched_tensors: int = 0
    error: str = ""


def sslstudio() -> list[str]:
    # The interpreter running this script is the venv's; `-m` avoids depending on PATH.
    return [sys.executable, "-m", "sslstudio"]


def prepare_data(args, workdir: Path) -> Path:
    if args.data:
        return Path(args.data).resolve()
    data = workdir / "data"
    # Images only: a stray LICENSE would be reported as a skipped file on every run.
    for source in SAMPLE.rglob("*"):
        if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
            target = data / source.relative_to(SAMPLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return data


def train_command(args, data: Path, out: Path) -> list[str]:
    return sslstudio() + [
        "train", "--data", str(data), "--out", str(out), "--epochs", str(args.epochs),
        "--seed", str(args.train_seed), "--objective", args.objective, "--backbone", args.backbone,
        "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--quiet",
        "--set", f"checkpoint_minutes={args.checkpoint_minutes}"]


def resume_command(args, out: Path) -> list[str]:
    return sslstudio() + ["train", "--resume", str(out), "--epochs", str(args.epochs), "--quiet"]


def run_to_end(command: list[str], log: Path, timeout_s: float | None = None
               ) -> tuple[int, float, str]:
    started = time.monotonic()
    with open(log, "ab") as handle:
        handle.write(("$ " + " ".join(command) + "\n").encode())
        handle.flush()
        try:
            result = subprocess.run(command, check=False, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=timeout_s)
            rc, output = result.returncode, result.stdout
        except subprocess.TimeoutExpired as expired:
            # A resume that hangs is a finding too, and must not stall the other trials.
            rc = -signal.SIGKILL
            output = (expired.output or b"") + f"[faults] no exit after {timeout_s:.0f}s\n".encode()
        handle.write(output)
    return rc, time.monotonic() - started, output.decode(errors="replace")


def last_logged_step(run: Path) -> tuple[int, float | None]:
    """The last complete metrics row's step and elapsed_s."""
    path = run / "metrics.csv"
    if not path.exists():
        return 0, None
    step, elapsed = 0, None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            # A kill can cut the last line short; a row that does not parse was never complete.
            try:
                step, elapsed = max(step, int(row["step"])), float(row["elapsed_s"])
            except (TypeError, ValueError, KeyError):
                pass
    return step, elapsed


def checkpoint_loop(path: Path) -> tuple[int | None, float | None]:
    """The checkpoint's step and elapsed_s; (None, None) if absent, (-1, None) if unreadable."""
    from safetensors import safe_open

    if not path.exists():
        return None, None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        loop = json.loads(metadata["loop"])
        return int(loop["step"]), float(loop.get("elapsed_s", "nan"))
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is itself the finding
        return -1, None


def read_status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def model_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def compare_weights(reference: dict, path: Path) -> tuple[bool, float, int]:
    import torch

    tensors = model_tensors(path)
    if set(tensors) != set(reference):
        return False, float("inf"), len(set(tensors) ^ set(reference))
    worst, mismatched = 0.0, 0
    for name, expected in reference.items():
        got = tensors[name]
        if got.shape != expected.shape or got.dtype != expected.dtype:
            return False, float("inf"), mismatched + 1
        if not torch.equal(got, expected):
            mismatched += 1
            worst = max(worst, (got.double() - expected.double()).abs().max().item())
    return mismatched == 0, worst, mismatched


def listing(run: Path) -> list[str]:
    if not run.exists():
        return []
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def run_trial(args, index: int, kill_after: float, data: Path, workdir: Path, reference: dict,
              reference_step: int, timeout_s: float) -> Trial:
    trial = Trial(index, round(kill_after, 3))
    run = workdir / f"trial{index:02d}"
    log = workdir / f"trial{index:02d}.log"
    command = train_command(args, data, run)
    with open(log, "wb") as handle:
        handle.write(("$ " + " ".join(command) + "\n").encode())
        handle.flush()
        # Its own session, so the kill reaches anything it started, as a lost node would.
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            trial.first_rc = process.wait(timeout=kill_after)
            trial.exited_before_kill = True
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        handle.write(f"[faults] SIGKILL after {kill_after:.2f}s\n".encode())
    trial.step_at_kill, trial.train_s_at_kill = last_logged_step(run)
    trial.checkpoint_step_at_kill, trial.checkpoint_train_s = checkpoint_loop(run / CHECKPOINT)
    trial.files_at_kill = listing(run)
    if (run / "metrics.csv").exists():
        # The resume drops rows past its checkpoint; keep the curve as the kill left it.
        shutil.copy2(run / "metrics.csv", workdir / f"trial{index:02d}.metrics-at-kill.csv")

    rc, took, output = run_to_end(resume_command(args, run), log, timeout_s)
    trial.resume_rc, trial.resume_s = rc, round(took, 2)
    if rc != 0 and "nothing to resume" in output:
        # Killed before the first checkpoint: a user would start again in the same folder.
        trial.outcome, trial.nothing_to_resume = "restarted", True
        trial.resumed_from = 0
        rc, took, output = run_to_end(command, log, timeout_s)
        trial.resume_rc, trial.resume_s = rc, round(trial.resume_s + took, 2)
        if trial.checkpoint_step_at_kill is not None:
            trial.error = ("resume said nothing to resume although checkpoints/last.safetensors "
                           f"existed (step {trial.checkpoint_step_at_kill})")
    else:
        trial.outcome = "resumed"
        found = re.search(r"resuming at step (\d+)", output)
        # No "resuming at" means the run started from step 0.
        trial.resumed_from = int(found.group(1)) if found else 0
    trial.steps_lost = trial.step_at_kill - trial.resumed_from

    status = read_status(run)
    trial.final_status = status.get("status", "")
    trial.final_step = status.get("step")
    trial.resumed_ok = rc == 0 and trial.final_status == "completed"
    if not trial.resumed_ok:
        trial.outcome = "restart failed" if trial.nothing_to_resume else "resume failed"
        tail = [line for line in output.strip().splitlines() if line.strip()][-3:]
        trial.error = (trial.error + "; " if trial.error else "") + (
            f"exit {rc}, status {trial.final_status or 'missing'}: " + " | ".join(tail))
    elif trial.final_step != reference_step:
        trial.error = f"finished at step {trial.final_step}, the reference at {reference_step}"
    if (run / CHECKPOINT).exists():
        try:
            same, diff, count = compare_weights(reference, run / CHECKPOINT)
            trial.identical, trial.max_abs_diff, trial.mismatched_tensors = same, diff, count
        except Exception as error:  # noqa: BLE001 - a checkpoint that will not load is a result
            trial.identical = False
            trial.error = (trial.error + "; " if trial.error else "") + f"final checkpoint: {error}"
    else:
        trial.identical = False
    return trial


def print_table(trials: list[Trial]) -> None:
    header = (f"{'trial':>5} {'kill s':>7} {'step@kill':>9} {'ckpt@kill':>9} {'from':>5} "
              f"{'lost':>5} {'lost s':>6} {'outcome':<14} {'ok':<3} {'identical':<22}")
    print(header)
    print("-" * len(header))
    for t in trials:
        ckpt = "-" if t.checkpoint_step_at_kill is None else str(t.checkpoint_step_at_kill)
        if t.identical:
            same = "yes"
        elif t.max_abs_diff is None:
            same = "NO (no final checkpoint)"
        else:
            same = f"NO (max diff {t.max_abs_diff:.3g}, {t.mismatched_tensors} tensors)"
        outcome = t.outcome + ("*" if t.exited_before_kill else "")
        lost_s = "-"
        if t.train_s_at_kill is not None and t.outcome == "resumed" and t.checkpoint_train_s:
            lost_s = f"{max(0.0, t.train_s_at_kill - t.checkpoint_train_s):.1f}"
        elif t.train_s_at_kill is not None and t.outcome == "restarted":
            lost_s = f"{t.train_s_at_kill:.1f}"
        print(f"{t.index:>5} {t.kill_after_s:>7.2f} {t.step_at_kill:>9} {ckpt:>9} "
              f"{'-' if t.resumed_from is None else t.resumed_from:>5} "
              f"{'-' if t.steps_lost is None else t.steps_lost:>5} {lost_s:>6} {outcome:<14} "
              f"{'yes' if t.resumed_ok else 'NO':<3} {same:<22}")
    for t in trials:
        if t.exited_before_kill and t.first_rc != 0:
            print(f"  trial {t.index}: the first run exited {t.first_rc} before its kill time")
        if t.error:
            print(f"  trial {t.index}: {t.error}")
        if not t.resumed_ok or not t.identical:
            print(f"    run folder at the kill: {', '.join(t.files_at_kill) or 'absent'}")
    if any(t.exited_before_kill for t in trials):
        print("  * the run had ended before its kill time; nothing was interrupted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--train-seed", type=int, default=0, help="sslstudio train --seed")
    parser.add_argument("--data", help="image folder (default: a copy of the bundled sample)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--objective", default="simclr")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--checkpoint-minutes", type=float, default=0.05,
                        help="the smallest value the knob accepts: a checkpoint every 3 s")
    parser.add_argument("--workdir", help="where runs go (default: a fresh temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", help="write the summary and every trial here")
    args = parser.parse_args(argv)

    began = time.monotonic()
    made_workdir = not args.workdir
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sslstudio-faults-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = prepare_data(args, workdir)
        print(f"work folder {workdir}; data {data}")

        reference_run = workdir / "reference"
        rc, reference_s, output = run_to_end(train_command(args, data, reference_run),
                                             workdir / "reference.log")
        reference_status = read_status(reference_run)
        if rc != 0 or reference_status.get("status") != "completed":
            print(f"the reference run failed (exit {rc}):\n{output}", file=sys.stderr)
            return 1
        reference_step = int(reference_status["step"])
        reference = model_tensors(reference_run / CHECKPOINT)
        print(f"reference: {reference_step} steps in {reference_s:.1f}s (wall, with start-up)")

        rc, repeat_s, _ = run_to_end(train_command(args, data, workdir / "repeat"),
                                     workdir / "repeat.log")
        repeat_same, repeat_diff, _ = (compare_weights(reference, workdir / "repeat" / CHECKPOINT)
                                       if rc == 0 else (False, float("nan"), 0))
        print(f"repeat of the reference without a kill ({repeat_s:.1f}s): "
              f"{'identical' if repeat_same else f'DIFFERS (max diff {repeat_diff:.3g})'}")

        # Other work on the machine stretches a run's wall time; the faster of the two
        # uninterrupted runs is the better guess of how long a trial will live.
        window_s = min(reference_s, repeat_s) if rc == 0 else reference_s
        timeout_s = max(120.0, 10 * max(reference_s, repeat_s))
        rng = random.Random(args.seed)
        kill_times = [rng.uniform(0.0, window_s) for _ in range(args.trials)]
        trials = []
        for index, kill_after in enumerate(kill_times):
            trial = run_trial(args, index, kill_after, data, workdir, reference, reference_step,
                              timeout_s)
            trials.append(trial)
            print(f"  trial {index}: kill at {trial.kill_after_s:.2f}s, step {trial.step_at_kill}, "
                  f"{trial.outcome} from {trial.resumed_from}, identical {trial.identical}",
                  flush=True)

        print()
        print_table(trials)
        resumed_ok = sum(t.resumed_ok for t in trials)
        identical = sum(bool(t.identical) for t in trials)
        lost = [t.steps_lost for t in trials if t.steps_lost is not None]
        summary = {
            "trials": len(trials),
            "resumed_ok": resumed_ok,
            "resumed_from_checkpoint": sum(t.outcome == "resumed" for t in trials),
            "restarted_no_checkpoint_yet": sum(t.outcome == "restarted" for t in trials),
            "killed_before_first_checkpoint": sum(t.nothing_to_resume for t in trials),
            "failed": sum(not t.resumed_ok for t in trials),
            "max_steps_lost": max(lost) if lost else None,
            "mean_steps_lost": round(sum(lost) / len(lost), 2) if lost else None,
            "all_identical": identical == len(trials),
            "identical": identical,
            "reference_steps": reference_step,
            "reference_s": round(reference_s, 2),
            "reference_repeat_identical": repeat_same,
            "kill_window_s": round(window_s, 2),
            "not_interrupted": sum(t.exited_before_kill for t in trials),
            "total_s": round(time.monotonic() - began, 1),
        }
        print()
        print(f"trials {summary['trials']}: resumed ok {resumed_ok} "
              f"({summary['resumed_from_checkpoint']} from a checkpoint, "
              f"{summary['restarted_no_checkpoint_yet']} restarted with no checkpoint yet), "
              f"failed {summary['failed']}; {summary['killed_before_first_checkpoint']} killed "
              f"before the first checkpoint; {summary['not_interrupted']} had ended before "
              f"their kill time")
        print(f"steps lost: max {summary['max_steps_lost']}, mean {summary['mean_steps_lost']} "
              f"(checkpoint every {args.checkpoint_minutes * 60:.0f}s; reference "
              f"{reference_step} steps in {reference_s:.1f}s)")
        print(f"final weights identical to the reference: "
              f"{'yes' if summary['all_identical'] else 'NO'} ({identical}/{len(trials)}); "
              f"uninterrupted repeat identical: {'yes' if repeat_same else 'NO'}")
        print(f"total {summary['total_s']:.0f}s")
        if args.json:
            settings = {k: v for k, v in vars(args).items() if k not in ("json",)}
            settings["data"] = str(data)
            Path(args.json).write_text(json.dumps(
                {"settings": settings, "summary": summary, "trials": [asdict(t) for t in trials]},
                indent=2, default=str))
        ok = summary["all_identical"] and resumed_ok == len(trials)
        return 0 if ok else 1
    finally:
        if args.keep or not made_workdir:
            print(f"runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
