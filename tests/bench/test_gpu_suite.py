"""scripts/gpu-suite.sh: its plumbing on a CPU (DEVICE=cpu), on a small Fashion-MNIST in the real
IDX format; the same script trains on one GPU where there is one."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO, write_idx

SCRIPT = REPO / "scripts" / "gpu-suite.sh"
SUITE = {
    "description": "tiny Fashion-MNIST",
    "base": {"dataset": "fashion_mnist", "model": "mlp", "labels_per_class": 2, "val_per_class": 1,
             "steps": 6, "eval_every": 3, "batch_size": 8, "tensorboard": False},
    "runs": [{"method": "supervised"}, {"method": "mixup_ssl"}],
    "seeds": [0, 1],
}


@pytest.fixture
def fashion(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion"
    write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), gz=True)
    write_idx(d / "train-labels-idx1-ubyte.gz", (np.arange(60) % 10).astype(np.uint8), gz=True)
    write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), gz=True)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", (np.arange(20) % 10).astype(np.uint8), gz=True)
    return d


def _script(tmp_path, fashion, *args, **env):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    full = {**os.environ, "PYTHON": sys.executable, "DATA": str(fashion), "DEVICE": "cpu", "JOBS": "2", **env}
    return subprocess.run(["bash", str(SCRIPT), str(suite), str(tmp_path / "out"), *args], capture_output=True,
                          text=True, env=full, timeout=600)


def test_trains_every_run_at_once_and_tabulates_as_the_cpu_suites(tmp_path, fashion):
    proc = _script(tmp_path, fashion, "steps=4", "threads=2")  # threads: one of the script's own settings
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["name"] for r in rows) == ["method=mixup_ssl,seed=0", "method=mixup_ssl,seed=1",
                                              "method=supervised,seed=0", "method=supervised,seed=1"]
    # the overrides and the data folder reached every run
    assert all(r["steps"] == 4 and r["config"]["data_root"] == str(fashion) for r in rows)
    assert all(r["config"]["threads"] == 2 and r["config"]["device"] == "cpu" for r in rows)
    assert "| mixup_ssl |" in (out / "table.md").read_text() and "| mixup_ssl |" in proc.stdout
    assert "2 runs at once, device cpu" in (out / "machine.txt").read_text()


def test_stopped_at_the_limit_it_tabulates_what_finished_and_the_same_command_continues(tmp_path, fashion):
    first = _script(tmp_path, fashion, LIMIT="1", ONLY="method=supervised")
    assert first.returncode != 0 and "the same command continues" in first.stderr
    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text()) == []
    second = _script(tmp_path, fashion, ONLY="method=supervised")
    assert second.returncode == 0, second.stderr
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["name"] for r in rows) == ["method=supervised,seed=0", "method=supervised,seed=1"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is")
def test_refuses_without_a_gpu_or_without_the_data(tmp_path, fashion):
    proc = _script(tmp_path, fashion, DEVICE="cuda")
    assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr
    proc = _script(tmp_path, tmp_path / "nowhere")
    assert proc.returncode == 2 and "no Fashion-MNIST folder" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_setting_is_an_error_not_a_stop_to_continue(tmp_path, fashion):
    proc = _script(tmp_path, fashion, "no_such_key=1")
    assert proc.returncode == 2 and "no_such_key" in proc.stderr
    assert "continues" not in proc.stderr
