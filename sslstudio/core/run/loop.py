"""The training loop: steps, logs, checkpoints and the budget, one yield at a time; each yield
is where pause and cancel act.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from sslstudio.core import distributed
from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import (
    Checkpointed,
    RunFinished,
    RunWarning,
    StepMetrics,
)
from sslstudio.core.fileio import DiskFull, disk_full, is_disk_full
from sslstudio.core.run.checkpoint import (
    LoopState,
    load_checkpoint,
    save_checkpoint,
)
from sslstudio.core.run import calibration
from sslstudio.core.run.folder import MetricsLog
from sslstudio.core.run.judge import (
    BestEncoder,
    FlatLoss,
    Monitor,
)
from sslstudio.core.run.plan import (
    CALIBRATION_SHARE,
    CPU_ACTIVATION_BUDGET,
    CPU_SAVED_BUDGET,
    RunPlan,
    fit_to_budget,
)

MONITOR_CHUNK = 512
AUTO_LOG_INTERVAL_S = 0.2


@dataclass
class Clock:
    """Training time, excluding pauses, continued across resumes."""

    control: RunControl
    offset: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.started - self.control.paused_seconds


@dataclass(frozen=True)
class LoopParts:
    """What a run's loop is made with besides its plan, so that a test can hand in its own: the
    clock the budget is measured by (made from the run's control and the time already spent),
    the judge that takes snapshots and scores encoders (a `Monitor` or one of its kind), and
    whether the plan is fitted to steps timed on this machine before the first step."""

    clock: Callable[[RunControl, float], Clock] = Clock
    judge: Callable[..., Monitor] = Monitor
    fit_plan_to_machine: bool = True


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warmup over the first `warmup` of the budget, then cosine decay to zero."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    remaining = (progress - warmup) / max(1e-12, 1.0 - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(remaining, 0.0), 1.0)))



class TrainingLoop:
    """The model, optimizer and loop state of one run, and the loop over its steps."""

    def __init__(self, config, objective_config, setup, plan, preprocess, data, objective, model,
                 optimizer, generators, training_items: np.ndarray | None = None):
        self.config, self.objective_config, self.setup = config, objective_config, setup
        self.plan, self.preprocess, self.data = plan, preprocess, data
        self.objective, self.model, self.optimizer = objective, model, optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.generators = generators
        self.batch_size = plan.batch_size
        # The items steps draw from: all, or those an objective prepared for (a teacher's).
        self.training_items = training_items
        self.per_rank = (len(data) if training_items is None else len(training_items)) // setup.world
        self.state = LoopState(batch_size=plan.batch_size)
        self.metrics_log: MetricsLog | None = None
        self.monitor: Monitor | None = None
        self.step_seconds = 0.0  # a running mean of recent steps, for the stop rule
        self.saved_bytes_per_item = 0.0  # measured before the first step
        self.calibration_loss = math.nan  # the loss of the last timed pass
        self.judging_labels: np.ndarray | None = None  # the user's, over the folder's
        self.save_seconds = 0.0
        self.best: BestEncoder | None = None
        self.initial: InitialWeights | None = None  # while the step-0 snapshot is owed
        self.flat_loss = FlatLoss()

    @classmethod
    def build(cls, config, objective_config, setup, plan, preprocess, data, weights, prepared=None):
        device = setup.device
        # The global seed fixes initialisation for every rank; each rank augments differently.
        torch.manual_seed(config.seed)
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed * 1000 + 17 + setup.rank)
        encoder = preprocess.build_encoder(config, plan.backbone, weights)
        objective = preprocess.make_objective(setup.objective_cls, encoder, objective_config, config,
                                              data, setup.run, device, generator).to(device)
        if prepared is not None:
            objective.attach(prepared, device)
        objective = preprocess.prepare_model(objective)
        model = objective
        if setup.world > 1:
            model = DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = make_optimizer(objective, objective_config, plan.encoder_lr_scale)
        return cls(config, objective_config, setup, plan, preprocess, data, objective, model,
                   optimizer, {"augment": generator},
                   prepared.items if prepared is not None else None)

    def restore(self) -> str:
        """Load the checkpoint; returns what the user should know about it, or ""."""
        self.state, note = load_checkpoint(self.setup.run.checkpoint_path, self.objective,
                                           self.optimizer, self.generators)
        saved = self.state.batch_size
        if saved and saved != self.batch_size:
            # The run's own batch, unless the folder has shrunk below it since (which the
            # plan's warning has said when the saved setting was that batch).
            if saved <= self.per_rank:
                self.batch_size = saved
            elif self.batch_size != self.per_rank:
                self.batch_size = self.per_rank
                note += (("; " if note else "") + f"the folder now holds {self.per_rank} items per "
                         f"process, fewer than the run's batch of {saved}: batch {self.batch_size} "
                         "from here on")
        self.plan = dataclasses.replace(self.plan, batch_size=self.batch_size,
                                        steps_per_epoch=self.per_rank // self.batch_size)
        return note

    def fit_to_budget(self) -> None:
        """Time a few steps on this machine and size the batch and the monitor's sample so the
        budget buys enough steps; the time it takes counts against the budget."""
        started = time.monotonic()
        allowance = CALIBRATION_SHARE * self.plan.minutes * 60.0 if self.plan.minutes else 10.0
        smallest = getattr(self.setup.objective_cls, "smallest_batch", 16)
        memory = CPU_SAVED_BUDGET if self.setup.device.type == "cpu" else 0

        def plan_for(seconds_per_item: float) -> RunPlan:
            return fit_to_budget(self.plan, self.config, seconds_per_item, smallest,
                                 self.saved_bytes_per_item, memory, self.preprocess.features_cost())

        seconds_per_item = self.time_per_item(allowance, plan_for)
        self.plan = plan_for(seconds_per_item)
        self.batch_size = self.state.batch_size = self.plan.batch_size
        self.step_seconds = seconds_per_item * self.batch_size
        self.state.elapsed_s += time.monotonic() - started

    def time_per_item(self, allowance: float, plan_for) -> float:
        """Seconds per item of a training step (forward and backward, no update), measured at a
        small batch and then, if the allowance leaves room and the figure can change the plan
        (`plan_for`), at the planned one. Weights, buffers (BatchNorm statistics, queues) and
        random states are left exactly as they were."""
        started = time.monotonic()
        state = {k: v.detach().clone() for k, v in self.objective.state_dict().items()}
        generators = {k: g.get_state() for k, g in self.generators.items()}
        cpu_rng = torch.get_rng_state()
        seconds_per_item = 0.0
        try:
            calibration.timed_pass(self, min(self.batch_size, 8))  # pays one-time costs (kernels, allocator)
            # Per item, a batch of a few items costs more than a large one: time a middle one,
            # then the planned one if the allowance leaves room.
            middle = min(self.batch_size, 32)
            seconds_per_item = calibration.timed_pass(self, middle, measure_memory=True) / middle
            calibration.raise_trivial_temperature(self, middle)
            spent = time.monotonic() - started
            # Per item, the planned batch costs at most what the middle one did and at least
            # middle/batch of it (were the middle step all overhead). A plan that comes out the
            # same at both ends does not need the planned batch timed: a step's time saved at the
            # start of most runs (0.23 s of a second run's 3 s start on two cores).
            settled = self.batch_size <= middle or plan_for(seconds_per_item) == plan_for(
                seconds_per_item * middle / self.batch_size)
            if not settled and spent + seconds_per_item * self.batch_size < allowance:
                seconds_per_item = calibration.timed_pass(self, self.batch_size) / self.batch_size
        except torch.OutOfMemoryError:
            pass  # the loop halves the batch on its own
        finally:
            self.objective.zero_grad(set_to_none=True)
            self.objective.load_state_dict(state)
            for name, generator in self.generators.items():
                generator.set_state(generators[name])
            torch.set_rng_state(cpu_rng)
        return seconds_per_item

    def first_items(self, count: int) -> np.ndarray:
        items = np.arange(count) if self.training_items is None else self.training_items[:count]
        return items

    def forward(self, inputs: torch.Tensor, items: np.ndarray):
        """The objective's (loss, metrics) on a batch of `items`, through DDP when it is on."""
        if self.objective.reads_item_indices:
            return self.model(inputs, torch.from_numpy(np.asarray(items, np.int64)))
        return self.model(inputs)

    # -- the loop ---------------------------------------------------------------------------
    def progress(self) -> float:
        if self.config.epochs:
            return min(1.0, (self.state.epoch + self.state.position / max(1, self.per_rank))
                       / self.config.epochs)
        return min(1.0, self.clock.elapsed() / (self.plan.minutes * 60.0))

    def run(self, control: RunControl, first_snapshot: bool, parts: LoopParts = LoopParts()
            ) -> Iterator:
        config, setup, state = self.config, self.setup, self.state
        self.clock = parts.clock(control, state.elapsed_s)
        if setup.main:
            self.monitor = parts.judge(self.data, config, setup.device, self.objective,
                                    self.preprocess, setup.run, self._eval_chunk(),
                                    self.plan.monitor_items or config.monitor_items,
                                    self.judging_labels,
                                    judge_without_labels=bool(self.plan.weights))
            self.best = BestEncoder.of(setup.run, self.monitor)
            reference = self.objective.reference_features(self.monitor.indices)
            if reference is not None:
                self.monitor.judge_reference(reference)
        # The step-0 snapshot is taken after the first step, from a copy of the weights the run
        # starts with: the first step shows that much sooner, for the same work (6.4 s sooner
        # for a pretrained Lite0 on stamps with a 5-minute budget on two cores).
        self.initial = InitialWeights(self.objective) if first_snapshot and self.monitor is not None else None
        self.objective.train()
        self.log = LogWindow(setup.device)
        last_checkpoint = time.monotonic()
        status, message = "completed", ""
        try:
            while not self._budget_spent():
                order = epoch_order(self.per_rank * setup.world, config.seed, state.epoch,
                                    setup.rank, setup.world)
                if self.training_items is not None:
                    order = self.training_items[order]
                if state.position == 0 and self.batch_size > len(order):
                    # Not one step fits in an epoch: spinning through empty epochs never ends.
                    raise DataError(f"batch size {self.batch_size} is larger than the {len(order)} "
                                    "items per process, so no training step can run; lower the "
                                    "batch size")
                stopped = False
                while state.position + self.batch_size <= len(order) and not stopped:
                    step_started = time.monotonic()
                    took = yield from self._step(order[state.position:state.position + self.batch_size])
                    if not took:
                        continue  # out of memory: the batch was halved, the step is retried
                    self._time_step(time.monotonic() - step_started)
                    out_of_budget = self._out_of_time()
                    final = out_of_budget or bool(
                        config.epochs and state.epoch + 1 >= config.epochs
                        and state.position + self.batch_size > len(order))
                    if final:
                        yield from self._initial_snapshot()  # the run's last snapshot stays its last
                    logged = self.log.due(final, state.step, config.log_every_steps)
                    if logged:
                        yield from self._log(final)
                    control.checkpoint()
                    yield from self._initial_snapshot()
                    if logged and time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60:
                        last_checkpoint = time.monotonic()
                        yield from self._save()
                    stopped = distributed.any_rank(out_of_budget, setup.device) if setup.world > 1 \
                        else out_of_budget
                if stopped:
                    break
                state.epoch += 1
                state.position = 0
                if not self._budget_spent():
                    # Pause and cancel hold at every epoch boundary too, even after an epoch
                    # that had no step left to run.
                    control.checkpoint()
            yield from self._save()
            yield from self._keep_best()
        except Diverged as diverged:
            status, message = "failed", str(diverged)
        except DataError as error:
            status, message = "failed", str(error)
        except OSError as error:
            if not is_disk_full(error):
                raise
            full = error if isinstance(error, DiskFull) else disk_full(setup.run.path, None)
            status, message = "failed", (
                f"{full.strerror}. Training stopped at step {state.step} and keeps its last "
                f"checkpoint: resume it once there is room (`sslstudio train --resume {setup.run.path}`)")
        except Cancelled:
            status, message = "cancelled", "stopped by the user; resume to continue"
            # Stopped during the first step: the weights it started from are still judged, so
            # the best-encoder rule can keep them.
            yield from self._initial_snapshot()
            yield from self._save()
            yield from self._keep_best()
        finally:
            if self.metrics_log is not None:
                self.metrics_log.close()
        if setup.main:
            try:
                setup.run.write_status(status, state.step, message)
            except OSError as error:
                if not is_disk_full(error):
                    raise  # on a full disk the status is lost; the event below still says why
        checkpoint = setup.run.checkpoint_path
        yield RunFinished(status, state.step, message, str(checkpoint) if checkpoint.exists() else "")

    def _initial_snapshot(self) -> Iterator:
        """The step-0 snapshot, once, if the run still owes it."""
        if self.initial is None:
            return
        initial, self.initial = self.initial, None
        with initial.loaded(self.objective):
            yield from self.monitor.run(0, 0.0)
            self.best.consider(0, self.objective)

    def _eval_chunk(self) -> int:
        """Items the monitor embeds at once: within the same activation budget as training on a
        CPU (512 texts at once took 200 MB more than the steps of a 40-text batch)."""
        per_item = self.preprocess.activation_bytes_per_item(views=1)
        if not per_item or self.setup.device.type != "cpu":
            return MONITOR_CHUNK
        return int(min(MONITOR_CHUNK, max(8, CPU_ACTIVATION_BUDGET // per_item)))

    def _budget_spent(self) -> bool:
        """Also true for a run resumed after it had finished: it takes no step."""
        if self.config.epochs:
            return self.state.epoch >= self.config.epochs
        # A run takes at least one step, however short its budget: none would train nothing.
        return self.state.step > 0 and self._out_of_time()

    def _out_of_time(self) -> bool:
        """A minutes budget ends when the next step, the last snapshot and the last checkpoint
        would no longer fit in it: the run ends on time, not one long step or one monitor
        pass after it."""
        if self.config.epochs:
            return False
        finishing = self.step_seconds + self.save_seconds + (self.monitor.took if self.monitor else 0.0)
        return self.clock.elapsed() + finishing >= self.plan.minutes * 60.0

    def _time_step(self, seconds: float) -> None:
        # A running mean that follows a machine getting busier without trusting one slow step.
        self.step_seconds = seconds if not self.step_seconds else 0.8 * self.step_seconds + 0.2 * seconds

    def _step(self, indices: np.ndarray) -> Iterator:
        """One optimizer step on `indices`; returns False when it ran out of memory instead."""
        device = self.setup.device
        batch = self.data.batch(indices)
        if device.type == "cuda":
            batch = batch.pin_memory()
        inputs = self.preprocess.training_inputs(batch, device)
        progress = self.progress()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * lr_factor(progress, self.config.warmup_fraction)
        try:
            with calibration.autocast(device):
                loss, extra = self.forward(inputs, indices)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.config.grad_clip)
            self.optimizer.step()
        except torch.OutOfMemoryError:
            if self.batch_size <= 2:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            self.batch_size //= 2
            yield RunWarning("out_of_memory", f"out of memory on {device}; batch size halved to "
                             f"{self.batch_size} and the step retried", self.state.step)
            return False
        self.objective.after_step(progress)
        self.log.add(loss, extra, self.batch_size)
        self.state.step += 1
        self.state.position += self.batch_size
        if device.type == "cpu":
            # On the CPU the check is free; on a GPU it waits for the device, so it happens at
            # log points only (a NaN in between still poisons the sum).
            yield from self._check_finite()
        return True

    def _check_finite(self) -> Iterator:
        finite = bool(torch.isfinite(self.log.loss_sum))
        if self.setup.world > 1:
            finite = not distributed.any_rank(not finite, self.setup.device)
        if not finite:
            step = self.state.step
            yield RunWarning("non_finite", divergence_message(
                self.objective, self.objective_config, step, self.setup.run.checkpoint_path), step)
            raise Diverged(f"loss is not finite at step {step}; "
                            f"{self.objective.divergence_hint} and start again")

    def _log(self, final: bool) -> Iterator:
        device = self.setup.device
        if device.type != "cpu":
            yield from self._check_finite()
        elapsed, progress = self.clock.elapsed(), self.progress()
        if final and not self.config.epochs:
            progress = 1.0  # the stop rule ends a minutes budget a step's time before its end
        loss, samples_per_s, extra = self.log.take()  # before the monitor's time is counted
        snapshot_events = []
        if self.monitor is not None and self.initial is None and (final or self.monitor.due()):
            snapshot_events = list(self.monitor.run(self.state.step, progress))
            self.best.consider(self.state.step, self.objective)
        event = StepMetrics(
            step=self.state.step, epoch=self.state.epoch, loss=loss,
            lr=self.optimizer.param_groups[0]["lr"], samples_per_s=samples_per_s,
            elapsed_s=elapsed, progress=progress,
            eta_s=0.0 if final else _eta(elapsed, progress, self.plan.minutes, self.config.epochs),
            batch_size=self.batch_size, extra=extra,
            gpu_memory_bytes=(torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0),
            **(self.monitor.latest_fields() if snapshot_events else {}))
        if self.metrics_log is not None:
            self.metrics_log.write(event)
        yield event
        yield from snapshot_events
        if self.setup.main and self.flat_loss.sat_at_zero(loss, self.state.step):
            yield RunWarning("loss_zero", self.flat_loss.message(self.batch_size, self.objective),
                             self.state.step)

    def _save(self) -> Iterator:
        if not self.setup.main:
            return
        started = time.monotonic()
        self.state.elapsed_s = self.clock.elapsed()
        self.state.batch_size = self.batch_size
        save_checkpoint(self.setup.run.checkpoint_path, self.objective, self.optimizer, self.state,
                        self.generators)
        if self.monitor is not None:
            self.monitor.save_snapshot()
        if self.best is not None:
            self.best.write()  # a crash keeps the best encoder found so far
        self.save_seconds = time.monotonic() - started
        yield Checkpointed(self.state.step, str(self.setup.run.checkpoint_path))

    def _keep_best(self) -> Iterator:
        """Say so when an earlier encoder than the last scored better: embed, adapt and export
        use it (the run's last checkpoint stays for resuming)."""
        if self.best is None or not self.setup.main:
            return
        self.best.write()
        note = self.best.note(bool(self.plan.weights))
        if note:
            yield RunWarning("best_encoder", note, self.state.step)
        closing = self.objective.closing_note(self.monitor, self.setup.device)
        if closing:
            yield RunWarning("summary", closing, self.state.step)


class InitialWeights:
    """The objective's weights and buffers as the run started, to be judged after its first step."""

    def __init__(self, objective: torch.nn.Module):
        self.state = {k: v.detach().clone() for k, v in objective.state_dict().items()}

    @contextmanager
    def loaded(self, objective: torch.nn.Module):
        trained = {k: v.detach().clone() for k, v in objective.state_dict().items()}
        objective.load_state_dict(self.state)
        try:
            yield
        finally:
            objective.load_state_dict(trained)
            self.state = {}


class LogWindow:
    """Loss and throughput summed since the last logged step."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.steps = self.samples = 0
        self.started = time.monotonic()
        self.extra: dict = {}

    def add(self, loss: torch.Tensor, extra: dict, samples: int) -> None:
        self.loss_sum += loss.detach().float()
        self.extra = extra
        self.steps += 1
        self.samples += samples

    def due(self, final: bool, step: int, every_steps: int) -> bool:
        if final:
            return True
        if every_steps:
            return step % every_steps == 0
        return time.monotonic() - self.started >= AUTO_LOG_INTERVAL_S

    def take(self) -> tuple[float, float, dict]:
        """(mean loss, samples per second, the last step's extra figures), and start again."""
        dt = max(time.monotonic() - self.started, 1e-9)
        out = (float(self.loss_sum) / max(1, self.steps), self.samples / dt,
               {k: float(v) for k, v in self.extra.items()})
        self.loss_sum.zero_()
        self.steps = self.samples = 0
        self.started = time.monotonic()
        return out


class Diverged(Exception):
    pass



def divergence_message(objective, objective_config, step: int, checkpoint_path: Path) -> str:
    kept = (f"the last good checkpoint ({checkpoint_path}) is kept" if checkpoint_path.exists()
            else "no checkpoint had been written yet")
    return (f"loss became NaN or infinite at step {step}: {objective.divergence_hint} "
            f"(lr is {objective_config.lr:g}); {kept}")


def _eta(elapsed: float, progress: float, minutes: float, epochs: int) -> float:
    if not epochs:
        return max(0.0, minutes * 60.0 - elapsed)
    if progress <= 0:
        return float("nan")
    return elapsed / progress * (1.0 - progress)


def epoch_order(count: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This rank's share of the epoch's shuffled order; a pure function of (seed, epoch), so a
    resumed run sees exactly the batches the interrupted one would have."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(count, generator=generator).numpy()
    per_rank = count // world
    return order[rank * per_rank:(rank + 1) * per_rank]


def make_optimizer(objective, objective_config, encoder_scale: float = 1.0) -> torch.optim.Optimizer:
    groups = objective.param_groups(objective_config.weight_decay)
    if encoder_scale != 1.0:
        # Each group splits into the encoder's parameters (scaled lr) and the heads' (full lr).
        encoder_ids = {id(p) for p in objective.encoder.parameters()}
        split = []
        for group in groups:
            mine = [p for p in group["params"] if id(p) in encoder_ids]
            rest = [p for p in group["params"] if id(p) not in encoder_ids]
            if mine:
                split.append({**group, "params": mine, "lr": objective_config.lr * encoder_scale})
            if rest:
                split.append({**group, "params": rest, "lr": objective_config.lr})
        groups = split
    else:
        groups = [{**group, "lr": objective_config.lr} for group in groups]
    if objective_config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=objective_config.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=objective_config.lr)
