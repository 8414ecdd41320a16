"""Fault benchmark: does a training run killed at a random moment resume to the same weights?
(`python bench/faults.py concurrency ...`: many writers at once; see bench/concurrency.py.)

    python bench/faults.py [--trials 20] [--startup-kills 3] [--seed 0] [--data DIR]
                           [--epochs 24] [--objective simclr] [--threads 1] [--workdir DIR]
                           [--keep] [--json PATH]

Everything goes through the `sslstudio train` command line, as a user or a cluster job drives
it, so the benchmark holds whatever the checkpoint format becomes.

1. A reference run trains for a fixed number of epochs (not minutes: an epoch budget makes the
   run a pure function of the seed) with checkpoints as often as the knobs allow and a
   metrics.csv row at every step (`log_every_steps=1`). A second, identical uninterrupted run
   checks that training is reproducible at all on this machine; without that, a weight mismatch
   after a resume could not be blamed on the resume.
2. Each trial starts the same command into a fresh run folder and kills it (SIGKILL to its
   process group) at a point drawn with a seeded RNG, so the kill points repeat:
   - most trials draw a target training step uniformly in 1..the reference's steps, watch the
     run's metrics.csv, and kill as soon as the logged step reaches the target plus a random
     0-0.5 s more, so that kills also land inside steps and inside checkpoint writes. Kill points
     are steps, not seconds: the machine's load can stretch a run's wall time several-fold, and a
     kill time in seconds then mostly falls after the run has ended;
   - a few (--startup-kills) are killed during start-up: at a moment drawn uniformly within the
     span from the run folder's appearance to the first logged step in the uninterrupted runs
     (scan, plan, model, first embedding map), counted from the trial's own folder appearing, or
     at its first logged step if that comes sooner: a run killed before its first checkpoint.
     (Before the folder exists, Python and torch are still importing and a kill leaves nothing.)
   It then notes the last step in metrics.csv and the checkpoint on disk (last.safetensors, or
   previous.safetensors where a kill inside a checkpoint write left only that), and runs
   `sslstudio train --resume RUN --epochs E` to the end. A run killed before its first
   checkpoint must start again from the beginning under --resume, with a warning. Where the
   resume refuses ("nothing to resume": killed before the run folder held config.toml), the trial
   starts the run afresh in the same folder, as a user would, and counts as "fresh start". A run
   that ended before its kill (marked *, counted apart; rare) is resumed all the same: resuming a
   finished run must take no step and leave its weights as they are.
3. Per trial it reports: the kill target, the step reached, the checkpoint found, the step the
   resume started at, steps lost (the step reached minus that), whether the resume completed
   (exit 0 and status "completed" in status.json), and whether every `model.*` tensor of the final
   checkpoint equals the reference's bit for bit.

Exit code 0 when every trial completed, resumed where its checkpoint said and matched the
reference, else 1. Without --data the bundled Fashion-MNIST sample (300 images, 28 px) is copied
into the work folder. Training processes run with one CPU thread (--threads; 0 leaves torch's
default): with two threads on two cores, any other load on the machine stalls each step in
thread hand-offs (2 s per step instead of 0.03 s here), while one thread just slows down. The
defaults (small_cnn, 28 px, batch 32, 24 epochs = 216 steps of about 0.04 s, a checkpoint every
3 s, 20 trials) take about 6 minutes on two idle CPU cores, more on a busy machine.
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
PREVIOUS = Path("checkpoints") / "previous.safetensors"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_EXTRA_DELAY_S = 0.5
POLL_S = 0.005
RESTART_WARNING = "stopped before its first checkpoint; starting it again from the beginning"


@dataclass
class Trial:
    index: int
    kind: str                        # "step": kill at a target step; "startup": at a moment of start-up
    target_step: int | None = None   # kind "step": kill once metrics.csv logs this step ...
    extra_delay_s: float = 0.0       # ... plus this long
    startup_kill_s: float | None = None  # kind "startup": kill this long after the run folder
    #                                      appears (or at the first logged step if sooner)
    kill_s: float | None = None      # when the kill was sent, seconds after launch
    kill_reason: str = ""            # target, start-up, first step, timeout
    phase_at_kill: str = ""          # no run folder yet; scanned, no config.toml; planned, no
    #                                  step yet; training; ended
    exited_before_kill: bool = False  # the run ended (completed or crashed) before its kill
    first_rc: int | None = None       # its exit code then
    step_at_kill: int = 0            # last step in metrics.csv when the process died
    train_s_at_kill: float | None = None  # its elapsed_s: training time, start-up excluded
    checkpoint_file: str = ""        # "last", "previous" (last missing or unreadable) or ""
    checkpoint_train_s: float | None = None  # elapsed_s of the checkpoint on disk then
    checkpoint_step_at_kill: int | None = None  # loop.step in that checkpoint, None if absent
    files_at_kill: list[str] = field(default_factory=list)
    # resumed (from a checkpoint); restarted (--resume started again from step 0: no checkpoint
    # yet); fresh start (--resume refused, the first command run again); resume failed; restart
    # failed
    outcome: str = ""
    restart_warned: bool = False     # the resume said it starts again from the beginning
    nothing_to_resume: bool = False  # the resume refused: nothing to resume
    resumed_from: int | None = None
    steps_lost: int | None = None
    resume_point_ok: bool | None = None  # resumed_from matches the checkpoint found at the kill
    resume_rc: int | None = None
    resume_s: float = 0.0
    resume_messages: list[str] = field(default_factory=list)  # the resume's warning: lines
    final_status: str = ""
    final_step: int | None = None
    resumed_ok: bool = False
    identical: bool | None = None
    max_abs_diff: float | None = None
    mismatched_tensors: int = 0
    error: str = ""


@dataclass
class Watched:
    rc: int | None          # exit code, None when killed
    killed: bool
    kill_s: float | None    # seconds after launch
    kill_reason: str
    folder_s: float | None  # seconds after launch when the run folder appeared
    config_s: float | None  # ... when config.toml appeared (the plan is made)
    first_step_s: float | None  # ... when metrics.csv first showed a step
    wall_s: float


def sslstudio() -> list[str]:
    # The interpreter running this script is the venv's; `-m` avoids depending on PATH.
    return [sys.executable, "-m", "sslstudio"]


def child_env(args) -> dict:
    env = dict(os.environ)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
    return env


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
        "--set", f"checkpoint_minutes={args.checkpoint_minutes}", "--set", "log_every_steps=1"]


def resume_command(args, out: Path) -> list[str]:
    return sslstudio() + ["train", "--resume", str(out), "--epochs", str(args.epochs), "--quiet"]


def run_to_end(command: list[str], log: Path, env: dict, timeout_s: float | None = None
               ) -> tuple[int, float, str]:
    started = time.monotonic()
    with open(log, "ab") as handle:
        handle.write(("$ " + " ".join(command) + "\n").encode())
        handle.flush()
        try:
            result = subprocess.run(command, check=False, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=timeout_s, env=env)
            rc, output = result.returncode, result.stdout
        except subprocess.TimeoutExpired as expired:
            # A resume that hangs is a finding too, and must not stall the other trials.
            rc = -signal.SIGKILL
            output = (expired.output or b"") + f"[faults] no exit after {timeout_s:.0f}s\n".encode()
        handle.write(output)
    return rc, time.monotonic() - started, output.decode(errors="replace")


class MetricsTail:
    """The highest step in a growing metrics.csv, reading only what was added since last time."""

    def __init__(self, path: Path):
        self.path, self.offset, self.pending, self.step = path, 0, b"", 0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                if size < self.offset:  # rewritten: read it again from the top
                    self.offset, self.pending = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return self.step
        self.offset += len(chunk)
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()  # an unfinished line waits for its end
        for line in lines:
            head = line.split(b",", 1)[0]
            if head.isdigit():
                self.step = max(self.step, int(head))
        return self.step


def launch_and_watch(command: list[str], log: Path, run: Path, env: dict, timeout_s: float,
                     target_step: int | None = None, extra_delay_s: float = 0.0,
                     kill_after_folder_s: float | None = None) -> Watched:
    """Run `command`, watching the run folder. With `target_step`, SIGKILL its process group
    `extra_delay_s` after metrics.csv logs that step; with `kill_after_folder_s`, that long after
    the run folder appears or at the first logged step, whichever comes first; with neither, let
    it finish. Past `timeout_s` it is killed in any case."""
    tail = MetricsTail(run / "metrics.csv")
    kill_at, reason, step = None, "", 0
    seen: dict[str, float | None] = {"folder": None, "config": None, "step": None}

    def watched(killed: bool, kill_s: float | None, rc: int | None) -> Watched:
        return Watched(rc, killed, kill_s, reason if killed else "", seen["folder"],
                       seen["config"], seen["step"], time.monotonic() - started)

    with open(log, "ab") as handle:
        handle.write(("$ " + " ".join(command) + "\n").encode())
        handle.flush()
        started = time.monotonic()
        # Its own session, so the kill reaches anything it started, as a lost node would.
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        while True:
            rc = process.poll()
            if rc is not None:
                return watched(False, None, rc)
            now = time.monotonic()
            if seen["folder"] is None and run.exists():
                seen["folder"] = now - started
                if kill_after_folder_s is not None:
                    kill_at, reason = now + kill_after_folder_s, "start-up"
            if seen["config"] is None and (run / "config.toml").exists():
                seen["config"] = now - started
            step = tail.poll()
            if step >= 1 and seen["step"] is None:
                seen["step"] = now - started
                if kill_after_folder_s is not None and (kill_at is None or now < kill_at):
                    kill_at, reason = now, "first step"
            if target_step is not None and kill_at is None and step >= target_step:
                kill_at, reason = now + extra_delay_s, "target"
            if kill_at is None and now - started > timeout_s:
                kill_at, reason = now, "timeout"
            if kill_at is not None and now >= kill_at:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kill_s = time.monotonic() - started
                rc = process.wait()
                if rc != -signal.SIGKILL:
                    # It exited by itself between the last poll and the kill.
                    return watched(False, None, rc)
                handle.write(f"[faults] SIGKILL at {kill_s:.2f}s ({reason}; metrics.csv "
                             f"showed step {step})\n".encode())
                return watched(True, kill_s, None)
            wait = POLL_S if kill_at is None else min(POLL_S, max(0.0, kill_at - now))
            time.sleep(wait)


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


def checkpoint_found(run: Path) -> tuple[str, int | None, float | None]:
    """The checkpoint a resume should use: last.safetensors, else previous.safetensors (a kill
    between the two renames of a checkpoint write leaves only that)."""
    step, elapsed = checkpoint_loop(run / CHECKPOINT)
    if step is not None and step >= 0:
        return "last", step, elapsed
    previous_step, previous_elapsed = checkpoint_loop(run / PREVIOUS)
    if previous_step is not None and previous_step >= 0:
        return "previous", previous_step, previous_elapsed
    return ("last", step, elapsed) if step is not None else ("", None, None)


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


def add_error(trial: Trial, message: str) -> None:
    trial.error = (trial.error + "; " if trial.error else "") + message


def run_trial(args, trial: Trial, data: Path, workdir: Path, reference: dict,
              reference_step: int, timeout_s: float, env: dict) -> Trial:
    index = trial.index
    run = workdir / f"trial{index:02d}"
    log = workdir / f"trial{index:02d}.log"
    log.write_bytes(b"")
    command = train_command(args, data, run)
    watched = launch_and_watch(command, log, run, env, timeout_s, target_step=trial.target_step,
                               extra_delay_s=trial.extra_delay_s,
                               kill_after_folder_s=trial.startup_kill_s)
    if watched.killed:
        trial.kill_s, trial.kill_reason = round(watched.kill_s, 3), watched.kill_reason
        if watched.kill_reason == "timeout":
            add_error(trial, f"the first run had not reached its kill point after {timeout_s:.0f}s")
    else:
        trial.exited_before_kill, trial.first_rc = True, watched.rc
    trial.step_at_kill, trial.train_s_at_kill = last_logged_step(run)
    trial.checkpoint_file, trial.checkpoint_step_at_kill, trial.checkpoint_train_s = \
        checkpoint_found(run)
    trial.files_at_kill = listing(run)
    if trial.exited_before_kill:
        trial.phase_at_kill = "ended"
    elif trial.step_at_kill:
        trial.phase_at_kill = "training"
    elif "config.toml" in trial.files_at_kill:
        trial.phase_at_kill = "planned, no step yet"
    elif trial.files_at_kill:
        trial.phase_at_kill = "scanned, no config.toml"
    else:
        trial.phase_at_kill = "no run folder yet"
    if (run / "metrics.csv").exists():
        # The resume drops rows past its checkpoint; keep the curve as the kill left it.
        shutil.copy2(run / "metrics.csv", workdir / f"trial{index:02d}.metrics-at-kill.csv")

    rc, took, output = run_to_end(resume_command(args, run), log, env, timeout_s)
    trial.resume_rc, trial.resume_s = rc, round(took, 2)
    trial.resume_messages = [line.strip() for line in output.splitlines()
                             if re.match(r"\s*(\S+: )?(warning|error):", line)][:4]
    has_checkpoint = trial.checkpoint_step_at_kill is not None
    if rc != 0 and "nothing to resume" in output:
        # Killed before the run folder held a run: a user would start again in the same folder.
        trial.outcome, trial.nothing_to_resume = "fresh start", True
        trial.resumed_from = 0
        rc, took, output = run_to_end(command, log, env, timeout_s)
        trial.resume_rc, trial.resume_s = rc, round(trial.resume_s + took, 2)
        if has_checkpoint:
            add_error(trial, "resume said nothing to resume although a checkpoint existed "
                             f"({trial.checkpoint_file}, step {trial.checkpoint_step_at_kill})")
        elif "config.toml" in trial.files_at_kill:
            add_error(trial, "resume said nothing to resume although config.toml existed")
    else:
        found = re.search(r"resuming at step (\d+)", output)
        # No "resuming at" means the run started from step 0.
        trial.resumed_from = int(found.group(1)) if found else 0
        trial.restart_warned = RESTART_WARNING in output
        trial.outcome = "resumed" if found else "restarted"
    trial.steps_lost = trial.step_at_kill - trial.resumed_from
    if trial.outcome in ("resumed", "restarted"):
        expected = trial.checkpoint_step_at_kill if has_checkpoint else 0
        trial.resume_point_ok = trial.resumed_from == expected and (
            has_checkpoint or trial.restart_warned)
        if trial.resumed_from != expected:
            add_error(trial, f"resumed from step {trial.resumed_from}, but the checkpoint on disk "
                             f"at the kill was {trial.checkpoint_file or 'absent'}"
                             + (f" at step {expected}" if has_checkpoint else ""))
        elif not has_checkpoint and not trial.restart_warned:
            add_error(trial, "no checkpoint: the resume started again from step 0 without the "
                             "warning that says so")

    status = read_status(run)
    trial.final_status = status.get("status", "")
    trial.final_step = status.get("step")
    trial.resumed_ok = rc == 0 and trial.final_status == "completed"
    if not trial.resumed_ok:
        trial.outcome = "restart failed" if trial.outcome != "resumed" else "resume failed"
        tail = [line for line in output.strip().splitlines() if line.strip()][-3:]
        add_error(trial, f"exit {rc}, status {trial.final_status or 'missing'}: " + " | ".join(tail))
    elif trial.final_step != reference_step:
        add_error(trial, f"finished at step {trial.final_step}, the reference at {reference_step}")
    if (run / CHECKPOINT).exists():
        try:
            same, diff, count = compare_weights(reference, run / CHECKPOINT)
            trial.identical, trial.max_abs_diff, trial.mismatched_tensors = same, diff, count
        except Exception as error:  # noqa: BLE001 - a checkpoint that will not load is a result
            trial.identical = False
            add_error(trial, f"final checkpoint: {error}")
    else:
        trial.identical = False
    return trial


def trial_ok(t: Trial) -> bool:
    return t.resumed_ok and bool(t.identical) and t.resume_point_ok is not False


def describe_target(t: Trial) -> str:
    if t.kind == "startup":
        return f"dir+{t.startup_kill_s:.2f}s"
    return f"step {t.target_step}"


def print_table(trials: list[Trial]) -> None:
    header = (f"{'trial':>5} {'target':>10} {'+s':>4} {'kill s':>7} {'step@kill':>9} "
              f"{'ckpt@kill':>9} {'from':>5} {'lost':>5} {'lost s':>6} {'outcome':<14} "
              f"{'ok':<3} {'identical':<22}")
    print(header)
    print("-" * len(header))
    for t in trials:
        ckpt = "-" if t.checkpoint_step_at_kill is None else str(t.checkpoint_step_at_kill)
        if t.checkpoint_file == "previous":
            ckpt += "p"
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
        elif t.train_s_at_kill is not None and t.outcome in ("restarted", "fresh start"):
            lost_s = f"{t.train_s_at_kill:.1f}"
        extra = f"{t.extra_delay_s:.2f}" if t.kind == "step" else "-"
        kill_s = "-" if t.kill_s is None else f"{t.kill_s:.2f}"
        ok = "yes" if t.resumed_ok and t.resume_point_ok is not False else "NO"
        print(f"{t.index:>5} {describe_target(t):>10} {extra:>4} {kill_s:>7} {t.step_at_kill:>9} "
              f"{ckpt:>9} {'-' if t.resumed_from is None else t.resumed_from:>5} "
              f"{'-' if t.steps_lost is None else t.steps_lost:>5} {lost_s:>6} {outcome:<14} "
              f"{ok:<3} {same:<22}")
    for t in trials:
        if t.kind == "startup" and t.kill_reason == "first step":
            print(f"  trial {t.index}: start-up ended before {describe_target(t)}; killed at "
                  "the first logged step instead")
        elif t.kind == "startup" and t.kill_s is not None:
            print(f"  trial {t.index}: killed during start-up at {t.kill_s:.2f}s: "
                  f"{t.phase_at_kill}")
        if t.exited_before_kill:
            print(f"  trial {t.index}: the first run exited {t.first_rc} before its kill "
                  f"(it logged step {t.step_at_kill}); nothing was interrupted")
        if t.error:
            print(f"  trial {t.index}: {t.error}")
        if not trial_ok(t) or t.nothing_to_resume:
            print(f"    run folder at the kill: {', '.join(t.files_at_kill) or 'absent'}")
            for message in t.resume_messages:
                print(f"    resume said: {message}")
    if any(t.exited_before_kill for t in trials):
        print("  * the run had ended before its kill; nothing was interrupted")
    if any(t.checkpoint_file == "previous" for t in trials):
        print("  p: last.safetensors was missing or unreadable at the kill; previous.safetensors "
              "was there")


def draw_trials(args, reference_step: int, startup_s: float) -> list[Trial]:
    """The kill points, a pure function of --seed, --trials, --startup-kills and the reference's
    step count (and, for the start-up kills, the time from its run folder's appearance to its
    first logged step)."""
    rng = random.Random(args.seed)
    startup = set(rng.sample(range(args.trials), min(args.startup_kills, args.trials)))
    trials = []
    for index in range(args.trials):
        if index in startup:
            trials.append(Trial(index, "startup", startup_kill_s=round(rng.uniform(0.0, startup_s), 3)))
        else:
            trials.append(Trial(index, "step", target_step=rng.randint(1, reference_step),
                                extra_delay_s=round(rng.uniform(0.0, MAX_EXTRA_DELAY_S), 3)))
    return trials


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["concurrency"]:  # many writers at once, not kills: bench/concurrency.py
        import concurrency

        return concurrency.main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--startup-kills", type=int, default=3,
                        help="trials killed during start-up, before the first step")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--train-seed", type=int, default=0, help="sslstudio train --seed")
    parser.add_argument("--data", help="image folder (default: a copy of the bundled sample)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--objective", default="simclr")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--checkpoint-minutes", type=float, default=0.05,
                        help="the smallest value the knob accepts: a checkpoint every 3 s")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/MKL threads of the training processes; 0: torch's default")
    parser.add_argument("--workdir", help="where runs go (default: a fresh temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", help="write the summary and every trial here")
    args = parser.parse_args(argv)

    began = time.monotonic()
    env = child_env(args)
    made_workdir = not args.workdir
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sslstudio-faults-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = prepare_data(args, workdir)
        print(f"work folder {workdir}; data {data}")

        reference_run = workdir / "reference"
        watched = launch_and_watch(train_command(args, data, reference_run),
                                   workdir / "reference.log", reference_run, env, 3600.0)
        reference_s = watched.wall_s
        reference_status = read_status(reference_run)
        if watched.rc != 0 or reference_status.get("status") != "completed":
            print(f"the reference run failed (exit {watched.rc}):\n"
                  f"{(workdir / 'reference.log').read_text(errors='replace')}", file=sys.stderr)
            return 1
        reference_step = int(reference_status["step"])
        reference = model_tensors(reference_run / CHECKPOINT)

        def startup_span(w: Watched) -> float | None:
            if w.folder_s is None or w.first_step_s is None:
                return None
            return max(0.0, w.first_step_s - w.folder_s)

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        startups = [startup_span(watched)]
        print(f"reference: {reference_step} steps in {reference_s:.1f}s (wall, with start-up; "
              f"run folder at {seconds(watched.folder_s)}, config.toml at "
              f"{seconds(watched.config_s)}, first step logged at {seconds(watched.first_step_s)})")

        repeat = launch_and_watch(train_command(args, data, workdir / "repeat"),
                                  workdir / "repeat.log", workdir / "repeat", env, 3600.0)
        repeat_s = repeat.wall_s
        repeat_same, repeat_diff, _ = (compare_weights(reference, workdir / "repeat" / CHECKPOINT)
                                       if repeat.rc == 0 else (False, float("nan"), 0))
        startups.append(startup_span(repeat))
        print(f"repeat of the reference without a kill ({repeat_s:.1f}s): "
              f"{'identical' if repeat_same else f'DIFFERS (max diff {repeat_diff:.3g})'}")

        # Start-up kills fall between the run folder's appearance and the first step (scan,
        # plan, model, first embedding map): before the folder exists a kill leaves nothing
        # behind to resume. The shorter span of the two runs is the window; a run reaching its
        # first step sooner is killed there.
        startup_s = min(x for x in startups if x is not None) if any(
            x is not None for x in startups) else 0.0
        timeout_s = max(120.0, 10 * max(reference_s, repeat_s))
        trials = draw_trials(args, reference_step, startup_s)
        for trial in trials:
            run_trial(args, trial, data, workdir, reference, reference_step, timeout_s, env)
            killed = (f"killed at {trial.kill_s:.2f}s ({trial.kill_reason})" if trial.kill_s
                      is not None else "ENDED BEFORE ITS KILL")
            print(f"  trial {trial.index}: target {describe_target(trial)}, {killed}, "
                  f"step {trial.step_at_kill}, checkpoint {trial.checkpoint_step_at_kill}, "
                  f"{trial.outcome} from {trial.resumed_from}, identical {trial.identical}",
                  flush=True)

        print()
        print_table(trials)
        resumed_ok = sum(t.resumed_ok for t in trials)
        identical = sum(bool(t.identical) for t in trials)
        interrupted = [t for t in trials if not t.exited_before_kill]
        lost = [t.steps_lost for t in interrupted if t.steps_lost is not None]
        summary = {
            "trials": len(trials),
            "step_kills": sum(t.kind == "step" for t in trials),
            "startup_kills": sum(t.kind == "startup" for t in trials),
            "resumed_ok": resumed_ok,
            "resumed_from_checkpoint": sum(t.outcome == "resumed" for t in trials),
            "restarted_no_checkpoint_yet": sum(t.outcome == "restarted" for t in trials),
            "fresh_start_nothing_to_resume": sum(t.nothing_to_resume for t in trials),
            "killed_before_first_checkpoint": sum(t.checkpoint_step_at_kill is None
                                                  for t in interrupted),
            "resumed_from_previous_checkpoint": sum(t.checkpoint_file == "previous"
                                                    and t.outcome == "resumed" for t in trials),
            "wrong_resume_point": sum(t.resume_point_ok is False for t in trials),
            "failed": sum(not t.resumed_ok for t in trials),
            "max_steps_lost": max(lost) if lost else None,
            "mean_steps_lost": round(sum(lost) / len(lost), 2) if lost else None,
            "all_identical": identical == len(trials),
            "identical": identical,
            "reference_steps": reference_step,
            "reference_s": round(reference_s, 2),
            "repeat_s": round(repeat_s, 2),
            "reference_repeat_identical": repeat_same,
            "startup_window_s": round(startup_s, 2),
            "not_interrupted": sum(t.exited_before_kill for t in trials),
            "total_s": round(time.monotonic() - began, 1),
        }
        print()
        print(f"trials {summary['trials']} ({summary['step_kills']} killed at a target step, "
              f"{summary['startup_kills']} during start-up): resumed ok {resumed_ok} "
              f"({summary['resumed_from_checkpoint']} from a checkpoint, "
              f"{summary['restarted_no_checkpoint_yet']} restarted by --resume with no checkpoint "
              f"yet, {summary['fresh_start_nothing_to_resume']} started afresh after 'nothing to "
              f"resume'), failed {summary['failed']}; {summary['killed_before_first_checkpoint']} "
              f"killed before the first checkpoint; {summary['wrong_resume_point']} resumed at a "
              f"step other than the checkpoint's; {summary['not_interrupted']} had ended before "
              f"their kill (not counted in steps lost)")
        print(f"steps lost: max {summary['max_steps_lost']}, mean {summary['mean_steps_lost']} "
              f"(checkpoint every {args.checkpoint_minutes * 60:.0f}s; reference "
              f"{reference_step} steps in {reference_s:.1f}s; start-up kills within "
              f"{startup_s:.2f}s of the run folder's appearance)")
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
        ok = all(trial_ok(t) for t in trials)
        return 0 if ok else 1
    finally:
        if args.keep or not made_workdir:
            print(f"runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
