import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600, check: bool = False, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the ``metassl`` command line in a fresh interpreter, in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "metassl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"metassl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


# IDX files (MNIST's format) written for a test.
def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
    code = codes[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (scripts/gpu-check.sh runs them) are skipped where no GPU is."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def float64():
    """Double precision as the default dtype for one test (gradient checks)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def cli():
    return run_cli


# Small, fast settings shared by engine tests: digits, mlp, a few steps.
FAST = ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "batch_size=32",
        "tensorboard=false", "lr=0.05"]


def kill_after_checkpoint(trainer, step: int) -> None:
    """Make ``trainer`` stop with KeyboardInterrupt right after it has saved its checkpoint at ``step``,
    as a kill between two steps leaves a run."""
    real_save = trainer.save

    def save():
        real_save()
        if trainer.step == step:
            raise KeyboardInterrupt

    trainer.save = save
