"""What a run trained on, for its final.json: runs repeat bit for bit on one machine but not
across processors (a different kernel, a different rounding), so a row of a table names the
machines it came from."""
from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from typing import Optional

import torch


@lru_cache(maxsize=1)
def processor() -> str:
    """The processor's model name: Linux's /proc/cpuinfo (an ARM core's implementer and part
    numbers where it names no model), macOS's sysctl, else what ``platform`` knows of it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            named = cpuinfo_name(f.read())
    except OSError:
        named = None
    if named:
        return named
    if sys.platform == "darwin":
        try:
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                   text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            brand = ""
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown"


def cpuinfo_name(text: str) -> Optional[str]:
    """The processor /proc/cpuinfo names: its first ``model name``, or an ARM core's implementer
    and part numbers where it names no model; None where it says neither."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if fields.get("model name"):
        return fields["model name"]
    if fields.get("CPU implementer") and fields.get("CPU part"):
        return f"ARM implementer {fields['CPU implementer']} part {fields['CPU part']}"
    return None


def fingerprint(device: Optional[torch.device] = None) -> dict:
    """The processor, the instruction set torch's CPU kernels use, the accelerator (None on the
    CPU) and torch's version: what decides whether two runs can repeat each other bit for bit."""
    accelerator = None
    if device is not None and device.type == "cuda":
        accelerator = torch.cuda.get_device_name(device)
    elif device is not None and device.type != "cpu":
        accelerator = device.type
    return {"cpu": processor(), "arch": platform.machine(), "isa": str(torch.backends.cpu.get_cpu_capability()),
            "accelerator": accelerator, "torch": str(torch.__version__)}


def joined(earlier: Optional[list], device: Optional[torch.device] = None) -> list:
    """The machines of a run resumed here: those its checkpoint names (``earlier``; None for a
    checkpoint that predates the record, whose machine is unknown: a None entry), then this one
    where it differs from the last."""
    machines = [None] if earlier is None else list(earlier)
    here = fingerprint(device)
    return machines if machines and machines[-1] == here else machines + [here]


def describe(entry: Optional[dict], with_torch: bool = True) -> str:
    """One machine in words: 'Intel(R) Xeon(R) Processor (AVX512), torch 2.13.0+cpu'."""
    if not isinstance(entry, dict) or not entry:
        return "a machine not recorded"
    where = entry.get("accelerator") or f"{entry.get('cpu', 'unknown')} ({entry.get('isa', '?')})"
    return f"{where}, torch {entry.get('torch', '?')}" if with_torch else where
