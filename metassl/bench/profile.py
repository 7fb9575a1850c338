"""``metassl bench speed --profile N``: where each row's step spends its time.

Each row takes ``N`` more steps under ``torch.profiler`` after its timed ones. Each operator's
self time per step (time in the operator itself, not in the operators it calls; on CUDA, the GPU
time of the kernels it launched) is summed into families, so that a row's table says how much of
the step is convolution kernels, BatchNorm, pooling, matrix products and the rest (elementwise
ops, reductions, copies, the optimizer), and lists its most expensive operators. A layer written
as plain tensor ops counts where those ops do: the maxima and winner tests of cnn3's
``max_pool2x2`` under "other", its backward (the native kernel) under "pooling".
``profile.json`` holds the numbers, ``profile.md`` the tables.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# Operator families, first match wins; names are the profiler's (``aten::convolution_backward``).
FAMILIES = (
    ("convolution", re.compile(r"convolution|conv[123]d|conv_", re.I)),
    ("batch_norm", re.compile(r"batch_norm", re.I)),
    ("pooling", re.compile(r"pool", re.I)),
    ("matmul", re.compile(r"aten::(mm|addmm|bmm|matmul|linear)\b")),
)
OTHER = "other"
TOP = 12


def family(op: str) -> str:
    for name, pattern in FAMILIES:
        if pattern.search(op):
            return name
    return OTHER


def profile_steps(step: Callable[[int], object], first: int, steps: int, device: torch.device) -> dict:
    """Run ``step(first) ... step(first + steps - 1)`` under the profiler; self time per step by
    family and the ``TOP`` operators with the most self time."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            step(first + i)
    events = prof.key_averages()
    cuda = device.type == "cuda"
    ops = []
    for e in events:
        if cuda and e.device_type != DeviceType.CPU:
            continue  # a kernel's time is also its launching operator's: count it there, once
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0:
            ops.append({"op": e.key, "self_ms_per_step": us / 1000 / steps, "calls_per_step": e.count / steps})
    total = sum(o["self_ms_per_step"] for o in ops)
    groups = {name: 0.0 for name, _ in FAMILIES} | {OTHER: 0.0}
    for o in ops:
        groups[family(o["op"])] += o["self_ms_per_step"]
    ops.sort(key=lambda o: -o["self_ms_per_step"])

    def share(ms: float) -> float:
        return round(100 * ms / total, 1) if total else 0.0

    return {"clock": "device" if cuda else "cpu", "steps": steps, "ms_per_step": round(total, 3),
            "families": {k: {"ms_per_step": round(v, 3), "percent": share(v)} for k, v in groups.items()},
            "top": [{"op": o["op"], "self_ms_per_step": round(o["self_ms_per_step"], 3),
                     "calls_per_step": round(o["calls_per_step"], 2), "percent": share(o["self_ms_per_step"])}
                    for o in ops[:TOP]]}


def to_markdown(profiles: dict[str, dict]) -> str:
    if not profiles:
        return ""
    names = [name for name, _ in FAMILIES] + [OTHER]
    lines = ["Self time per step by operator family, % of the profiled step (its ms under the profiler, "
             "which adds a little to each operator):", "",
             "| row | profiled ms/step | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for row, p in profiles.items():
        lines.append(f"| {row} | {p['ms_per_step']:.1f} | "
                     + " | ".join(f"{p['families'][n]['percent']}" for n in names) + " |")
    for row, p in profiles.items():
        lines += ["", f"{row}: the {len(p['top'])} operators with the most self time", "",
                  "| operator | ms/step | calls/step | % |", "|---|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['self_ms_per_step']:.2f} | {o['calls_per_step']:g} | {o['percent']} |"
                  for o in p["top"]]
    return "\n".join(lines) + "\n"
