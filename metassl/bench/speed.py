"""``metassl bench speed``: every method's ``train_step`` on one model and batch, interleaved.

All methods are timed in one process, round-robin after a warm-up, so that machine noise hits
them alike; the median is reported. Peak memory is the CUDA allocator's peak on a GPU; on the
CPU each method runs in a fresh subprocess and the peak resident-set growth over its steps is
reported: the resident set is sampled during three steps, after a first step has allocated what
persists (optimizer state), with glibc returning freed blocks at once.

A row is a method name, or ``name:key=value,...``: a variant setting keys of the method's section
(``metamixup:grad=first_order``) or the top-level keys of a timed step (``BENCH_KEYS``:
``supervised:compile=on``, ``meta_pl_mixup:amp=bf16``), so that one run interleaves a setting
against its absence. Steps run as training runs them, under the run's ``amp`` (training's
default: bf16 on CUDA, off on a CPU) and ``compile``; compiling happens in the warm-up steps and
is reported apart. ``meta_pl_mixup_reference`` is the authors' iteration (``bench.reference``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import torch

from metassl.bench import profile
from metassl.bench.reference import REFERENCES
from metassl.config import TrainConfig, parse_overrides, resolve
from metassl.data.augment import Augmenter
from metassl.data.stream import IndexStream
from metassl.engine import compiling, machine
from metassl.engine.allocator import keep_freed_memory
from metassl.engine.setup import autocast_for, pick_device, use_channels_last
from metassl.errors import ConfigError, out_of_memory_as
from metassl.methods import METHODS, Batch, TrainContext
from metassl.models import create_model

POOL = 2048  # synthetic images each stream draws from
# Top-level keys a variant may set: those that change how one step runs.
BENCH_KEYS = ("amp", "compile", "lr", "momentum", "nesterov", "weight_decay", "steps")
BENCH_DEFAULTS = {"lr": 0.01}  # the other keys keep training's defaults


@dataclasses.dataclass
class Variant:
    cls: type             # the method (or reference) class
    cfg: object           # its section's config
    run: TrainConfig      # the top-level keys of the step


def variant(spec: str) -> Variant:
    """A row's method and settings: ``name`` or ``name:key=value,...``, each key one of the
    method's own or one of ``BENCH_KEYS``."""
    name, _, options = spec.partition(":")
    cls, section = REFERENCES.get(name, (None, name))
    cls = cls or METHODS.get(section)
    tree = parse_overrides([o for o in options.split(",") if o])
    own = {f.name for f in dataclasses.fields(cls.Config)}
    top_level = {f.name for f in dataclasses.fields(TrainConfig)}
    top = {k: v for k, v in tree.items() if k in top_level and k not in own}
    for key in top:
        if key not in BENCH_KEYS:
            raise ConfigError(f"config: bench speed {spec!r}: {key} does not change a timed step; a variant "
                              f"sets {name}'s own keys or {', '.join(BENCH_KEYS)}")
    rest = {k: v for k, v in tree.items() if k not in top}
    run = resolve({**BENCH_DEFAULTS, **top, "method": section, section: rest})
    return Variant(cls, run.method_cfg, run)


def method_spec(spec: str):
    """(class, config of its section) of a row (``variant``)."""
    v = variant(spec)
    return v.cls, v.cfg


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """Synthetic data, streams and one freshly built method per name, all on one model init."""

    def __init__(self, model: str, batch_size: int, device: torch.device, shape=(1, 28, 28), classes=10,
                 channels_last: bool = False):
        torch.manual_seed(0)
        self.device = device
        if device.type == "cpu":  # as training runs (engine.allocator)
            keep_freed_memory()
        self.x = torch.randint(0, 256, (POOL, *shape), dtype=torch.uint8, device=device)
        self.y = torch.randint(0, classes, (POOL,), device=device)
        self.aug = Augmenter((0.5,) * shape[0], (0.25,) * shape[0], flip=False, translate=2, noise=0.0,
                             device=device, channels_last=channels_last)
        all_idx = torch.arange(POOL)
        self.streams = {k: IndexStream(all_idx, batch_size, seed, device) for seed, k in
                        enumerate(("labeled", "unlabeled", "val"))}
        self.base_model = create_model(model, shape[0], classes, shape[1]).to(device)
        if channels_last:  # as training lays it out (engine.setup)
            self.base_model = self.base_model.to(memory_format=torch.channels_last)
        self.classes = classes
        self.compiled: dict[str, bool] = {}  # row -> whether its model runs compiled

    def batch(self, kind: str) -> Batch:
        idx = self.streams[kind].next()
        raw = self.x[idx]
        return Batch(x=self.aug(raw), raw=raw, y=self.y[idx], idx=idx)

    def method(self, name: str):
        v = variant(name)
        run = v.run
        model = copy.deepcopy(self.base_model)
        opt = torch.optim.SGD(model.parameters(), lr=run.lr, momentum=run.momentum,
                              nesterov=run.nesterov and run.momentum > 0, weight_decay=run.weight_decay)
        autocast, amp_dtype = autocast_for(run, self.device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        ctx = TrainContext(num_classes=self.classes, total_steps=run.steps, augment=self.aug,
                           normalize=self.aug.normalize, strong_augment=self.aug.strong,
                           device=self.device, lr=lambda: run.lr, scaler=scaler, autocast=autocast,
                           sample_val=lambda: self.batch("val"), num_train=POOL, num_unlabeled=POOL)
        method = v.cls(model, opt, v.cfg, ctx)
        self.compiled[name] = compiling.wanted(run.compile, method.compiles(), run.steps, self.device)
        if self.compiled[name]:
            compiling.compile_model(model)
        return method

    def step(self, method, step: int) -> float:
        labeled = self.batch("labeled")
        unlabeled = self.batch("unlabeled") if method.needs_unlabeled else None
        _sync(self.device)
        t0 = time.perf_counter()
        with method.ctx.autocast():
            method.train_step(labeled, unlabeled, step)
        _sync(self.device)
        return time.perf_counter() - t0

    def data_step(self) -> float:
        _sync(self.device)
        t0 = time.perf_counter()
        self.batch("labeled")
        self.batch("unlabeled")
        _sync(self.device)
        return time.perf_counter() - t0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb_subprocess(name: str, model: str, batch_size: int, channels_last: bool = False,
                        shape: tuple[int, int, int] = (1, 28, 28)) -> float | None:
    cmd = [sys.executable, "-m", "metassl.bench.speed", "--peak", name, "--model", model,
           "--batch-size", str(batch_size), "--layout", "nhwc" if channels_last else "nchw",
           "--shape", ",".join(map(str, shape))]
    # A fixed mmap threshold makes glibc hand large freed blocks back at once, so the resident
    # set follows the live tensors instead of staying at its high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _peak_cpu_child(name: str, model: str, batch_size: int, channels_last: bool = False,
                    shape: tuple[int, int, int] = (1, 28, 28)) -> float:
    """Peak resident-set growth over a step, above the state that persists between steps."""
    torch.set_num_threads(1)
    bench = Bench(model, batch_size, torch.device("cpu"), shape=shape, channels_last=channels_last)
    method = bench.method(name)
    bench.step(method, 0)  # optimizer state and caches that every later step keeps
    base = _rss_mb()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for step in range(1, 4):
        bench.step(method, step)
    done.set()
    sampler.join()
    return max(0.0, peak - base)


def row_variants(methods: list[str] | None = None) -> dict[str, Variant]:
    """The rows a run times, by name: ``methods`` (each read by ``variant``, so a bad one is a
    one-line error before anything runs), or every method and the reference rows."""
    return {name: variant(name) for name in methods or METHODS.names() + list(REFERENCES)}


def check_rows(model: str, methods: list[str] | None, shape: tuple[int, int, int]) -> list[str]:
    """The names of the rows a run would time, after checking them and that ``model`` is built on
    ``shape`` images (what ``--dry-run`` lists): a bad row or model is the same one-line error a
    timing run gives."""
    names = list(row_variants(methods))
    create_model(model, shape[0], 10, shape[1])
    return names


def _time_rows(bench: Bench, instances: dict, rounds: int, warmup: int, doing: list[str]):
    """Round-robin timings of every row after ``warmup`` steps: (seconds per row, compile seconds
    per row, data-pipeline seconds, CUDA peak MB per row); ``doing[0]`` names the row being run."""
    names, dev = list(instances), bench.device
    times: dict[str, list[float]] = {name: [] for name in names}
    compile_s = {name: 0.0 for name in names}
    data_times, peaks = [], {}

    def timed(name: str, step: int) -> float:
        doing[0] = f"timing row {name}"
        if not bench.compiled[name]:
            return bench.step(instances[name], step)
        before = compiling.compile_seconds()
        seconds = bench.step(instances[name], step)
        compile_s[name] += compiling.compile_seconds() - before
        return seconds

    for step in range(warmup):
        for name in names:
            timed(name, step)
    for r in range(rounds):
        for name in names:
            if dev.type == "cuda" and r == 0:
                torch.cuda.reset_peak_memory_stats(dev)
            times[name].append(timed(name, warmup + r))
            if dev.type == "cuda" and r == 0:
                peaks[name] = torch.cuda.max_memory_allocated(dev) / 2**20
        doing[0] = "drawing the data"
        data_times.append(bench.data_step())
    return times, compile_s, data_times, peaks


def run_speed(out: Path, *, model: str = "cnn3", methods: list[str] | None = None, batch_size: int = 64,
              rounds: int = 20, warmup: int = 3, device: str = "auto",
              channels_last: Optional[bool] = None, shape: tuple[int, int, int] = (1, 28, 28),
              profile_steps: int = 0) -> list[dict]:
    """Time ``methods`` (rows, see ``variant``) on synthetic ``shape`` images (channels, height, width);
    with ``profile_steps``, profile that many more steps of each row (``bench.profile``)."""
    dev = pick_device(device)
    channels_last = use_channels_last(channels_last, dev)
    variants = row_variants(methods)
    names = list(variants)
    doing = ["building the model and the synthetic data"]  # what ran out of memory, if anything does
    with out_of_memory_as(lambda asked: f"bench speed: out of memory on {dev} {doing[0]} at --batch-size "
                                        f"{batch_size} (an allocation of {asked} failed): lower --batch-size"):
        bench = Bench(model, batch_size, dev, shape=shape, channels_last=channels_last)
        instances = {}
        for name in names:
            doing[0] = f"building row {name}"
            instances[name] = bench.method(name)
        times, compile_s, data_times, peaks = _time_rows(bench, instances, rounds, warmup, doing)
    if dev.type != "cuda":
        peaks = {name: _peak_mb_subprocess(name, model, batch_size, channels_last, shape) for name in names}
    median_ms = {name: statistics.median(times[name]) * 1000 for name in names}
    ref = median_ms.get("supervised")
    rows = []
    for name in names:
        ms, v = median_ms[name], variants[name]
        plain = name.partition(":")[0]
        images = batch_size * (2 if v.cls.needs_unlabeled else 1)
        rows.append({"method": name, "ms_per_step": round(ms, 3),
                     "ratio_to_supervised": round(ms / ref, 3) if ref else None,
                     # a variant against the same method at its defaults, where the run has both
                     "ratio_to_plain": round(ms / median_ms[plain], 3) if plain != name and plain in median_ms else None,
                     "images_per_second": round(images / ms * 1000, 1),
                     "peak_mem_mb": round(peaks[name], 1) if peaks.get(name) is not None else None,
                     "unlabeled": v.cls.needs_unlabeled,
                     "amp": str(autocast_for(v.run, dev)[1] or "off").replace("torch.", ""),
                     "compiled": bench.compiled[name],
                     "compile_seconds": round(compile_s[name], 1) if bench.compiled[name] else None})
    data_ms = statistics.median(data_times) * 1000
    meta = {"model": model, "image": "x".join(map(str, shape)), "batch": f"{batch_size} labeled + {batch_size} unlabeled", "device": str(dev),
            "rounds": rounds, "warmup": warmup, "profile_steps": profile_steps, "data_pipeline_ms": round(data_ms, 3),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "layout": "channels_last (NHWC)" if channels_last else "contiguous (NCHW)",
            "cpu_allocator": keep_freed_memory() if dev.type == "cpu" else None,
            "machine": machine.fingerprint(dev)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "speed_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "speed.md").write_text(to_markdown(rows, meta))
    if profile_steps:  # after the timings are on disk, so that a profile cut short loses nothing else
        profiles = {name: profile.profile_steps(lambda step, name=name: bench.step(instances[name], step),
                                                warmup + rounds, profile_steps, dev) for name in names}
        (out / "profile.json").write_text(json.dumps(profiles, indent=2) + "\n")
        (out / "profile.md").write_text(profile.to_markdown(profiles))
    return rows


def to_markdown(rows: list[dict], meta: dict | None = None) -> str:
    lines = []
    if meta:
        on = f" ({machine.describe(meta['machine'], with_torch=False)})" if meta.get("machine") else ""
        lines += [f"Model {meta['model']} on {meta.get('image', '1x28x28')} images, batch {meta['batch']}, {meta.get('layout', '')}, device {meta['device']}{on}, "
                  f"{meta['threads']} threads, torch {meta['torch']}, median of {meta['rounds']} steps"
                  f"{', CPU allocator ' + meta['cpu_allocator'] if meta.get('cpu_allocator') else ''}. "
                  f"Data pipeline (index, gather, augment of both batches): {meta['data_pipeline_ms']} ms.", ""]
    lines += ["| method | ms/step | x supervised | x plain | images/s | amp | compiled (s) | peak MB |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        compiled = f"{r.get('compile_seconds')}" if r.get("compiled") else "-"
        plain = r.get("ratio_to_plain")
        lines.append(f"| {r['method']} | {r['ms_per_step']:.2f} | {r['ratio_to_supervised']} | "
                     f"{plain if plain is not None else '-'} | {r.get('images_per_second')} | {r.get('amp', 'off')} | "
                     f"{compiled} | {r['peak_mem_mb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--peak", required=True)
    p.add_argument("--model", default="cnn3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--layout", choices=["nhwc", "nchw"], default="nchw")
    p.add_argument("--shape", default="1,28,28")
    a = p.parse_args()
    print(_peak_cpu_child(a.peak, a.model, a.batch_size, a.layout == "nhwc",
                          tuple(int(v) for v in a.shape.split(","))))
