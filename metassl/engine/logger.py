"""metrics.jsonl, TensorBoard scalars and a progress line that is silent off a terminal."""
from __future__ import annotations

import json
import sys
from pathlib import Path


class RunLogger:
    def __init__(self, out: Path | None, total_steps: int, tensorboard: bool):
        self.out, self.total = out, total_steps
        self.tty = sys.stderr.isatty()
        self.writer = None
        if out is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass  # TensorBoard is optional at run time; metrics.jsonl is always written
            else:
                self.writer = SummaryWriter(str(out / "tensorboard"))
        self.last_val: float | None = None

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and value is not None:
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def train(self, step: int, values: dict) -> None:
        self.scalars(step, values, "train")
        if self.tty:
            val = f" val {self.last_val:.2f}%" if self.last_val is not None else ""
            sys.stderr.write(f"\rstep {step}/{self.total} loss {values['loss']:.4f} lr {values['lr']:.4g}"
                             f"{val} {values['images_per_second']:.0f} img/s   ")
            sys.stderr.flush()

    def evaluation(self, record: dict) -> None:
        self.last_val = record.get("val_error")
        self.scalars(record["step"], record, "eval")
        if self.out is not None:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
        if self.writer is not None:
            self.writer.close()
