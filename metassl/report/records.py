"""Reading what the engine and the suites wrote: metrics.jsonl, final.json, results.json.

A file that exists but cannot be parsed is a one-line error naming the file (and line);
a file that does not exist is ``None`` or empty, since a report of an unfinished run is useful.
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from metassl.errors import CheckpointError


def read_json(path: Path) -> Optional[Any]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"report: cannot read {path}: {exc}") from None


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CheckpointError(f"report: cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CheckpointError(f"report: {path} line {number} is not JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise CheckpointError(f"report: {path} line {number} is not an object with an integer 'step'")
        out.append(record)
    return out


def number(value: Any) -> Optional[float]:
    """A finite float, or None for missing and non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Series:
    """One quantity over training steps."""

    steps: list[int]
    values: list[float]


def series(records: list[dict], key: str) -> Series:
    pairs = [(r["step"], number(r.get(key))) for r in records]
    pairs = [(s, v) for s, v in pairs if v is not None]
    return Series([s for s, _ in pairs], [v for _, v in pairs])


def mean_series(runs: list[list[dict]], key: str) -> Series:
    """The per-step mean of ``key`` over several runs' metrics (seeds of one setting)."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for records in runs:
        s = series(records, key)
        for step, value in zip(s.steps, s.values):
            by_step[step].append(value)
    steps = sorted(by_step)
    return Series(steps, [statistics.fmean(by_step[step]) for step in steps])


def loss_keys(records: list[dict]) -> list[str]:
    """The interval-mean training losses in metrics.jsonl (``train_error`` is an error rate, not a loss)."""
    keys = dict.fromkeys(k for r in records for k in r if k.startswith("train_") and k != "train_error")
    return [k for k in keys if series(records, k).values]


def load_rows(suite_dir: Path) -> list[dict]:
    rows = read_json(suite_dir / "results.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                             for r in rows):
        raise CheckpointError(f"report: {suite_dir / 'results.json'} is not a list of suite rows with names")
    return rows
