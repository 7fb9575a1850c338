import shutil
import subprocess
import sys

import torch

from tests.conftest import FAST, REPO


def test_two_process_data_parallel_run_on_cpu(tmp_path):
    torchrun = shutil.which("torchrun", path=str(REPO / ".venv" / "bin")) or shutil.which("torchrun")
    out = tmp_path / "ddp"
    cmd = [torchrun or sys.executable, "--nproc_per_node", "2", "-m", "metassl.cli", "train",
           "--out", str(out), *FAST, "steps=8", "eval_every=4", "threads=1"]
    if torchrun is None:
        cmd[1:1] = ["-m", "torch.distributed.run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 8
    # every rank draws its own slice of each global batch: twice the images of one process
    assert state["counters"]["images"] == 2 * 8 * 32
    assert proc.stdout.count('"test_error"') == 1  # only rank 0 reports
