"""The optimisation loop shared by every training stage (head, lips, torso).

``Trainer`` owns what is common: AdamW over the given parameter groups (betas (0, 0.99),
eps 1e-8 as the reference), a LambdaLR schedule, an EMA of the weights (torch_ema's
warm-up rule, decay 0.95), checkpoints (full state, atomic, latest two, resume), the CSV
log, the progress bar, periodic validation with the EMA weights and mixed precision (the
step's forward under autocast, ``train.mixed_precision``). What a step computes
is the caller's ``step_fn(step) -> (loss, logs)``; extra state that must survive a restart
(error map, ...) is passed as ``extra_state`` (objects with ``state_dict``/``load_state_dict``).

Usage (torso stage, say)::

    trainer = Trainer(model=net, param_groups=net.param_groups(...), step_fn=step,
                      iters=n, lr_lambda=lambda it: 0.5 ** (it / n), settings=settings,
                      checkpoint_dir=out / "checkpoints", log_path=out / "train_log.csv",
                      generator=gen, extra_state={"error_map": emap})
    trainer.resume()            # continues from the latest matching checkpoint, if any
    trainer.fit(val_fn=validate, val_every=500)
    with trainer.ema.applied(): save_model(...)
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..device import resolve_precision
from ..errors import StageError
from ..progress import progress
from .checkpoint import load_latest, save_checkpoint, settings_key

log = logging.getLogger(__name__)

StepFn = Callable[[int], tuple[torch.Tensor, dict[str, float]]]

# the train-level keys every training stage reads (config: train.seed, train.loss, ...)
SHARED_DEFAULTS = {"seed": 0, "loss": "l2", "huber_delta": 0.1, "mixed_precision": "auto"}


def stage_precision(s: dict, subject: str, stage: str, device_type: str) -> str:
    """``train.mixed_precision`` of the settings ``s`` resolved for ``device_type``; a bad value
    stops the stage naming the key."""
    try:
        return resolve_precision(s.get("mixed_precision", "auto"), device_type)
    except ValueError as err:
        raise StageError(subject, stage, str(err), "set train.mixed_precision to auto, off or on") from None


class EMA:
    """Exponential moving average of parameters (torch_ema semantics:
    decay_n = min(decay, (1 + n) / (10 + n)))."""

    def __init__(self, params: list[torch.Tensor], decay: float = 0.95):
        self.params = [p for p in params if p.requires_grad]
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the model."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup, strict=True):
                    p.copy_(b)

    @torch.no_grad()
    def copy_to(self) -> None:
        for p, s in zip(self.params, self.shadow, strict=True):
            p.copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": list(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        with torch.no_grad():
            for s, v in zip(self.shadow, state["shadow"], strict=True):
                s.copy_(v)


class Trainer:
    def __init__(self, *, model: torch.nn.Module, param_groups: list[dict], step_fn: StepFn, iters: int,
                 lr_lambda: Callable[[int], float], settings: dict, checkpoint_dir,
                 log_path=None, ema_decay: float = 0.95, generator: torch.Generator | None = None,
                 extra_state: dict | None = None, checkpoint_every: int = 500, keep: int = 2,
                 betas=(0.0, 0.99), eps: float = 1e-8, desc: str = "train", log_every: int = 10,
                 log_columns: tuple[str, ...] = ("loss", "psnr"), precision: str = "off"):
        self.model, self.step_fn, self.iters = model, step_fn, int(iters)
        # precision (device.resolve_precision): "off", or the step's forward under autocast to
        # float16 (with a gradient scaler, as the reference's --fp16) or bfloat16 (no scaler needed)
        if precision not in ("off", "fp16", "bf16"):
            raise ValueError(f"precision {precision!r} is not off, fp16 or bf16")
        self.precision = precision
        self.device_type = next(iter(model.parameters())).device.type
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16")
        self.optimizer = torch.optim.AdamW(param_groups, betas=tuple(betas), eps=eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.ema = EMA([p for g in param_groups for p in g["params"]], ema_decay)
        self.settings = settings_key(settings)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.log_path = Path(log_path) if log_path else None
        self.generator = generator
        self.extra_state = extra_state or {}
        self.checkpoint_every, self.keep = int(checkpoint_every), int(keep)
        self.desc, self.log_every = desc, max(1, int(log_every))
        self.columns = ["step", "elapsed_s", "lr", *log_columns]
        self.step = 0
        self.elapsed = 0.0  # training seconds, across restarts
        self.last_logs: dict[str, float] = {}
        self.last_val: dict[str, float] = {}

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "settings": self.settings,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "generator": self.generator.get_state() if self.generator is not None else None},
            "extra": {k: v.state_dict() for k, v in self.extra_state.items()},
            "scaler": self.scaler.state_dict(),
        }

    def save(self) -> Path:
        return save_checkpoint(self.checkpoint_dir, self.step, self.state(), keep=self.keep)

    def resume(self) -> bool:
        """Load the latest checkpoint made with the same settings; True when one was found."""
        state = load_latest(self.checkpoint_dir, self.settings)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.generator is not None and state["rng"]["generator"] is not None:
            self.generator.set_state(state["rng"]["generator"])
        for k, v in self.extra_state.items():
            v.load_state_dict(state["extra"][k])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self._truncate_log()
        return True

    # --- log -------------------------------------------------------------------------------
    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint we resumed from, and a row a kill cut short
        (fewer fields than the header: it would glue itself to the next row appended)."""
        if not (self.log_path and self.log_path.exists()):
            return
        with open(self.log_path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh)
                    if None not in r.values() and (r.get("step") or "").isdigit() and int(r["step"]) <= self.step]
        self._write_log(rows, mode="w")

    def _write_log(self, rows: list[dict], mode: str = "a") -> None:
        if not self.log_path:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        new = mode == "w" or not self.log_path.exists()
        with open(self.log_path, mode if not new else "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    # --- loop ------------------------------------------------------------------------------
    def autocast(self):
        """The training forward's autocast context (a no-op when precision is off)."""
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def fit(self, val_fn: Callable[[int], dict[str, float]] | None = None, val_every: int = 0,
            on_step_end: Callable[[int], None] | None = None) -> dict[str, float]:
        """Train from ``self.step`` to ``iters``. ``val_fn(step)`` runs with EMA weights every
        ``val_every`` steps and at the end; ``on_step_end(step)`` runs after each step."""
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        bar = progress(total=self.iters, initial=self.step, desc=self.desc, unit="step")
        try:
            while self.step < self.iters:
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                with self.autocast():
                    loss, logs = self.step_fn(self.step)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {value} at step {self.step}")
                if loss.requires_grad:  # a batch of rays that all miss the head has nothing to learn
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.scheduler.step()
                self.ema.update()
                self.step += 1
                self.elapsed += time.perf_counter() - t0
                logs = {"loss": value, **logs}
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == self.iters:
                    self.last_logs = {k: v / count for k, v in sums.items()}
                    if "mse" in self.last_logs:
                        self.last_logs["psnr"] = -10 * math.log10(max(self.last_logs["mse"], 1e-10))
                    self._write_log([{"step": self.step, "elapsed_s": round(self.elapsed, 2),
                                      "lr": self.scheduler.get_last_lr()[0], **self.last_logs}])
                    bar.set_postfix({k: f"{self.last_logs[k]:.4g}" for k in ("loss", "psnr")
                                     if k in self.last_logs})
                    sums, count = {}, 0
                last = self.step == self.iters
                if val_fn is not None and (last or (val_every and self.step % val_every == 0)):
                    self.validate(val_fn)
                if last or (self.checkpoint_every and self.step % self.checkpoint_every == 0):
                    self.save()
                if on_step_end is not None:
                    on_step_end(self.step)
        finally:
            bar.close()
        return self.last_logs

    def validate(self, val_fn: Callable[[int], dict[str, float]]) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        try:
            with self.ema.applied(), torch.no_grad():
                metrics = val_fn(self.step)
        finally:
            self.model.train(was_training)
        self.last_val = metrics
        self._write_log([{"step": self.step, "elapsed_s": round(self.elapsed, 2),
                          "lr": self.scheduler.get_last_lr()[0], **{f"val_{k}": v for k, v in metrics.items()}}])
        log.info("step %d validation: %s", self.step,
                 ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        return metrics
