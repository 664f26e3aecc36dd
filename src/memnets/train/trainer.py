"""The training loop: ``train(config, run_dir)`` and loading a finished run.

One loop serves every task: full BPTT (each batch is independent) or truncated
BPTT (a stateful task's state is carried, detached, from batch to batch);
evaluation of the dev split every ``eval_every`` steps or each epoch; early
stopping and the plateau schedule on the task's main metric; checkpoints that
``--resume`` continues exactly; a NaN/Inf loss stops the run and keeps the last
good checkpoint; DDP under ``torchrun``.  Options: gradient accumulation
(``trainer.accumulate``: several micro-batches per optimizer step), bfloat16 or
float16 autocast (``trainer.precision``; float16 with a gradient scaler, on
CUDA) and ``torch.compile`` of the training forward (``trainer.compile``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from memnets.config import Config, ConfigError, dump_config
from memnets.errors import CheckpointError, MemnetsError, TrainingError, shorten
from memnets.tasks.base import Task, add_stats, all_reduce_stats, detach_state
from memnets.train import distributed as ddp
from memnets.train.checkpoint import (
    CHECKPOINTS,
    RunLock,
    all_finite,
    atomic_write_text,
    complete_checkpoints,
    find_latest,
    json_field,
    json_safe,
    load_checkpoint,
    load_model_weights,
    load_optimizer_state,
    optimizer_state,
    pack_tree,
    read_pointer,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_dir_name,
    unpack_tree,
)
from memnets.train.logs import MetricsLogger, format_metrics
from memnets.train.optim import LRSchedule, build_optimizer, set_lr
from memnets.train.provenance import git_commit, provenance
from memnets.train.runs import (  # noqa: F401  (load_run and make_task: re-exported)
    build_from_files,
    load_run,
    load_task_state,
    make_task,
    read_run_config,
    read_task_state,
)


class _Diverged(TrainingError):
    """A non-finite loss, weights or dev metric (``trainer.on_divergence`` decides)."""


@dataclass
class Progress:
    """Counters saved in every checkpoint (``trainer.json``)."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # global batches done in that epoch
    step: int = 0  # optimizer steps done
    best: float | None = None  # best dev main metric so far
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best
    elapsed: float = 0.0  # training seconds before this process started
    last_eval: int = -1  # the step of the last dev evaluation
    last_metrics: dict = field(default_factory=dict)


def _better(a: float, b: float | None, higher: bool) -> bool:
    """Whether ``a`` is a better main metric than the best so far ``b`` (NaN never is)."""
    if not math.isfinite(a):
        return False
    if b is None or not math.isfinite(b):
        return True
    return a > b if higher else a < b


# device types on which ``trainer.precision: fp16`` runs (float16 autocast and a
# GradScaler).  On the CPU torch can do both, but float16 ran 2.8x slower than
# float32 there (the adding task's LSTM), the CPU's fused LSTM kernel has no float16
# version, and bfloat16, which needs no scaler, runs at float32's speed.
_FP16_DEVICES = {"cuda"}


def _compile_problem() -> str | None:
    """Why ``torch.compile`` cannot run with this torch and Python, or ``None``."""
    if not callable(getattr(torch, "compile", None)):
        return f"torch {torch.__version__} has no torch.compile (it needs torch 2.0 or later)"
    try:
        from torch._dynamo import is_dynamo_supported
    except ImportError:  # pragma: no cover - a torch without dynamo's check
        return None
    if not is_dynamo_supported():
        return (f"torch {torch.__version__} cannot compile on Python "
                f"{sys.version.split()[0]} ({sys.platform})")
    return None


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which a failed ``torch.compile`` shows at its first call."""
    try:
        from torch._dynamo.exc import BackendCompilerFailed
    except ImportError:  # pragma: no cover
        return ()
    return (BackendCompilerFailed,)


def _with_last(items: Iterable) -> Iterator[tuple[object, bool]]:
    """``(item, is_last)`` for each item, looking one ahead."""
    it = iter(items)
    try:
        item = next(it)
    except StopIteration:
        return
    for following in it:
        yield item, False
        item = following
    yield item, True


def _scale_grads(model: nn.Module, factor: float) -> None:
    """Multiply every gradient of ``model`` by ``factor`` in place (sparse ones too)."""
    for p in model.parameters():
        if p.grad is not None:
            p.grad.mul_(factor)


def _epoch_number(prog: Progress) -> int:
    """The 1-based epoch that the last step belongs to: the one in progress, or the
    one that just ended (so that an evaluation at the end of epoch 2 is epoch 2 in
    the log lines and in ``metrics.jsonl`` alike)."""
    return prog.epoch if prog.batch == 0 and prog.step > 0 else prog.epoch + 1


# --------------------------------------------------------------------------- training


# what the engine itself writes into a run directory
# an evaluation that took this long is announced before the next one, in a log file
LONG_EVAL_SECONDS = 10.0

_RUN_FILES = {".lock", "config.yaml", "task.json", "metrics.jsonl", "metrics.csv",
              "results.json", CHECKPOINTS, "tensorboard"}


class Trainer:
    """Trains one recipe into one run directory.  Use :func:`train`."""

    def __init__(self, config: Config, run_dir: Path, *, resume: bool = False,
                 device: str | None = None, quiet: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.quiet = quiet
        tc = config.trainer
        if device is not None:
            tc.device = device
        if tc.threads is not None:
            torch.set_num_threads(tc.threads)
        self.dist = ddp.setup(tc.device)
        self.device = self.dist.device
        # the data order depends on the seed; dropout and init on seed + rank
        ddp.seed_everything(tc.seed + self.dist.rank, tc.deterministic)

    def log(self, msg: str) -> None:
        if self.dist.is_main and not self.quiet:
            print(msg, flush=True)

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        # the commit of the code this process imported, read before it can move on
        self.commit = git_commit() if self.dist.is_main else None
        try:
            self._check_options()
            self._check_run_dir()
            with RunLock(self.run_dir) if self.dist.is_main else nullcontext():
                self._check_run_dir()  # again, now that no other process can start one here
                return self._run()
        finally:
            ddp.teardown(self.dist)

    def _check_options(self) -> None:
        """Options that this device or this torch cannot run: a :class:`ConfigError`
        before anything is written."""
        tc = self.config.trainer
        if tc.precision == "fp16" and self.device.type not in _FP16_DEVICES:
            raise ConfigError(f"trainer.precision: fp16 (float16 autocast with a gradient "
                              f"scaler) needs a CUDA device, got {self.device}; use bf16 "
                              f"there (or fp32)")
        if tc.compile is not False:
            problem = _compile_problem()
            if problem is not None:
                raise ConfigError(f"trainer.compile: {problem}; set trainer.compile: false")

    def _check_run_dir(self) -> None:
        """A fresh run goes into a new, empty or unfinished run directory only."""
        run_dir = self.run_dir
        if self.resume or not run_dir.exists():
            return
        if not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir}: expected a folder, got a file")
        if (run_dir / CHECKPOINTS / "latest.json").exists() or complete_checkpoints(run_dir):
            raise ConfigError(f"{run_dir} already holds a run; add --resume to continue it or "
                              f"choose another --out")
        others = sorted(p.name for p in run_dir.iterdir() if p.name not in _RUN_FILES)
        if others and not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"--out {run_dir}: expected a new or empty folder (or a run directory), got one "
                f"holding {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}")

    def _run(self) -> dict:
        cfg, tc, d = self.config, self.config.trainer, self.dist
        run_dir = self.run_dir
        task = make_task(cfg)
        self.task = task
        latest = None
        if self.resume:
            latest, note = find_latest(run_dir)
            if latest is None:
                raise TrainingError(f"cannot resume: {run_dir} has no checkpoint "
                                    f"(checkpoints/latest.json)" + (f"; {note}" if note else ""))
            if note:
                self.log(f"warning: {note}")
            load_task_state(task, read_task_state(run_dir), run_dir / "task.json")
        else:
            task.setup()
        model = (build_from_files(task, cfg, run_dir) if self.resume
                 else task.build_model(cfg.model)).to(self.device)
        self.model = model
        optimizer = build_optimizer(model, cfg.optimizer)
        eval_bs = cfg.data.eval_batch_size or cfg.data.batch_size
        has_dev = "dev" in task.splits()
        needed = [s for s in ("train", "dev", "test") if s in task.splits()
                  and (s != "test" or tc.test)]
        task.uses_buckets()  # data.bucket for a task without lengths: a configuration error
        task.check_splits(tuple(needed))  # before the first step, not after the last
        per_epoch = task.num_batches("train", batch_size=cfg.data.batch_size)
        k = tc.accumulate  # micro-batches per optimizer step
        steps_per_epoch = -(-per_epoch // k)  # the last step of an epoch may take fewer
        budget = tc.max_epochs * steps_per_epoch
        if tc.max_steps is not None:
            budget = min(budget, tc.max_steps)
        schedule = LRSchedule(cfg.schedule, cfg.optimizer.lr, budget, task.higher_is_better)
        prog = Progress()
        carried = None
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
        autocast = (torch.autocast(self.device.type, dtype=amp) if amp is not None
                    else nullcontext())
        # float16 gradients underflow: the scaler multiplies the loss, unscales the
        # gradients and skips a step whose gradients overflowed (lowering the scale)
        scaler = torch.amp.GradScaler(self.device.type) if tc.precision == "fp16" else None
        if latest is not None:
            load_model_weights(model, latest / "model.safetensors")
            meta, tensors = load_checkpoint(latest)
            where = str(latest / "trainer.json")
            for key in ("optimizer", "schedule", "progress", "rng"):
                json_field(meta, key, dict, where)
            try:
                load_optimizer_state(optimizer, meta["optimizer"], tensors)
                schedule.load_state_dict(meta["schedule"])
                prog = Progress(**meta["progress"])
                if d.world_size == meta.get("world_size", 1):
                    set_rng_state(meta["rng"], tensors)
                task.load_train_state(model, meta.get("task_state") or {})
                if scaler is not None and meta.get("scaler") is not None:
                    scaler.load_state_dict(json_field(meta, "scaler", dict, where))
            except MemnetsError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                    RuntimeError) as e:
                what = f"the field {e.args[0]!r}" if isinstance(e, KeyError) else \
                    shorten(str(e), 120)
                raise CheckpointError(f"{where}: expected the trainer state of this recipe; "
                                      f"{type(e).__name__}: {what}") from None
            if meta.get("carried") is not None:
                carried = unpack_tree(meta["carried"], tensors, self.device, where=where)
            self._repair_best(prog, latest)
            self.log(f"resuming {run_dir} at step {prog.step} (epoch {prog.epoch + 1}, "
                     f"batch {prog.batch})")
        if d.is_main:  # everything checked: only now the run directory changes
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
            atomic_write_text(run_dir / "task.json", json.dumps(task.state_dict()))
        logger = MetricsLogger(run_dir, enabled=d.is_main,
                               keep_until_step=prog.step if latest is not None else None,
                               tensorboard=tc.tensorboard)
        net: nn.Module = model
        compile_errors: tuple[type[BaseException], ...] = ()
        if tc.compile is not False:
            # the training forward only: checkpoints, evaluation and the final test use
            # `model` itself (its state_dict keys carry no `_orig_mod.` prefix)
            net = torch.compile(model, mode=None if tc.compile is True else tc.compile)
            compile_errors = _compile_errors()
        if d.enabled:  # around the compiled module: DDP's gradient hooks stay outside it
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        synced = net  # under DDP, `synced.no_sync()` accumulates without an all-reduce
        n_params = sum(p.numel() for p in model.parameters())
        cell = task.model_cell(cfg.model)  # None: the model runs no cell (MemN2N)
        about = (f"{cell}, " if cell is not None else "") + f"{n_params:,} parameters"
        per_step = (f"{k} x batch {cfg.data.batch_size}" if k > 1
                    else f"batch {cfg.data.batch_size}")
        extras = [x for x in (tc.precision if amp is not None else "",
                              "compiled" if tc.compile is not False else "") if x]
        self.log(f"task {cfg.task}, model {type(model).__name__} ({about}), {budget} steps "
                 f"of {per_step}" + (f" ({', '.join(extras)})" if extras else "")
                 + f" on {self.device}"
                 + (f" x {d.world_size} processes" if d.enabled else "") + f" -> {run_dir}")
        if tc.compile is not False:
            self.log("trainer.compile: the first step compiles the model's forward and "
                     "backward (up to minutes); evaluation runs the plain model")

        bar = None
        if tc.progress and d.is_main and not self.quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, initial=prog.step, unit="step", dynamic_ncols=True,
                       leave=False)
        start = time.perf_counter() - prog.elapsed
        window: dict[str, float] = {}
        window_size, window_t = 0, time.perf_counter()
        stop = prog.step >= budget
        if tc.early_stopping is not None and prog.bad_evals >= tc.early_stopping:
            # a resumed run that had stopped early stays stopped (unless the resume
            # raised trainer.early_stopping): no further epoch, the same checkpoints
            self.log(f"early stopping: the run had stopped after {prog.bad_evals} "
                     f"evaluations without improvement; nothing more to train")
            stop = True

        def stopped(what: str, step: int | None = None) -> TrainingError:
            where = read_pointer(run_dir, "latest")
            kept = (f"the last good checkpoint is {where}" if where is not None
                    else "no checkpoint had been written yet")
            at = prog.step if step is None else step
            return _Diverged(f"{what} at step {at} (epoch {_epoch_number(prog)}): "
                                 f"training stopped; {kept}. Try a lower optimizer.lr or "
                                 f"optimizer.grad_clip")

        def checkpoint(pointers=("latest",)):
            if not all_finite(model):  # never keep non-finite weights as good
                raise stopped("the weights hold NaN or infinite values")
            tensors: dict = {}
            meta = {
                "progress": {**prog.__dict__, "elapsed": time.perf_counter() - start},
                "optimizer": optimizer_state(optimizer, tensors),
                "schedule": schedule.state_dict(),
                "rng": rng_state(tensors),
                "carried": pack_tree(carried, "carried", tensors) if carried is not None
                else None,
                "world_size": d.world_size,
                "step": prog.step,
                "task_state": task.train_state(model),
                "scaler": scaler.state_dict() if scaler is not None else None,
            }
            if d.is_main:
                save_checkpoint(run_dir, step_dir_name(prog.step), model=model, meta=meta,
                                tensors=tensors, pointers=pointers)
            ddp.barrier(d)

        eval_seconds = [0.0]  # the last evaluation's wall time

        def evaluate_dev() -> bool:
            """Evaluate, log, checkpoint; True if training should stop early."""
            split = "dev" if has_dev else "train"
            if bar is not None:
                bar.set_description_str(f"evaluating {split}")
            elif tc.progress and eval_seconds[0] >= LONG_EVAL_SECONDS:
                self.log(f"step {prog.step}: evaluating {split} (the last evaluation took "
                         f"{eval_seconds[0]:.0f} s)")
            t0 = time.perf_counter()
            metrics = task.evaluate(model, split, batch_size=eval_bs, rank=d.rank,
                                    world_size=d.world_size)
            eval_seconds[0] = time.perf_counter() - t0
            main = metrics.get(task.main_metric)
            if main is None:
                raise TrainingError(f"task {cfg.task!r} declares main metric "
                                    f"{task.main_metric!r} but metrics() returned "
                                    f"{sorted(metrics)}")
            if math.isfinite(main) and task.observe_dev(model, metrics):
                # a phase change (bAbI's linear start ending): score what will be saved
                metrics = task.evaluate(model, split, batch_size=eval_bs, rank=d.rank,
                                        world_size=d.world_size)
                main = metrics.get(task.main_metric)
            logger.log({"step": prog.step, "epoch": _epoch_number(prog), "split": split,
                        "time": time.perf_counter() - start, **metrics})
            if not math.isfinite(main):
                raise stopped(f"{split} {task.main_metric} is {main}")
            improved = _better(main, prog.best, task.higher_is_better)
            tied = not improved and main == prog.best
            if improved:
                prog.best, prog.best_step, prog.bad_evals = main, prog.step, 0
            else:  # a tie is no improvement (early stopping, plateau) but moves `best`
                prog.bad_evals += 1
                if tied:
                    prog.best_step = prog.step
            prog.last_metrics = metrics
            prog.last_eval = prog.step
            if schedule.observe(main):
                self.log(f"step {prog.step}: {split} {task.main_metric} did not improve; "
                         f"learning rate now {schedule.lr(prog.step, prog.epoch):.3g}")
            checkpoint(("latest", "best") if improved or tied else ("latest",))
            epoch = _epoch_number(prog)
            when = f"end of epoch {epoch}" if prog.batch == 0 and prog.step > 0 else \
                f"epoch {epoch}"
            msg = f"step {prog.step} ({when}): {split} {format_metrics(metrics)}"
            if bar is None:
                self.log(msg)
            else:
                bar.write(msg)
                bar.set_postfix_str(f"{split} {task.main_metric} {main:.4g}")
            return tc.early_stopping is not None and prog.bad_evals >= tc.early_stopping

        def backward(out, micro: int, last: bool) -> None:
            """Accumulate the gradient of one micro-batch (the ``micro``-th of its step).

            The step's gradient is the mean of its micro-batches' gradients weighted
            by their sizes ``n_i`` (``StepOutput.size``): for batch-mean losses, that
            of one batch of them all.  Sizes are known one by one, so micro-batch ``i``
            is weighted ``n_i / (k n_1)`` and, if the sizes did not add up to
            ``k n_1``, the earlier gradients are rescaled before the last backward
            (under DDP that one all-reduces the sum)."""
            n = float(out.size)
            if micro == 0:
                sizes[:] = [n if n > 0 else 1.0, 0.0]  # the first size; the running sum
            sizes[1] += n
            first, total = sizes
            if not last:
                weight = n / (k * first)
            else:
                if micro > 0 and total > 0 and total != k * first:
                    _scale_grads(model, k * first / total)  # partial or unequal micro-batches
                weight = n / total if total > 0 else 1.0 / (micro + 1)
            loss = out.loss if weight == 1.0 else out.loss * weight
            (scaler.scale(loss) if scaler is not None else loss).backward()

        def optimizer_step() -> float | None:
            """Clip and step; the gradient norm before clipping (``None``: no clipping)."""
            grad_norm = None
            if cfg.optimizer.grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients
                dense = [q for q in model.parameters()  # sparse: SparseAdam's own
                         if q.grad is not None and not q.grad.is_sparse]
                grad_norm = float(nn.utils.clip_grad_norm_(dense, cfg.optimizer.grad_clip))
            if scaler is not None:
                scaler.step(optimizer)  # skipped (and the scale lowered) on inf/NaN gradients
                scaler.update()
            else:
                optimizer.step()
            return grad_norm

        # trainer.evals_per_epoch: dev evaluations every ceil(steps / N) steps of an epoch
        eval_stride = (-(-steps_per_epoch // tc.evals_per_epoch) if tc.evals_per_epoch
                       else None)
        sizes = [1.0, 0.0]  # of the micro-batches of the step in progress (see backward)
        net.train()
        diverged = None
        try:
            while not stop and prog.epoch < tc.max_epochs:
                if prog.batch == 0:
                    carried = None
                batches = task.batches("train", batch_size=cfg.data.batch_size,
                                       epoch=prog.epoch, seed=tc.seed, shuffle=True,
                                       rank=d.rank, world_size=d.world_size, start=prog.batch,
                                       num_workers=cfg.data.num_workers)
                # with k > 1, look one batch ahead: the epoch's last step may take fewer
                micro = 0  # micro-batches of the step in progress (a resume starts at 0)
                for batch, at_end in (_with_last(batches) if k > 1
                                      else ((b, True) for b in batches)):
                    last = micro + 1 == k or at_end
                    if micro == 0:
                        lr = schedule.lr(prog.step, prog.epoch)
                        set_lr(optimizer, lr)
                        optimizer.zero_grad(set_to_none=True)
                    try:
                        with synced.no_sync() if d.enabled and not last else nullcontext():
                            with autocast:
                                out = task.step(net, batch, carried if task.stateful else None)
                            loss = out.loss
                            if ddp.any_true(d, not bool(torch.isfinite(loss.detach()).all())):
                                raise stopped(f"loss is {float(loss.detach())}", prog.step + 1)
                            backward(out, micro, last)
                    except compile_errors as e:
                        raise ConfigError(
                            f"trainer.compile: torch.compile failed at step {prog.step + 1} "
                            f"({type(e).__name__}: {shorten(str(e).strip(), 150)}); set "
                            f"trainer.compile: false") from None
                    if task.stateful:
                        carried = detach_state(out.state)
                    prog.batch += 1
                    micro += 1
                    add_stats(window, out.stats)
                    window_size += out.size
                    if not last:
                        continue
                    micro = 0
                    grad_norm = optimizer_step()
                    prog.step += 1
                    if bar is not None:
                        bar.update(1)
                    if prog.step % tc.log_every == 0 or prog.step == budget:
                        now = time.perf_counter()
                        stats = all_reduce_stats(window)
                        rate = window_size * d.world_size / max(now - window_t, 1e-9)
                        metrics = task.metrics(stats) if stats else {}
                        row = {"step": prog.step, "epoch": _epoch_number(prog),
                               "split": "train", "time": now - start, "lr": lr, **metrics,
                               f"{task.size_unit}_per_s": rate}
                        if grad_norm is not None:
                            row["grad_norm"] = grad_norm
                        if scaler is not None:
                            row["loss_scale"] = scaler.get_scale()
                        logger.log(row)
                        if bar is not None:
                            main = metrics.get(task.main_metric, float(loss.detach()))
                            bar.set_description_str(
                                f"ep {_epoch_number(prog)} loss {float(loss.detach()):.4g} "
                                f"{task.main_metric} {main:.4g} {rate:,.0f} {task.size_unit}/s")
                        elif tc.progress:  # not a terminal (a log file): a line instead
                            self.log(f"step {prog.step} (epoch {_epoch_number(prog)}): train "
                                     f"{format_metrics(metrics)}, {rate:,.0f} "
                                     f"{task.size_unit}/s")
                        window, window_size, window_t = {}, 0, now
                    stop_early = False
                    if tc.eval_every is not None and prog.step % tc.eval_every == 0:
                        stop_early = evaluate_dev()
                    elif (eval_stride is not None and -(-prog.batch // k) % eval_stride == 0
                          and prog.batch < per_epoch):  # the last one comes with the epoch's end
                        stop_early = evaluate_dev()
                    elif tc.checkpoint_every is not None and prog.step % tc.checkpoint_every == 0:
                        checkpoint()
                    if stop_early:
                        self.log(f"early stopping at step {prog.step}: no improvement of "
                                 f"{task.main_metric} in {tc.early_stopping} evaluations")
                        stop = True
                    if prog.step >= budget:
                        stop = True
                    spent = time.perf_counter() - start
                    if (tc.max_minutes is not None and prog.step % tc.log_every == 0
                            and ddp.any_true(d, spent >= 60 * tc.max_minutes)):
                        self.log(f"time budget of {tc.max_minutes} min spent at step {prog.step}")
                        stop = True
                    if stop:
                        break
                else:  # the epoch ended
                    prog.epoch += 1
                    prog.batch = 0
                    if tc.eval_every is None and evaluate_dev():
                        self.log(f"early stopping after epoch {prog.epoch}: no improvement of "
                                 f"{task.main_metric} in {tc.early_stopping} evaluations")
                        stop = True
                    elif tc.eval_every is not None and prog.step % tc.eval_every != 0:
                        checkpoint()
                    continue
                if prog.batch >= per_epoch:  # stopped on an epoch's last batch: it is complete
                    prog.epoch += 1
                    prog.batch = 0
                break
        except TrainingError as e:
            if not isinstance(e, _Diverged) or tc.on_divergence == "stop":
                raise
            diverged = {"step": prog.step, "why": str(e)}
            self.log(f"diverged: {e} (trainer.on_divergence: finish records it)")
        if bar is not None:
            bar.close()
        if diverged is None and prog.last_eval != prog.step:  # a final evaluation, checkpoint
            evaluate_dev()
        wall = time.perf_counter() - start
        results = self._final(task, model, eval_bs, wall, prog, diverged)
        logger.close()
        return results

    def _repair_best(self, prog: Progress, latest: Path) -> None:
        """After a kill between writing a new best checkpoint and its pointers,
        point ``best`` at the checkpoint the progress counters call best."""
        if prog.best_step is None or not self.dist.is_main:
            return
        try:
            best = read_pointer(self.run_dir, "best")
        except CheckpointError:
            best = None
        if best is not None and best.name.split(".")[0] == step_dir_name(prog.best_step):
            return
        if latest.name.split(".")[0] == step_dir_name(prog.best_step):
            atomic_write_text(self.run_dir / CHECKPOINTS / "best.json",
                              json.dumps({"dir": latest.name, "step": prog.best_step}))

    def _final(self, task: Task, model: nn.Module, eval_bs: int, wall: float,
               prog: Progress, diverged: dict | None = None) -> dict:
        cfg, d = self.config, self.dist
        which = cfg.trainer.select if "dev" in task.splits() else "latest"
        folder = read_pointer(self.run_dir, which) if d.is_main else None
        name = ddp.broadcast_str(d, folder.name if folder is not None else "")
        if name:
            load_model_weights(model, self.run_dir / "checkpoints" / name / "model.safetensors")
        splits = [s for s in ("dev", "test") if s in task.splits()
                  and (s != "test" or cfg.trainer.test)]
        results: dict = {"task": cfg.task, "cell": task.model_cell(cfg.model),
                         "steps": prog.step,
                         "epochs_completed": prog.epoch, "wall_seconds": wall,
                         "checkpoint": name, "best_step": prog.best_step,
                         "main_metric": task.main_metric, "baselines": task.baselines()}
        results["provenance"] = provenance(commit=self.commit) if d.is_main else {}
        if diverged is not None:
            results["diverged"] = diverged
            if not name:  # nothing good was kept: the weights in memory are not finite
                splits = []
        for split in splits:
            metrics = task.evaluate(model, split, batch_size=eval_bs, rank=d.rank,
                                    world_size=d.world_size)
            results[split] = metrics
            self.log(f"{split} ({which} checkpoint {name}): {format_metrics(metrics)}")
        if d.is_main:
            atomic_write_text(self.run_dir / "results.json",
                              json.dumps(json_safe(results), indent=1))
        ddp.barrier(d)  # every process leaves together (an early exit can abort the others)
        return results


def train(config: Config, run_dir: str | Path, *, resume: bool = False,
          device: str | None = None, quiet: bool = False) -> dict:
    """Train ``config`` into ``run_dir``; returns the final metrics (``results.json``).

    Raises:
        ConfigError: an option this device or torch cannot run (``trainer.precision:
            fp16`` off CUDA, ``trainer.compile`` without a working torch.compile).
        DataError: the task's data is missing.
        TrainingError: a NaN/Inf loss (the last good checkpoint is kept) or a
            run directory that cannot be resumed.
    """
    return Trainer(config, Path(run_dir), resume=resume, device=device, quiet=quiet).run()

