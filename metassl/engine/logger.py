"""metrics.jsonl, TensorBoard scalars and a progress line that is silent off a terminal."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from metassl.files import append_line, storage_errors


def duration(seconds: float) -> str:
    """``seconds`` as a short duration: 42s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RunLogger:
    def __init__(self, out: Path | None, total_steps: int, tensorboard: bool, start_step: int = 0):
        self.out, self.total = out, total_steps
        # The ETA extrapolates the wall time per step since this logger began (evaluations included).
        self.start_step, self.start_time = start_step, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.writer = None
        if out is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass  # TensorBoard is optional at run time; metrics.jsonl is always written
            else:
                with storage_errors(out / "tensorboard"):
                    self.writer = SummaryWriter(str(out / "tensorboard"))
        self.last_val: float | None = None
        self.last_val_step: int | None = None

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and value is not None:
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def train(self, step: int, values: dict) -> None:
        self.scalars(step, values, "train")
        if self.tty:
            # The latest evaluation, which precedes this step's: labelled with its own step.
            val = f" val {self.last_val:.2f}% (step {self.last_val_step})" if self.last_val is not None else ""
            sys.stderr.write(f"\rstep {step}/{self.total} loss {values['loss']:.4f} lr {values['lr']:.4g}"
                             f"{val} {values['images_per_second']:.0f} img/s{self.eta(step)}   ")
            sys.stderr.flush()

    def eta(self, step: int) -> str:
        """`` eta 3m05s`` for the steps left after ``step``, or '' before the first step is timed."""
        done = step - self.start_step
        if done <= 0:
            return ""
        left = (time.perf_counter() - self.start_time) / done * (self.total - step)
        return f" eta {duration(left)}"

    def evaluation(self, record: dict) -> None:
        self.last_val, self.last_val_step = record.get("val_error"), record["step"]
        self.scalars(record["step"], record, "eval")
        if self.out is not None:
            append_line(self.out / "metrics.jsonl", json.dumps(record))

    def close(self, quietly: bool = False) -> None:
        """Close TensorBoard's files; ``quietly`` (training already stopped with an error) drops a
        failure to, which would otherwise replace that error."""
        if self.tty:
            sys.stderr.write("\n")
        if self.writer is not None:
            try:
                with storage_errors(self.out / "tensorboard"):
                    self.writer.close()
            except Exception:  # noqa: BLE001 - whatever the writer raises
                if not quietly:
                    raise
