"""Training throughput, as ratios measured in one run on this machine.

    python bench/throughput.py [--data DIR] [--objective simclr] [--backbone small_cnn]
                               [--batch-size 256] [--image-size 28] [--steps 100] [--rounds 2]

1. The engine (`sslstudio.core.run.train.train`, with its events, metrics file and monitor) against
   a bare PyTorch loop over the same cached batches, model, augmentation and optimizer.
2. The augmentation pipeline's images/s against the model's training appetite (images/s).

Without --data, a folder of 4,096 synthetic 28 px images is made in a temporary directory.
Engine and bare loop alternate (bare, engine, bare, engine) and the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_folder(root: Path, count: int = 4096, size: int = 28) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"c{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)
        image.save(folder / f"{i:05d}.png")
    return root


def engine_config(args, data_dir: Path, out: Path, monitor: bool):
    """The engine's run for these arguments; without the monitor, only its start and end
    snapshots."""
    from sslstudio.core.run.config import TrainConfig

    return TrainConfig(data=str(data_dir), out=str(out), objective=args.objective,
                       backbone=args.backbone, image_size=args.image_size,
                       batch_size=args.batch_size, epochs=1000, log_every_steps=1,
                       device=args.device, monitor_seconds=5.0 if monitor else 3600.0)


def engine_rate(args, data_dir: Path, out: Path, monitor: bool = True) -> float:
    from sslstudio.core.events import EmbeddingSnapshot, StepMetrics
    from sslstudio.core.run.train import train

    config = engine_config(args, data_dir, out, monitor)
    times, snapshots, first_step, with_snapshot = [], 0, None, []
    for event in train(config):
        if isinstance(event, StepMetrics):
            if first_step is None:
                first_step = time.perf_counter()
            elif times:
                times.append(time.perf_counter())
                if len(times) > args.steps:
                    break
        elif isinstance(event, EmbeddingSnapshot):
            if event.step == 0:
                # The snapshot of the weights the run started from comes after the first step
                # (so the first step is shown at once): a start-up cost, like building the model
                # and the calibration passes, reported on its own. The window opens here.
                START_SNAPSHOT.append(time.perf_counter() - first_step)
                times.append(time.perf_counter())
            else:
                snapshots += 1
                # A snapshot runs just before the StepMetrics it follows: that step's interval
                # holds it.
                with_snapshot.append(len(times) - 2)
    intervals = np.diff(times)
    median = statistics.median(intervals[1:])
    STEADY.append(args.batch_size / median)
    SNAPSHOTS.append(snapshots)
    extra = sum(max(0.0, intervals[i] - median) for i in with_snapshot if 0 <= i < len(intervals))
    MONITOR_SHARE.append(extra / (times[-1] - times[0]))
    return (len(times) - 1) * args.batch_size / (times[-1] - times[0])


# The engine's rate over its median step (the loop alone, without the monitor's passes and the
# first snapshot, which fall between two steps), and the snapshots inside each measured window.
STEADY: list[float] = []
SNAPSHOTS: list[int] = []
START_SNAPSHOT: list[float] = []  # seconds the step-0 snapshot took, per engine run
# The monitor's periodic snapshots' share of each window: what their steps took beyond the
# median step. With the median steps, a figure this machine's drifts (the same bare loop ran
# 781 to 959 images/s within one process) do not swing.
MONITOR_SHARE: list[float] = []
BARE_STEADY: list[float] = []


def build_bare(args, data):
    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.data.augment import AugmentSettings, BatchAugment
    from sslstudio.core.objectives import OBJECTIVES
    from sslstudio.core.run.loop import make_optimizer

    device = torch.device(args.device if args.device != "auto" else "cpu")
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    augment = BatchAugment(AugmentSettings.from_strength(0.8, data.grey, args.image_size), mean, std,
                           args.image_size, torch.Generator(device=device).manual_seed(0))
    cls = OBJECTIVES.get(args.objective)
    objective = cls(build_backbone(args.backbone, args.image_size), cls.config_cls(), augment).to(device)
    objective = objective.to(memory_format=torch.channels_last)  # as the engine does
    return objective, augment, make_optimizer(objective, objective.config), device


def bare_step(args, data, parts, order: np.ndarray, step: int) -> None:
    """One step of the textbook loop: slice a batch, augment, forward, backward, step."""
    from sslstudio.core.data.augment import to_float

    objective, _, optimizer, device = parts
    per_epoch = len(data) // args.batch_size
    index = order[(step % per_epoch) * args.batch_size:(step % per_epoch + 1) * args.batch_size]
    images = to_float(torch.from_numpy(data.images[index]).to(device))
    loss, _ = objective(images)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    objective.after_step(0.5)


def bare_rate(args, data, parts) -> float:
    """The textbook loop. Nothing else."""
    order = np.random.default_rng(0).permutation(len(data))
    parts[0].train()
    start = None
    ends = []
    for step in range(args.steps + 1):
        if step == 1:
            start = time.perf_counter()
        bare_step(args, data, parts, order, step)
        ends.append(time.perf_counter())
    BARE_STEADY.append(args.batch_size / statistics.median(np.diff(ends[1:])))
    return args.steps * args.batch_size / (time.perf_counter() - start)


def interleaved_ratio(args, data, parts, data_dir: Path, out: Path) -> tuple[float, int]:
    """The engine (with its monitor) and the bare loop one step each in turn, in one process: a
    machine that speeds up or slows down over minutes moves both alike. The monitor's clock also
    runs during the bare steps, so it comes due about twice as often per engine step as in a
    run of its own: its cost here is an upper bound. Returns engine / bare over every step, the
    same over the steps without a snapshot (the loop alone), and the snapshots taken."""
    from sslstudio.core.events import EmbeddingSnapshot, StepMetrics
    from sslstudio.core.run.train import train

    events = train(engine_config(args, data_dir, out, monitor=True))
    for event in events:  # to the end of the step-0 snapshot, a start-up cost
        if isinstance(event, EmbeddingSnapshot) and event.step == 0:
            break
    order = np.random.default_rng(1).permutation(len(data))
    parts[0].train()
    engine_s, bare_s, with_snapshot = [], [], []
    try:
        for step in range(args.steps):
            started = time.perf_counter()
            for event in events:
                if isinstance(event, EmbeddingSnapshot):
                    # It ran before the StepMetrics just taken: the last engine step holds it.
                    with_snapshot.append(len(engine_s) - 1)
                if isinstance(event, StepMetrics):
                    break
            engine_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            bare_step(args, data, parts, order, step)
            bare_s.append(time.perf_counter() - started)
    finally:
        events.close()
    snapshot_steps = set(with_snapshot)
    loop_alone = sum(b for i, b in enumerate(bare_s) if i not in snapshot_steps) / sum(
        e for i, e in enumerate(engine_s) if i not in snapshot_steps)
    return sum(bare_s) / sum(engine_s), loop_alone, len(snapshot_steps)


def augmentation_rate(args, data, parts) -> float:
    from sslstudio.core.data.augment import to_float

    _, augment, _, device = parts
    images = to_float(torch.from_numpy(data.images[: args.batch_size]).to(device))
    augment(images)
    start = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        augment(images)
    return rounds * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--objective", default="simclr")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=28)
    # Long enough for the monitor's periodic snapshots to fall inside the measured window.
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="bare, engine, engine without monitor")
    args = parser.parse_args()

    from sslstudio.core.data import load_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data) if args.data else synthetic_folder(Path(tmp) / "data")
        loader = load_image_folder(data_dir, args.image_size)
        while True:
            try:
                next(loader)
            except StopIteration as stop:
                data = stop.value
                break
        parts = build_bare(args, data)
        # One untimed pass first: the first loop in a process ran 16% slower than the next one
        # (allocator and oneDNN kernels warming up), which the bare loop alone would pay.
        bare_rate(argparse.Namespace(**{**vars(args), "steps": 5}), data, parts)
        BARE_STEADY.clear()
        bare, engine, quiet = [], [], []
        for round_index in range(args.rounds):
            bare.append(bare_rate(args, data, parts))
            engine.append(engine_rate(args, data_dir, Path(tmp) / f"run{round_index}"))
            quiet.append(engine_rate(args, data_dir, Path(tmp) / f"quiet{round_index}", monitor=False))
        paired, paired_loop, paired_snapshots = interleaved_ratio(args, data, parts, data_dir,
                                                                  Path(tmp) / "paired")
        augment = augmentation_rate(args, data, parts)
    views = 4 if args.objective == "rotation" else 2
    bare_median, engine_median = statistics.median(bare), statistics.median(engine)
    print(f"device {args.device}, {torch.get_num_threads()} threads; {args.objective} on "
          f"{args.backbone}, batch {args.batch_size}, {args.image_size} px, {len(data)} images")
    print(f"bare PyTorch loop : {bare_median:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in bare)})")
    print(f"engine            : {engine_median:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in engine)})")
    print(f"engine / bare     : {engine_median / bare_median:8.3f}")
    steady_engine = statistics.median(STEADY[0::2])  # the engine's runs with the monitor
    print(f"median step       : engine {steady_engine:.1f}, bare {statistics.median(BARE_STEADY):.1f} "
          f"images/s = {steady_engine / statistics.median(BARE_STEADY):.3f} (the loop alone); "
          f"monitor snapshots in the measured windows: {SNAPSHOTS[0::2]} with the monitor, "
          f"{SNAPSHOTS[1::2]} without")
    share = statistics.median(MONITOR_SHARE[0::2])
    loop_alone = steady_engine / statistics.median(BARE_STEADY)
    print(f"with the monitor  : {loop_alone * (1.0 - share):8.3f} of bare, from median steps: the loop "
          f"alone x (1 - the monitor's share of the window, {100 * share:.1f}%; runs: "
          f"{', '.join(f'{100 * m:.1f}%' for m in MONITOR_SHARE[0::2])})")
    print(f"step by step      : {paired:8.3f} engine / bare, the two taking turns step by step "
          f"({args.steps} steps each, {paired_snapshots} snapshots of the monitor among them, due "
          f"twice as often as in a run); the loop alone {paired_loop:.3f}, so "
          f"{paired_loop * (1.0 - MONITOR_SHARE[0]):.3f} with the monitor's share of the first window")
    print(f"start-up snapshot : {statistics.median(START_SNAPSHOT):8.2f} s after the first step, "
          "before the measured window (the weights the run started from, once per run)")
    quiet_median = statistics.median(quiet)
    print(f"without monitor   : {quiet_median:8.1f} images/s  = {quiet_median / bare_median:.3f} of bare "
          "(the monitor embeds 2,000 items every few seconds for the map, collapse meter and kNN)")
    print(f"augmentation      : {augment:8.1f} views/s  = {augment / (views * bare_median):.1f}x "
          f"what the model consumes ({views} views per image)")


if __name__ == "__main__":
    main()
