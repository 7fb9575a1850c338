import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from metassl import config
from metassl.engine import checkpoint as ckpt
from metassl.engine.trainer import Trainer
from metassl.errors import TrainingDiverged
from tests.conftest import FAST, REPO


def test_run_writes_its_files_and_eval_recomputes_the_selected_error(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *FAST, "steps=60", "eval_every=20", "tensorboard=true", check=True)
    for name in ("config.yaml", "split.json", "checkpoint.pt", "best.pt", "final.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    final = json.loads((out / "final.json").read_text())
    for key in ("test_error", "val_error", "steps", "wall_seconds", "images_per_second"):
        assert key in final
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [20, 40, 60]
    # the reported error belongs to the evaluation with the lowest validation error
    best = min(records, key=lambda r: r["val_error"])
    assert final["val_error"] == best["val_error"] and final["test_error"] == best["test_error"]
    evaluated = json.loads(cli("eval", str(out), check=True).stdout)
    assert evaluated["test_error"] == pytest.approx(final["test_error"], abs=1e-6)
    assert evaluated["val_error"] == pytest.approx(final["val_error"], abs=1e-6)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 60 and "rng" in state and "streams" in state


def test_select_last_reports_the_last_evaluation(tmp_path):
    cfg = config.load_config(None, FAST + ["steps=40", "eval_every=20", "select=last"])
    final = Trainer(cfg, tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert final["test_error"] == records[-1]["test_error"] and final["selected_step"] == 40


def test_existing_run_is_not_overwritten(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *FAST, "steps=5", "eval_every=5", check=True)
    before = (out / "final.json").read_bytes()
    proc = cli("train", "--out", str(out), *FAST, "steps=5")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (out / "final.json").read_bytes() == before
    assert cli("train", "--out", str(out), "--overwrite", *FAST, "steps=6", "eval_every=6").returncode == 0
    assert json.loads((out / "final.json").read_text())["steps"] == 6


def test_bad_checkpoint_and_data_errors_are_one_line(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *FAST, "steps=5", "eval_every=5", check=True)
    (out / "best.pt").write_bytes(b"not a checkpoint")
    proc = cli("eval", str(out))
    assert proc.returncode != 0 and "best.pt is not a readable checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("train", "--out", str(tmp_path / "r2"), *FAST, "labels_per_class=500")
    assert proc.returncode != 0 and "labels_per_class=500" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r2").exists()
    proc = cli("eval", str(tmp_path))
    assert proc.returncode != 0 and "no config.yaml" in proc.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = config.load_config(None, FAST + ["steps=400", "eval_every=10", "log_every=5"])
    trainer = Trainer(cfg, tmp_path)
    real_step = trainer.method.train_step

    def poisoned(labeled, unlabeled, step):
        losses = real_step(labeled, unlabeled, step)
        if step >= 13:  # the weights blow up between two checkpoints
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    trainer.method.train_step = poisoned
    with pytest.raises(TrainingDiverged, match="NaN or inf by step 15.*step 10"):
        trainer.fit()
    state = ckpt.load(tmp_path / "checkpoint.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def _weights(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)["model"]


def test_resume_after_a_real_interruption_matches_an_uninterrupted_run(cli, tmp_path):
    args = [*FAST, "method=mixup", "ema_decay=0.9", "steps=300", "eval_every=25", "log_every=5"]
    whole = tmp_path / "whole"
    cli("train", "--out", str(whole), *args, check=True)

    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-m", "metassl.cli", "train", "--out", str(part), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (part / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    stopped = torch.load(part / "checkpoint.pt", weights_only=True)["step"]
    assert 25 <= stopped < 300 and not (part / "final.json").exists()

    cli("train", "--resume", str(part), check=True)
    a, b = _weights(whole), _weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    fa = json.loads((whole / "final.json").read_text())
    fb = json.loads((part / "final.json").read_text())
    assert fa["test_error"] == fb["test_error"] and fa["selected_step"] == fb["selected_step"]


@pytest.mark.parametrize("setting, nhwc", [("null", False), ("true", True), ("false", False)])
def test_channels_last_lays_out_conv_weights_and_batches_as_asked(setting, nhwc):
    cfg = config.load_config(None, FAST + ["model=cnn3", "method=supervised", "steps=3", "eval_every=3",
                                           f"channels_last={setting}"])
    trainer = Trainer(cfg, run_dir=None)
    conv = trainer.s.model.features[4].weight  # 64 x 32 x 3 x 3: the layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) == nhwc
    assert conv.is_contiguous() == (not nhwc)
    x = trainer.s.augmenter(trainer.s.x[:4].repeat(1, 3, 1, 1))  # 3 channels: the layouts differ
    assert x.is_contiguous(memory_format=torch.channels_last) == nhwc
    assert trainer.fit()["test_error"] is not None
