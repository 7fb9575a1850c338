"""engine.allocator: freed activations stay in the process, so a step stops faulting pages in."""
import json
import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")

# Allocates, touches and frees a 40 MiB tensor 30 times, as a training step does its activations
# (glibc maps anything above 32 MiB afresh, whatever it has seen before), and prints keep_freed_memory's status and the minor page faults of those 30 rounds.
CHILD = """
import json, resource, sys, torch
from metassl.engine.allocator import keep_freed_memory
status = keep_freed_memory() if sys.argv[1] == "1" else None
def rounds():
    for _ in range(30):
        t = torch.empty(10 * 2**20)
        t.fill_(1.0)
        del t
rounds()  # the first allocation faults its pages in whatever the setting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(json.dumps({"status": status, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _child(apply: bool, **env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "METASSL_CPU_ALLOCATOR")}
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if apply else "0"], capture_output=True, text=True,
                         env={**clean, **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@glibc
def test_kept_memory_stops_the_page_faults_of_repeated_large_tensors():
    pages = 30 * 10 * 2**20 * 4 // 4096  # what 30 fresh mappings of the tensor fault in
    system = _child(apply=False)
    kept = _child(apply=True)
    assert kept["status"] == "kept"
    assert system["faults"] > pages // 2
    assert kept["faults"] < pages // 50


@glibc
@pytest.mark.parametrize("env", [{"METASSL_CPU_ALLOCATOR": "system"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_the_users_own_malloc_settings_win(env):
    result = _child(apply=True, **env)
    assert result["status"] == "system"
    assert result["faults"] > 30 * 10 * 2**20 * 4 // 4096 // 2


def test_a_cpu_run_reports_the_allocator(tmp_path):
    from metassl.config import resolve
    from metassl.engine.allocator import keep_freed_memory
    from metassl.engine.trainer import train

    cfg = resolve({"dataset": "digits", "method": "supervised", "model": "mlp", "steps": 4, "batch_size": 8,
                   "eval_every": 4, "labels_per_class": 2, "val_per_class": 1, "device": "cpu"})
    final = train(cfg, tmp_path / "run")
    assert final["cpu_allocator"] == keep_freed_memory()  # the process's setting, applied by the run
    user_set = any(k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "METASSL_CPU_ALLOCATOR") for k in os.environ)
    if platform.libc_ver()[0] == "glibc" and not user_set:
        assert final["cpu_allocator"] == "kept"
    assert json.loads((tmp_path / "run" / "final.json").read_text())["cpu_allocator"] == final["cpu_allocator"]
