"""The one training loop every method runs on."""
from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from metassl import config as config_mod
from metassl.config import TrainConfig
from metassl.data.arrays import ArrayDataset
from metassl.data.runinfo import save_data_info
from metassl.data.stream import IndexStream
from metassl.engine import checkpoint as ckpt
from metassl.engine import compiling, dist, machine, rundir
from metassl.engine.allocator import keep_freed_memory
from metassl.engine.ema import ModelEMA, horizon_steps
from metassl.engine.evaluate import error_rate
from metassl.engine.logger import RunLogger
from metassl.engine.schedule import lr_at
from metassl.engine.setup import RunSetup, build, check_batch_fits, write_split
from metassl.errors import (CheckpointError, MetasslError, NeedsUnlabeled, TrainingDiverged,
                            out_of_memory_as)
from metassl.files import atomic_write_text
from metassl.methods import METHODS, Batch, TrainContext


class Interrupted(MetasslError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint."""

    exit_code = 130

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved, continue with "
                         f"'metassl train --resume {run_dir}'")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# How each dataset of the user's own files marks examples without a label.
UNLABELED_HOW = {"imagefolder": ", add images without labels (an unlabeled/ folder)",
                 "csv": ", add rows with an empty label", "npz": ", add examples labeled -1"}


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Optional[Path], *, resume: bool = False,
                 data: Optional[ArrayDataset] = None, overwrite: bool = False):
        """``overwrite``: remove the files of a run already in ``run_dir``, once this one has read its
        data, built its model and started fitting with its interrupt handling on (nothing is written
        to ``run_dir`` before then)."""
        self.cfg, self.run_dir = cfg, run_dir
        self.rank, self.world_size = dist.init()
        self.writes = run_dir is not None and self.rank == 0
        config_mod.check_selection(cfg)
        seed_everything(cfg.seed)
        with out_of_memory_as(lambda asked: (
                f"train: out of memory loading the data and building the model (an allocation of {asked} "
                f"failed): a run holds its whole dataset in memory on its device; use fewer or smaller images"
                f"{'' if cfg.device == 'cpu' else ', or device=cpu'}")):
            self.s: RunSetup = build(cfg, run_dir if self.writes and resume else None, reuse_split=resume,
                                     data=data)
        s = self.s
        method_cls = METHODS.get(cfg.method)
        if method_cls.needs_unlabeled and len(s.split.unlabeled) == 0:
            raise NeedsUnlabeled(
                f"config: method={cfg.method!r} needs unlabeled data, but labels_per_class="
                f"{'null' if cfg.labels_per_class is None else cfg.labels_per_class} and val_per_class="
                f"{cfg.val_per_class} cover the whole training set; keep fewer labels (labels_per_class=N)"
                f"{UNLABELED_HOW.get(cfg.dataset, '')}"
                f" or train method=supervised")
        check_batch_fits(cfg, cfg.batch_size + (cfg.u_batch_size if method_cls.needs_unlabeled else 0),
                         tuple(s.x.shape[1:]), s.device)
        self.model = dist.wrap(s.model, s.device, self.world_size)
        self.optimizer = torch.optim.SGD(s.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov and cfg.momentum > 0,
                                         weight_decay=cfg.weight_decay)
        self.ema = (ModelEMA(s.model, cfg.ema_decay, horizon_steps(cfg, cfg.steps))
                    if cfg.ema_decay > 0 else None)
        kw = dict(device=s.device, rank=self.rank, world_size=self.world_size)
        self.labeled = IndexStream(s.split.labeled, cfg.batch_size, cfg.seed + 1, **kw)
        self.unlabeled = (IndexStream(s.split.unlabeled, cfg.u_batch_size, cfg.seed + 2, **kw)
                          if method_cls.needs_unlabeled else None)
        self.val_stream = (IndexStream(s.split.val, cfg.batch_size, cfg.seed + 3, **kw)
                           if len(s.split.val) else None)
        # Training error is measured on (at most 10000 of) the labeled examples.
        self.train_eval_idx = s.split.labeled[:10000].to(s.device)
        self.lr = cfg.lr
        scaler = torch.amp.GradScaler("cuda") if s.amp_dtype == torch.float16 else None
        self.ctx = TrainContext(
            num_classes=s.data.num_classes, total_steps=cfg.steps, augment=s.augmenter,
            normalize=s.augmenter.normalize, strong_augment=s.augmenter.strong, device=s.device,
            lr=lambda: self.lr,
            sample_val=self._val_batch if self.val_stream is not None else None,
            scaler=scaler, autocast=s.autocast, num_train=len(s.x), num_unlabeled=len(s.split.unlabeled))
        self.method = method_cls(self.model, self.optimizer, cfg.method_cfg, self.ctx)
        self.cpu_allocator: Optional[str] = None  # keep_freed_memory's status, on a CPU
        # After the method is built, so that the copies it made of the model (teachers) stay eager.
        self.compiled = compiling.wanted(cfg.compile, self.method.compiles(), cfg.steps, s.device)
        if self.compiled:
            compiling.compile_model(s.model)
        self.compile_s, self._compile_mark = 0.0, 0.0
        self.step = 0
        self.best = {"val_error": None, "test_error": None, "step": None}
        self.last_eval: dict = {}
        self.wall = 0.0
        self.cpu = 0.0  # process CPU seconds: comparable across machine load, unlike wall time
        self.machines = machine.joined([], self.s.device)
        self._cpu_mark = time.process_time()
        self.train_seconds = 0.0
        self.images = 0
        self.ckpt_step: Optional[int] = None
        self.interval: dict[str, torch.Tensor] = {}  # loss sums since the last evaluation
        self.interval_count = 0
        self.split_digest = rundir.split_digest(s)
        if resume:
            self._restore()
        self.resume, self.overwrite = resume, overwrite

    def _write_run_files(self) -> None:
        """The run's config, split and data description, written only once the data is read, the
        model built, (resuming) the checkpoint restored and an interrupt saves a checkpoint: a run
        that fails to start leaves the directory as it found it, and one interrupted from here on
        leaves a checkpoint that continues it."""
        run_dir, resume = self.run_dir, self.resume
        if self.overwrite and rundir.holds_run(run_dir):
            rundir.clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(run_dir, self.cfg)
        if resume:
            rundir.drop_rows_after(run_dir, self.step)
        else:
            write_split(self.cfg, self.s.split, run_dir, self.s.data)
        # Predicting and exporting read new inputs the way this data was read.
        save_data_info(run_dir, self.s.data)

    # -- data ------------------------------------------------------------------------------
    def _batch(self, stream: IndexStream, labeled: bool) -> Batch:
        idx = stream.next()
        raw = self.s.x[idx]
        return Batch(x=self.s.augmenter(raw), raw=raw, y=self.s.y[idx] if labeled else None, idx=idx)

    def _val_batch(self) -> Batch:
        return self._batch(self.val_stream, labeled=True)

    # -- evaluation and selection ----------------------------------------------------------
    @property
    def eval_model(self):
        chosen = self.method.eval_model()
        if chosen is not None:
            return chosen
        return self.ema.module if self.ema is not None else self.s.model

    def evaluated(self) -> dict:
        """Which weights evaluation and selection read: the method's own choice (a teacher), the
        engine's EMA of the model, or the model itself."""
        own = self.method.evaluated()
        if own is not None:
            return own
        if self.ema is not None:
            return {"weights": "ema", "ema_decay": self.cfg.ema_decay, "horizon_steps": self.ema.horizon,
                    "decay_at_end": self.ema.last_decay}
        return {"weights": "model"}

    def evaluate(self) -> dict:
        s, bs = self.s, self.cfg.eval_batch_size
        norm, model = s.augmenter.normalize, self.eval_model
        lab = self.train_eval_idx
        return {"val_error": error_rate(model, s.x_val, s.y_val, norm, bs, s.autocast),
                "test_error": error_rate(model, s.x_test, s.y_test, norm, bs, s.autocast),
                "train_error": error_rate(model, s.x[lab], s.y[lab], norm, bs, s.autocast)}

    def _select(self, errors: dict) -> bool:
        """Whether the weights just evaluated become the reported ones."""
        if self.cfg.select == "last":
            better = True
        else:
            # A tie goes to the later weights: trained longer, and no worse on validation.
            better = self.best["val_error"] is None or errors["val_error"] <= self.best["val_error"]
        if better:
            self.best = {"val_error": errors["val_error"], "test_error": errors["test_error"], "step": self.step}
        return better

    # -- checkpoints -----------------------------------------------------------------------
    def _check_finite(self, bad: torch.Tensor) -> None:
        if bool(bad):
            self._diverged("loss")

    def _check_state(self, state: dict) -> None:
        """Stop before weights, buffers (BatchNorm's running_var) or optimizer state holding NaN or
        inf are evaluated or saved: a finite loss does not mean the update that followed was."""
        name = ckpt.first_nonfinite(state)
        if name is not None:
            self._diverged(name)

    def _kept(self, good: str = "") -> str:
        """What a run that stops on an error leaves to continue from."""
        if self.ckpt_step is not None and self.run_dir is not None:
            return f"the last {good}checkpoint (step {self.ckpt_step}) is kept in {self.run_dir}"
        return "no checkpoint had been written"

    def _diverged(self, what: str) -> None:
        raise TrainingDiverged(f"train: {what} became NaN or inf by step {self.step} "
                               f"(try a lower lr); {self._kept('good ')}")

    def _step_out_of_memory(self, asked: str) -> str:
        cfg, dev = self.cfg, self.s.device
        images = f"{cfg.batch_size} labeled" + (f" + {cfg.u_batch_size} unlabeled" if self.unlabeled is not None else "")
        ratio = " (and unlabeled_batch_size)" if self.unlabeled is not None else ""
        amp = ", or amp=bf16" if dev.type == "cuda" and self.s.amp_dtype is None else ""
        return (f"train: out of memory in training step {self.step + 1} on {dev} (an allocation of {asked} "
                f"failed; a step of {cfg.method} takes {images} images of {tuple(self.s.x.shape[1:])}): lower "
                f"batch_size{ratio}, use a smaller model{amp}")

    def _step_resume(self) -> str:
        return f", and start the run again; {self._kept()}"

    def _eval_out_of_memory(self, asked: str) -> str:
        return (f"train: out of memory evaluating at step {self.step} on {self.s.device} (an allocation of "
                f"{asked} failed): lower eval_batch_size (now {self.cfg.eval_batch_size})")

    def _eval_resume(self) -> str:
        """How a command-line run that ran out of memory evaluating continues with less."""
        if self.ckpt_step is None or self.run_dir is None:
            return ""
        return (f"; metassl train --resume {self.run_dir} eval_batch_size=N continues from the last "
                f"checkpoint (step {self.ckpt_step})")

    def _trained_state(self) -> dict:
        return {"model": self.s.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "method": self.method.state_dict()}

    def save(self) -> None:
        if not self.writes:
            return
        trained = self._trained_state()
        self._check_state(trained)
        state = {
            "format": ckpt.FORMAT, "version": 1, "step": self.step,
            **trained,
            "rng": ckpt.rng_state(),
            "streams": {name: st.state_dict() for name, st in self._streams().items()},
            "best": self.best, "last_eval": self.last_eval,
            "counters": {"wall": self.wall, "cpu": self.cpu_seconds(),
                         "train_seconds": self.train_seconds, "images": self.images,
                         "compile": self.compile_seconds()},
            "machines": self.machines,
            **rundir.identity(self.cfg, self.split_digest),
            "interval": {"sums": {k: v.detach().cpu() for k, v in self.interval.items()},
                         "count": self.interval_count},
        }
        ckpt.atomic_save(state, self.run_dir / "checkpoint.pt")
        self.ckpt_step = self.step

    def _save_selected(self) -> None:
        if self.writes:
            ckpt.atomic_save({"format": ckpt.WEIGHTS_FORMAT, "step": self.step,
                              "model": self.eval_model.state_dict(), **rundir.identity(self.cfg, self.split_digest)},
                             self.run_dir / "best.pt")

    def cpu_seconds(self) -> float:
        return self.cpu + time.process_time() - self._cpu_mark

    def compile_seconds(self) -> float:
        """Seconds torch.compile spent building this run's graphs (``compile``), resumes included."""
        return self.compile_s + (compiling.compile_seconds() - self._compile_mark if self.compiled else 0.0)

    def _streams(self) -> dict:
        streams = {"labeled": self.labeled, "unlabeled": self.unlabeled, "val": self.val_stream}
        return {k: v for k, v in streams.items() if v is not None}

    def _restore(self) -> None:
        path = self.run_dir / "checkpoint.pt"
        state = ckpt.load(path)
        self._check_identity(path, state)
        bad = ckpt.first_nonfinite({k: state.get(k) for k in ("model", "optimizer", "ema", "method")})
        if bad is not None:
            raise CheckpointError(f"checkpoint: {path} holds NaN or inf in {bad}; it cannot be resumed")
        try:
            self.s.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.method.load_state_dict(state["method"])
            for name, stream in self._streams().items():
                stream.load_state_dict(state["streams"][name])
            ckpt.set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint: {path} does not match this run's config: "
                                  f"{rundir.state_dict_mismatch(exc)}") from None
        if state["step"] > self.cfg.steps:
            raise rundir.shorter_run(self.run_dir, state["step"], self.cfg.steps)
        self.step, self.best, self.last_eval = state["step"], state["best"], state["last_eval"]
        c = state["counters"]
        self.wall, self.train_seconds, self.images = c["wall"], c["train_seconds"], c["images"]
        self.cpu = c.get("cpu", 0.0)
        self.compile_s = c.get("compile", 0.0)
        self.machines = machine.joined(state.get("machines"), self.s.device)
        interval = state.get("interval") or {"sums": {}, "count": 0}
        self.interval = {k: v.to(self.s.device) for k, v in interval["sums"].items()}
        self.interval_count = interval["count"]
        self.ckpt_step = self.step

    def _check_identity(self, path: Path, state: dict) -> None:
        """Refuse a checkpoint written by another run: its config (less the keys a resume may
        change) and its split must be this run's."""
        if "config" not in state:
            raise CheckpointError(f"checkpoint: {path} does not say which run wrote it (it holds no config)")
        rundir.check_written_by(path, state, self.cfg)
        rundir.check_split(path, state, self.split_digest, self.run_dir / "split.json")

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.cfg
        ckpt_every = cfg.checkpoint_every or cfg.eval_every
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signum

        # From here an interrupt ends the run with a checkpoint, so only now is a run that this one
        # replaces (overwrite) removed.
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        log = None
        try:
            if self.writes:
                self._write_run_files()
            log = RunLogger(self.run_dir if self.writes else None, cfg.steps, cfg.tensorboard and self.writes,
                            start_step=self.step)
            if stop["signal"] is not None:  # before the first step: a checkpoint of the step it starts at
                self.save()
                raise Interrupted(self.step, self.run_dir)
            with out_of_memory_as(self._step_out_of_memory, self._step_resume):  # an evaluation's is its own
                self._loop(log, stop, ckpt_every)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if log is not None:
                # A failure to close TensorBoard's files must not hide why training stopped.
                log.close(quietly=sys.exc_info()[1] is not None)
        return self.finish()

    def _loop(self, log: RunLogger, stop: dict, ckpt_every: int) -> None:
        cfg = self.cfg
        threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dev = self.s.device
        if dev.type == "cpu":
            self.cpu_allocator = keep_freed_memory()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        bad = torch.zeros((), dtype=torch.bool, device=dev)
        start = time.perf_counter()
        self._cpu_mark = time.process_time()
        if self.compiled:
            self._compile_mark = compiling.compile_seconds()
        tick, tick_images = start, self.images
        per_step_images = cfg.batch_size + (cfg.u_batch_size if self.unlabeled is not None else 0)
        try:
            self.model.train()
            while self.step < cfg.steps:
                self.lr = lr_at(self.step, cfg.lr, cfg.steps, cfg.schedule)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr
                labeled = self._batch(self.labeled, labeled=True)
                unlabeled = self._batch(self.unlabeled, labeled=False) if self.unlabeled is not None else None
                with self.s.autocast():
                    losses = self.method.train_step(labeled, unlabeled, self.step)
                bad |= ~torch.isfinite(losses["loss"])
                for key, value in losses.items():
                    sums[key] = sums[key] + value if key in sums else value.clone()
                    self.interval[key] = self.interval[key] + value if key in self.interval else value.clone()
                count += 1
                self.interval_count += 1
                if self.ema is not None:
                    self.ema.update(self.s.model, self.step)
                self.step += 1
                self.images += per_step_images * self.world_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._check_finite(bad)
                    now = time.perf_counter()
                    record = {k: (v / count).item() for k, v in sums.items()}
                    record.update(lr=self.lr, images_per_second=(self.images - tick_images) / max(now - tick, 1e-9))
                    log.train(self.step, record)
                    sums, count, tick, tick_images = {}, 0, now, self.images
                evaluate_now = self.step % cfg.eval_every == 0 or self.step == cfg.steps
                if evaluate_now:
                    self._check_finite(bad)
                    self._check_state(self._trained_state())
                    self.train_seconds += time.perf_counter() - start
                    with out_of_memory_as(self._eval_out_of_memory, self._eval_resume):
                        errors = self.evaluate()
                    self.last_eval = {**errors, "step": self.step}
                    if self._select(errors):
                        self._save_selected()
                    self.wall += time.perf_counter() - start
                    train_losses = {f"train_{k}": (v / self.interval_count).item() for k, v in self.interval.items()}
                    self.interval, self.interval_count = {}, 0
                    extra = self.method.on_evaluate(self.step, self.run_dir if self.writes else None)
                    log.evaluation({"step": self.step, **errors, **train_losses, **extra, "lr": self.lr,
                                    "selected_step": self.best["step"], "wall_seconds": self.wall})
                    start = time.perf_counter()
                if evaluate_now or self.step % ckpt_every == 0 or stop["signal"] is not None:
                    self._check_finite(bad)
                    self.train_seconds += time.perf_counter() - start
                    self.wall += time.perf_counter() - start
                    self.save()
                    start = time.perf_counter()
                if stop["signal"] is not None:
                    raise Interrupted(self.step, self.run_dir)
        finally:
            torch.set_num_threads(threads)

    def finish(self) -> dict:
        final = {
            "test_error": self.best["test_error"], "val_error": self.best["val_error"],
            "selected_step": self.best["step"], "select": self.cfg.select,
            "last_test_error": self.last_eval.get("test_error"),
            "last_val_error": self.last_eval.get("val_error"),
            "steps": self.step, "wall_seconds": round(self.wall, 3), "cpu_seconds": round(self.cpu_seconds(), 3),
            "images_per_second": round(self.images / max(self.train_seconds, 1e-9), 1),
            "method": self.cfg.method, "model": self.cfg.model, "dataset": self.cfg.dataset,
            "labels_per_class": self.cfg.labels_per_class, "seed": self.cfg.seed,
            "device": str(self.s.device), "machines": self.machines, "test_held_out": self.s.data.test_held_out,
            "compiled": self.compiled, "compile_seconds": round(self.compile_seconds(), 3),
            "cpu_allocator": self.cpu_allocator,
            "evaluated": self.evaluated(),
        }
        if self.writes:
            atomic_write_text(self.run_dir / "final.json", json.dumps(final, indent=2) + "\n")
        return final


def train(cfg: TrainConfig, run_dir: Optional[Path], *, resume: bool = False) -> dict:
    return Trainer(cfg, run_dir, resume=resume).fit()
