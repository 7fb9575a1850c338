"""``metassl bench speed``: every method's ``train_step`` on one model and batch, interleaved.

All methods are timed in one process, round-robin after a warm-up, so that machine noise hits
them alike; the median is reported. Peak memory is the CUDA allocator's peak on a GPU; on the
CPU each method runs in a fresh subprocess and the peak resident-set growth over its steps is
reported: the resident set is sampled during three steps, after a first step has allocated what
persists (optimizer state), with glibc returning freed blocks at once.
"""
from __future__ import annotations

import argparse
import copy
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

from metassl.config import build_dataclass, parse_overrides
from metassl.data.augment import Augmenter
from metassl.data.stream import IndexStream
from metassl.engine.setup import pick_device, use_channels_last
from metassl.methods import METHODS, Batch, TrainContext
from metassl.models import create_model

POOL = 2048  # synthetic images each stream draws from


def method_spec(spec: str):
    """(class, config) for a method name, optionally followed by overrides of its defaults,
    ``metamixup:grad=first_order,meta_bn=eval``, so that variants of one method can be timed."""
    name, _, options = spec.partition(":")
    cls = METHODS.get(name)
    overrides = parse_overrides([o for o in options.split(",") if o])
    return cls, build_dataclass(cls.Config, overrides, name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """Synthetic data, streams and one freshly built method per name, all on one model init."""

    def __init__(self, model: str, batch_size: int, device: torch.device, shape=(1, 28, 28), classes=10,
                 channels_last: bool = False):
        torch.manual_seed(0)
        self.device = device
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

    def batch(self, kind: str) -> Batch:
        idx = self.streams[kind].next()
        raw = self.x[idx]
        return Batch(x=self.aug(raw), raw=raw, y=self.y[idx], idx=idx)

    def method(self, name: str):
        cls, cfg = method_spec(name)
        model = copy.deepcopy(self.base_model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        ctx = TrainContext(num_classes=self.classes, total_steps=1000, augment=self.aug,
                           normalize=self.aug.normalize, strong_augment=self.aug.strong,
                           device=self.device, lr=lambda: 0.01,
                           sample_val=lambda: self.batch("val"), num_train=POOL, num_unlabeled=POOL)
        return cls(model, opt, cfg, ctx)

    def step(self, method, step: int) -> float:
        labeled = self.batch("labeled")
        unlabeled = self.batch("unlabeled") if method.needs_unlabeled else None
        _sync(self.device)
        t0 = time.perf_counter()
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


def _peak_mb_subprocess(name: str, model: str, batch_size: int, channels_last: bool = False) -> float | None:
    cmd = [sys.executable, "-m", "metassl.bench.speed", "--peak", name, "--model", model,
           "--batch-size", str(batch_size), "--layout", "nhwc" if channels_last else "nchw"]
    # A fixed mmap threshold makes glibc hand large freed blocks back at once, so the resident
    # set follows the live tensors instead of staying at its high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _peak_cpu_child(name: str, model: str, batch_size: int, channels_last: bool = False) -> float:
    """Peak resident-set growth over a step, above the state that persists between steps."""
    torch.set_num_threads(1)
    bench = Bench(model, batch_size, torch.device("cpu"), channels_last=channels_last)
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


def run_speed(out: Path, *, model: str = "cnn3", methods: list[str] | None = None, batch_size: int = 64,
              rounds: int = 20, warmup: int = 3, device: str = "auto",
              channels_last: Optional[bool] = None) -> list[dict]:
    dev = pick_device(device)
    channels_last = use_channels_last(channels_last, dev)
    names = methods or METHODS.names()
    for name in names:
        method_spec(name)
    bench = Bench(model, batch_size, dev, channels_last=channels_last)
    instances = {name: bench.method(name) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    data_times = []
    peaks = {}
    for step in range(warmup):
        for name, m in instances.items():
            bench.step(m, step)
    for r in range(rounds):
        for name, m in instances.items():
            if dev.type == "cuda" and r == 0:
                torch.cuda.reset_peak_memory_stats(dev)
            times[name].append(bench.step(m, warmup + r))
            if dev.type == "cuda" and r == 0:
                peaks[name] = torch.cuda.max_memory_allocated(dev) / 2**20
        data_times.append(bench.data_step())
    if dev.type != "cuda":
        peaks = {name: _peak_mb_subprocess(name, model, batch_size, channels_last) for name in names}
    ref = statistics.median(times["supervised"]) if "supervised" in times else None
    rows = []
    for name in names:
        ms = statistics.median(times[name]) * 1000
        rows.append({"method": name, "ms_per_step": round(ms, 3),
                     "ratio_to_supervised": round(ms / (ref * 1000), 3) if ref else None,
                     "peak_mem_mb": round(peaks[name], 1) if peaks.get(name) is not None else None,
                     "unlabeled": method_spec(name)[0].needs_unlabeled})
    data_ms = statistics.median(data_times) * 1000
    meta = {"model": model, "batch": f"{batch_size} labeled + {batch_size} unlabeled", "device": str(dev),
            "rounds": rounds, "data_pipeline_ms": round(data_ms, 3),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "layout": "channels_last (NHWC)" if channels_last else "contiguous (NCHW)"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "speed_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "speed.md").write_text(to_markdown(rows, meta))
    return rows


def to_markdown(rows: list[dict], meta: dict | None = None) -> str:
    lines = []
    if meta:
        lines += [f"Model {meta['model']}, batch {meta['batch']}, {meta.get('layout', '')}, device {meta['device']}, "
                  f"{meta['threads']} threads, torch {meta['torch']}, median of {meta['rounds']} steps. "
                  f"Data pipeline (index, gather, augment of both batches): {meta['data_pipeline_ms']} ms.", ""]
    lines += ["| method | ms/step | x supervised | peak MB |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['ms_per_step']:.2f} | {r['ratio_to_supervised']} | {r['peak_mem_mb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--peak", required=True)
    p.add_argument("--model", default="cnn3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--layout", choices=["nhwc", "nchw"], default="nchw")
    a = p.parse_args()
    print(_peak_cpu_child(a.peak, a.model, a.batch_size, a.layout == "nhwc"))
