"""Memory a device does not have: a one-line error naming what to lower, and nothing lost on disk."""
import numpy as np
import pytest
import torch

from metassl import cli
from metassl.engine import setup
from metassl.engine.trainer import Trainer
from metassl.errors import OutOfMemory, memory_asked, out_of_memory_as
from tests.conftest import FAST


def _allocate_too_much(*args, **kwargs):
    """A real failed allocation: far more than any machine's memory, refused at once by the allocator."""
    return torch.empty(2**45)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_the_allocators_messages_are_told_apart_from_other_errors():
    try:
        _allocate_too_much()
    except RuntimeError as exc:
        assert memory_asked(exc) == "131072.00 GiB"
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
                                  "of 79.15 GiB of which 3.12 GiB is free.")
    assert memory_asked(cuda) == "20.00 GiB"
    assert memory_asked(RuntimeError("MPS backend out of memory")) == "an unknown amount"
    small = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                         "you tried to allocate 3145728 bytes. Error code 12 (Cannot allocate memory)")
    assert memory_asked(small) == "3.00 MiB"
    assert memory_asked(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    with pytest.raises(OutOfMemory, match=r"^lower it: 20.00 GiB$"):
        with out_of_memory_as(lambda asked: f"lower it: {asked}"):
            raise cuda
    with pytest.raises(RuntimeError, match="shapes"):  # any other error passes unchanged
        with out_of_memory_as(lambda asked: "never"):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_a_training_step_out_of_memory_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        real_step = self.method.train_step

        def step(labeled, unlabeled, i):
            if i == 7:  # after the checkpoint at step 5
                _allocate_too_much()
            return real_step(labeled, unlabeled, i)

        self.method.train_step = step

    monkeypatch.setattr(Trainer, "__init__", init)
    code = cli.main(["train", "--out", str(out), *FAST, "method=mixup_ssl", "steps=10", "eval_every=5"])
    line = _error_line(capsys)
    assert code == 1
    assert line.startswith("metassl: error: train: out of memory in training step 8 on cpu (an allocation of "
                           "131072.00 GiB failed; a step of mixup_ssl takes 32 labeled + 32 unlabeled images")
    assert "lower batch_size (and unlabeled_batch_size)" in line
    assert f"the last checkpoint (step 5) is kept in {out}" in line
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 5
    # the run it kept continues once the memory is there
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out)]) == 0


def test_an_evaluation_out_of_memory_names_eval_batch_size_and_the_resume_that_lowers_it(tmp_path, monkeypatch,
                                                                                          capsys):
    out = tmp_path / "run"
    real_evaluate = Trainer.evaluate
    calls = []

    def evaluate(self):
        calls.append(self.step)
        if len(calls) == 2:
            _allocate_too_much()
        return real_evaluate(self)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    assert cli.main(["train", "--out", str(out), *FAST, "steps=10", "eval_every=5"]) == 1
    line = _error_line(capsys)
    assert line.startswith("metassl: error: train: out of memory evaluating at step 10 on cpu (an allocation of "
                           "131072.00 GiB failed): lower eval_batch_size (now 256); metassl train --resume")
    assert f"--resume {out} eval_batch_size=N continues from the last checkpoint (step 5)" in line
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out), "eval_batch_size=64"]) == 0


def test_a_batch_larger_than_the_machine_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--out", str(out), *FAST, "method=fixmatch", "batch_size=10000000000", "steps=2"])
    line = _error_line(capsys)
    assert code == 2
    assert ("config: batch_size=10000000000 is too large: a step's 10000000000 labeled + 70000000000 unlabeled "
            "inputs of (1, 8, 8) take 19073.5 GiB as float32 alone, more than the ") in line
    assert not out.exists()
    # the bound is the device's memory: a batch that fits it passes
    setup.check_batch_fits(setup.TrainConfig(batch_size=32), 64, (1, 8, 8), torch.device("cpu"))


def test_eval_and_predict_out_of_memory_name_their_batch_size(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), *FAST, "steps=4", "eval_every=4"]) == 0
    capsys.readouterr()
    from metassl.engine import rundir
    real = rundir.error_rate

    def error_rate(model, x, *args):
        if len(x) > 0:
            _allocate_too_much()
        return real(model, x, *args)

    monkeypatch.setattr(rundir, "error_rate", error_rate)
    assert cli.main(["eval", str(run), "--batch-size", "100"]) == 1
    assert _error_line(capsys) == (f"metassl: error: eval: out of memory on cpu evaluating {run} in batches of 100 "
                                   "(an allocation of 131072.00 GiB failed): lower --batch-size")
    monkeypatch.undo()
    table = tmp_path / "x.npz"
    np.savez(table, x=np.zeros((5, 8, 8), np.uint8))
    preds = tmp_path / "p.csv"
    preds.write_text("kept\n")
    from metassl.api import inference
    monkeypatch.setattr(inference.Classifier, "forward", _allocate_too_much)
    assert cli.main(["predict", str(run), str(table), "--out", str(preds), "--batch-size", "3"]) == 1
    assert _error_line(capsys) == ("metassl: error: predict: out of memory predicting a batch of 3 inputs (an "
                                   "allocation of 131072.00 GiB failed): lower --batch-size (now 3); nothing was "
                                   f"written to {preds}")
    assert preds.read_text() == "kept\n"


def test_eval_batch_size_changes_nothing_but_the_batching(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), *FAST, "steps=4", "eval_every=4"]) == 0
    capsys.readouterr()
    from metassl.engine.rundir import evaluate_run
    whole, small = evaluate_run(run), evaluate_run(run, batch_size=7)
    assert whole["test_error"] == pytest.approx(small["test_error"]) and whole["val_error"] == small["val_error"]


@pytest.mark.parametrize("where", ["step", "evaluation"])
def test_a_fit_in_python_out_of_memory_says_what_to_lower_without_a_resume_it_cannot_do(monkeypatch, where):
    from metassl import SSLClassifier

    x = np.random.default_rng(0).integers(0, 255, (40, 8, 8)).astype(np.uint8)
    y = np.arange(40) % 2
    if where == "evaluation":
        monkeypatch.setattr(Trainer, "evaluate", _allocate_too_much)
    else:
        real_init = Trainer.__init__

        def init(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            self.method.train_step = _allocate_too_much

        monkeypatch.setattr(Trainer, "__init__", init)
    clf = SSLClassifier(method="supervised", model="mlp", steps=4, eval_every=2, batch_size=8, val_per_class=2)
    with pytest.raises(OutOfMemory) as caught:
        clf.fit(x, y)
    text = str(caught.value)
    assert text.startswith("SSLClassifier.fit: out of memory ") and "\n" not in text
    assert ("lower eval_batch_size (now 256)" if where == "evaluation" else "lower batch_size, use a smaller model") in text
    assert "--resume" not in text and "start the run again" not in text and "checkpoint" not in text


def test_bench_speed_out_of_memory_names_the_row_and_the_batch_size(tmp_path, monkeypatch, capsys):
    from metassl.bench import speed
    real = speed.Bench.step

    def step(self, method, i):
        if i == 2:  # the third warm-up step
            _allocate_too_much()
        return real(self, method, i)

    monkeypatch.setattr(speed.Bench, "step", step)
    out = tmp_path / "speed"
    assert cli.main(["bench", "speed", "--methods", "supervised", "--batch-size", "4", "--rounds", "1",
                     "--model", "mlp", "--out", str(out)]) == 1
    assert _error_line(capsys) == ("metassl: error: bench speed: out of memory on cpu timing row supervised at "
                                   "--batch-size 4 (an allocation of 131072.00 GiB failed): lower --batch-size")
    assert not out.exists()
