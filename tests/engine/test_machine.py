"""Each run records the machines it trained on (runs repeat bit for bit on one machine, not
across processors), a resumed run adds the machine it resumed on, and a suite's table names them."""
import json

import pytest
import torch

from metassl import config
from metassl.bench import suites
from metassl.engine import checkpoint as ckpt
from metassl.engine import machine
from metassl.engine.trainer import Trainer
from tests.conftest import FAST, kill_after_checkpoint

OTHER = {"cpu": "AMD EPYC 7763 64-Core Processor", "arch": "x86_64", "isa": "AVX2", "accelerator": None,
         "torch": "2.13.0+cpu"}


def test_the_fingerprint_names_this_processor_its_kernels_and_torch():
    here = machine.fingerprint(torch.device("cpu"))
    assert here["cpu"] and here["cpu"] != "unknown"
    assert here["isa"] == torch.backends.cpu.get_cpu_capability()
    assert here["torch"] == torch.__version__ and here["accelerator"] is None
    assert machine.describe(here) == f"{here['cpu']} ({here['isa']}), torch {torch.__version__}"
    assert machine.describe(None) == "a machine not recorded"


def test_cpuinfo_names_an_x86_model_or_an_arm_core():
    x86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: avx512f\n\nprocessor\t: 1\n"
    assert machine.cpuinfo_name(x86) == "Intel(R) Xeon(R) Processor"
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    assert machine.cpuinfo_name(arm) == "ARM implementer 0x41 part 0xd0c"
    assert machine.cpuinfo_name("processor\t: 0\n") is None


def test_a_machine_joins_the_list_only_where_it_differs_from_the_last():
    here = machine.fingerprint(torch.device("cpu"))
    assert machine.joined([]) == [here]
    assert machine.joined([here]) == [here]
    assert machine.joined([OTHER]) == [OTHER, here]
    assert machine.joined(None) == [None, here]  # a checkpoint from before the record


def _resumed(tmp_path, edit):
    """A run killed after its checkpoint at step 10, whose checkpoint ``edit`` changes as another
    machine (or an older version) would have written it, then resumed here."""
    cfg = config.load_config(None, FAST + ["steps=20", "eval_every=10", "checkpoint_every=10"])
    trainer = Trainer(cfg, tmp_path)
    kill_after_checkpoint(trainer, 10)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = ckpt.load(tmp_path / "checkpoint.pt")
    edit(state)
    ckpt.atomic_save(state, tmp_path / "checkpoint.pt")
    Trainer(cfg, tmp_path, resume=True).fit()
    return json.loads((tmp_path / "final.json").read_text())["machines"]


def test_a_run_records_its_machine_and_a_resumed_run_adds_the_one_it_resumed_on(tmp_path):
    here = machine.fingerprint(torch.device("cpu"))
    assert _resumed(tmp_path / "same", lambda state: None) == [here]
    assert _resumed(tmp_path / "moved", lambda state: state.update(machines=[OTHER])) == [OTHER, here]
    assert _resumed(tmp_path / "older", lambda state: state.pop("machines")) == [None, here]


def test_a_suite_table_names_the_machines_of_its_rows():
    here = machine.fingerprint(torch.device("cpu"))
    rows = [{"machines": [here]}, {"machines": [here]}, {"machines": [OTHER, here]}, {},
            {"machines": [None, here]}, {"machines": ["not a machine"]}]
    assert suites._trained_on(rows) == (
        f" Trained on: {machine.describe(here)} (4 runs); {machine.describe(OTHER)} (1 run); "
        "a machine not recorded (3 runs).")
    assert suites._trained_on([{}, {"machines": []}, {"machines": "x"}]) == ""
