"""Which evaluation a run reports on a validation tie, the progress line's ETA and a run's last line."""
import io
import json

import pytest

from metassl import config
from metassl.engine import checkpoint as ckpt
from metassl.engine import logger as logger_mod
from metassl.engine.trainer import Trainer
from tests.conftest import FAST


def scripted_errors(monkeypatch, val: list[float], test: list[float]) -> None:
    """Trainer.evaluate returns these errors, one pair per evaluation, in order."""
    pairs = iter(zip(val, test))

    def evaluate(self):
        v, t = next(pairs)
        return {"val_error": v, "test_error": t, "train_error": 0.0}

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


def test_a_validation_tie_keeps_the_latest_checkpoint(tmp_path, monkeypatch):
    scripted_errors(monkeypatch, val=[20.0, 10.0, 10.0, 15.0], test=[40.0, 13.6, 6.0, 5.0])
    cfg = config.load_config(None, FAST + ["steps=8", "eval_every=2"])
    final = Trainer(cfg, tmp_path).fit()
    # step 6 ties step 4 on validation and wins; step 8 is worse on validation and does not
    assert final["selected_step"] == 6 and final["test_error"] == 6.0 and final["val_error"] == 10.0
    assert ckpt.load(tmp_path / "best.pt", ckpt.WEIGHTS_FORMAT)["step"] == 6
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["selected_step"] for r in records] == [2, 4, 6, 6]


@pytest.mark.parametrize("seconds, shown", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_duration(seconds, shown):
    assert logger_mod.duration(seconds) == shown


def test_the_progress_line_shows_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(logger_mod.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    monkeypatch.setattr(logger_mod.sys, "stderr", stream)
    log = logger_mod.RunLogger(None, 200, False, start_step=20)  # a run resumed at step 20
    log.tty = True
    clock[0] += 30.0  # 3 s a step
    log.train(30, {"loss": 1.0, "lr": 0.1, "images_per_second": 50.0})
    assert stream.getvalue().rstrip().endswith("50 img/s eta 8m30s")
    clock[0] += 170 * 3.0
    log.train(200, {"loss": 1.0, "lr": 0.1, "images_per_second": 50.0})
    assert stream.getvalue().rstrip().endswith("eta 0s")
    assert " val " not in stream.getvalue()
    # The validation error shown is the latest evaluation's, which precedes the step: it says which.
    log.evaluation({"step": 200, "val_error": 12.5})
    log.train(210, {"loss": 1.0, "lr": 0.1, "images_per_second": 50.0})
    assert "lr 0.1 val 12.50% (step 200) 50 img/s" in stream.getvalue().rsplit("\r", 1)[1]


def test_a_run_ends_with_a_readable_line_after_its_json(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, "steps=4", "eval_every=2", check=True)
    final = json.loads(proc.stdout)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("metassl: done in ")
    assert (f": test error {final['test_error']:.2f}% with the weights of step {final['selected_step']} of 4 "
            f"(lowest validation error, {final['val_error']:.2f}%); run directory {out}") in last
    # a finished run given to --resume says the same
    proc = cli("train", "--resume", str(out), check=True)
    assert proc.stderr.strip().splitlines()[-1].endswith(f"run directory {out}")
