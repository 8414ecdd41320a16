"""Before a run's first step: a few passes timed on this machine (the plan sizes the batch and the
monitor's sample from them), and a contrastive loss that a measured batch shows cannot inform
given a temperature at which it can. The loop's weights and random states are restored after."""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext

import torch

from sslstudio.core.run.judge import INFORMATIVE_SHARE, TRIVIAL_SHARE, informative_temperature


def autocast(device: torch.device):
    """bfloat16 on CUDA (the steps and the timed passes alike); full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def raise_trivial_temperature(loop, count: int) -> None:
    """A contrastive loss already near zero on a measured batch (a pretrained encoder tells
    its own two views apart at once, and the loss then sinks to 1e-5 within steps) cannot
    inform training: its temperature is raised, when it is the objective's default, until
    the same batch's loss is a tenth of its chance level. Runs inside the calibration, whose
    weights and random states are restored afterwards."""
    config = loop.objective_config
    loss = loop.calibration_loss
    chance = math.log(max(2, count))
    if not (loss < TRIVIAL_SHARE * chance) or not hasattr(config, "temperature"):
        return
    default = type(config)().temperature
    if config.temperature != default:
        return  # the user's choice stands; the monitor says if the loss sits at zero
    items = loop.first_items(count)
    inputs = loop.preprocess.training_inputs(loop.data.batch(items), loop.setup.device)

    def loss_at(temperature: float) -> float:
        config.temperature = temperature
        with torch.no_grad(), autocast(loop.setup.device):
            return float(loop.forward(inputs, items)[0])

    try:
        chosen, informed = informative_temperature(loss_at, default, INFORMATIVE_SHARE * chance)
    finally:
        config.temperature = default
    if chosen == default:
        return
    config.temperature = chosen
    loop.plan = dataclasses.replace(loop.plan, reasons=loop.plan.reasons + (
        f"temperature {chosen:g}: at {default:g} a measured batch's loss was {loss:.1e}, too "
        f"small to teach anything (this encoder already tells each item's views apart), at "
        f"{chosen:g} it is {informed:.3f}",))

def timed_pass(loop, count: int, measure_memory: bool = False) -> float:
    """Seconds of one forward and backward pass over `count` items; with `measure_memory`,
    also what autograd kept for the backward pass, per item (the bulk of a step's memory,
    which on a CPU no error reports before the system kills the process)."""
    device = loop.setup.device
    items = loop.first_items(count)
    inputs = loop.preprocess.training_inputs(loop.data.batch(items), device)
    saved = [0]

    def keep(tensor):
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    hooks = (torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor)
             if measure_memory else nullcontext())
    started = time.monotonic()
    with autocast(device), hooks:
        loss, _ = loop.forward(inputs, items)
    loop.calibration_loss = float(loss.detach())
    if measure_memory:
        loop.saved_bytes_per_item = saved[0] / count
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    took = time.monotonic() - started
    loop.objective.zero_grad(set_to_none=True)
    return took
