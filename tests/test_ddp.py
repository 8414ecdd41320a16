"""Data parallel training with two CPU processes over gloo."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sslstudio.core.objectives.simclr import nt_xent_loss


def _rank_worker(rank: int, world: int, init_file: str, z1, z2, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        n = z1.shape[0] // world
        local1 = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        local2 = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        loss = nt_xent_loss(local1, local2, 0.3)
        loss.backward()
        out[rank] = (float(loss), local1.grad.clone(), local2.grad.clone())
    finally:
        dist.destroy_process_group()


def test_simclr_negatives_are_gathered_across_ranks(tmp_path):
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), z1, z2, out), nprocs=2, join=True)
    full1, full2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = nt_xent_loss(full1, full2, 0.3)
    full.backward()
    # The full-batch loss is the mean of the ranks' losses (equal shares of anchors) ...
    assert (out[0][0] + out[1][0]) / 2 == pytest.approx(float(full.detach()), rel=1e-5)
    # ... and each rank's gradient, summed over ranks by the gather's backward, is 2x the full one.
    for rank in range(2):
        rows = slice(rank * 4, (rank + 1) * 4)
        assert torch.allclose(out[rank][1], 2 * full1.grad[rows], atol=1e-5)
        assert torch.allclose(out[rank][2], 2 * full2.grad[rows], atol=1e-5)


@pytest.mark.parametrize("objective", ["moco"])
def test_torchrun_two_processes_train_and_only_rank_zero_writes(image_folder, tmp_path, objective):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "sslstudio", "train", "--data", str(image_folder), "--out", str(run),
         "--objective", objective, "--epochs", "2", "--batch-size", "4", "--image-size", "16",
         "--set", "log_every_steps=1", "--set", "queue_size=32"],
        capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("run completed at step 6") == 1  # 24 images / 2 ranks / 4 per step
    assert "x2 processes" in result.stdout
    with open(run / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
    # Rank 0 alone writes: the last checkpoint, and the one before it kept as a fallback.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) in (
        ["last.safetensors"], ["last.safetensors", "previous.safetensors"])


def test_under_torchrun_the_teachers_pass_is_shared_and_every_process_gets_the_same_targets(tmp_path):
    import numpy as np

    from tests.conftest import make_image_folder

    # More items than a teacher's chunk (64), so that both processes encode a part.
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=48, size=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    common = ["--data", str(folder), "--image-size", "16", "--batch-size", "8"]

    def sslstudio(*args, torchrun=False):
        launcher = (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
                    if torchrun else [])
        result = subprocess.run([sys.executable, *launcher, "-m", "sslstudio", "train", *common, *args],
                                capture_output=True, text=True, timeout=240, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout

    sslstudio("--out", str(tmp_path / "teacher"), "--epochs", "1")
    # A budget in minutes: rank 0's timing of its first chunk decides how much the pass covers.
    shared = sslstudio("--out", str(tmp_path / "two"), "--teacher", str(tmp_path / "teacher"),
                       "--minutes", "0.05", torchrun=True)
    assert shared.count("run completed") == 1 and "x2 processes" in shared
    # What one process gets from the same teacher over the same items.
    from sslstudio.core.control import RunControl, run_to_end
    from sslstudio.core.data import load_image_folder
    from sslstudio.core.teacher import load_teacher, teacher_targets

    teacher = load_teacher(str(tmp_path / "teacher"), "image", torch.device("cpu"))
    one = run_to_end(teacher_targets(teacher, run_to_end(load_image_folder(folder, 16)),
                                     torch.device("cpu"), RunControl(), 0.0, 0.0, 0))
    with np.load(tmp_path / "two" / "teacher-features.npz") as two:
        assert list(two["indices"]) == list(range(144)) == list(one.indices)
        np.testing.assert_allclose(two["features"].astype(np.float32),
                                   one.features.astype(np.float32), atol=2e-2)
