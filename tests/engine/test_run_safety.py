"""What a run directory is guaranteed against: divergence, foreign checkpoints, two processes at once,
kills at awkward moments, and a replacement run that fails to start."""
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from metassl import config
from metassl.engine import rundir
from metassl.engine.trainer import Trainer
from metassl.errors import CheckpointError, DataError
from tests.conftest import FAST, REPO, kill_after_checkpoint


def _files(path):
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name != rundir.LOCK_FILE}


def _one_line(proc):
    """The one error line (a run that started has said so on the line before)."""
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("metassl: training ")]
    assert len(lines) == 1 and lines[0].startswith("metassl: error: "), proc.stderr
    return lines[0]


def _all_finite(tree):
    if isinstance(tree, torch.Tensor):
        return not tree.is_floating_point() or bool(torch.isfinite(tree).all())
    if isinstance(tree, dict):
        return all(_all_finite(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_all_finite(v) for v in tree)
    return True


def _rows(path, name="metrics.jsonl"):
    return [json.loads(line) for line in (path / name).read_text().splitlines()]


def _train(out, *overrides):
    """A finished run in ``out``, trained in this process (the command line is what is tested)."""
    Trainer(config.load_config(None, FAST + list(overrides)), out).fit()


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]


def test_overwrite_keeps_the_old_run_until_the_new_one_has_read_its_data(cli, tmp_path):
    out = tmp_path / "run"
    _train(out, "steps=5", "eval_every=5")
    before = _files(out)
    data = tmp_path / "mnist"
    data.mkdir()
    for name, dims in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                           "t10k-labels-idx1-ubyte"), [(20, 28, 28), (20,), (10, 28, 28), (10,)]):
        header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
        (data / name).write_bytes(header + bytes(10))  # every file truncated
    proc = cli("train", "--out", str(out), "--overwrite", "dataset=mnist", f"data_root={data}", "model=mlp",
               "steps=5")
    assert proc.returncode == 1 and "is truncated" in _one_line(proc)
    assert _files(out) == before
    # data that reads but no model can take (4x4 images) is refused as late, and as harmlessly
    small = tmp_path / "small.npz"
    np.savez(small, x=np.zeros((40, 4, 4), np.uint8), y=np.arange(40) % 2, x_test=np.zeros((2, 4, 4), np.uint8),
             y_test=np.array([0, 1]))
    proc = cli("train", "--out", str(out), "--overwrite", *FAST, "dataset=npz", f"data_root={small}", "steps=5")
    assert proc.returncode == 1 and "small.npz holds 4 x 4 images; the models take images of at least 8 x 8" \
        in _one_line(proc)
    assert _files(out) == before


@pytest.mark.parametrize("lr", ["1e6", "100"])
def test_real_divergence_never_saves_a_non_finite_checkpoint(cli, tmp_path, lr):
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, f"lr={lr}", "schedule.name=constant", "checkpoint_every=1",
               "eval_every=5", "log_every=1000", "steps=200")
    line = _one_line(proc)
    assert proc.returncode == 3 and "became NaN or inf by step" in line and "last good checkpoint" in line
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert f"(step {state['step']}) is kept" in line
    assert any("running_var" in k for k in state["model"])
    assert state["optimizer"]["state"] and _all_finite(state["optimizer"]["state"])
    assert _all_finite(state["model"]) and _all_finite(state["ema"]) and _all_finite(state["method"])
    if (out / "best.pt").exists():
        assert _all_finite(torch.load(out / "best.pt", weights_only=True)["model"])


def test_resume_refuses_another_runs_checkpoint_and_changes_nothing(cli, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    _train(mine, "steps=5", "eval_every=5")
    _train(other, "method=mixup", "steps=5", "eval_every=5")
    own = (mine / "checkpoint.pt").read_bytes()
    shutil.copy(other / "checkpoint.pt", mine / "checkpoint.pt")
    before = _files(mine)
    proc = cli("train", "--resume", str(mine), "steps=10")
    line = _one_line(proc)
    assert proc.returncode == 1 and "belongs to another run" in line
    assert "method='mixup'" in line and "method='supervised'" in line
    assert _files(mine) == before  # config.yaml and data_info.json included

    # its own checkpoint, but split.json no longer the split it was trained on: a labeled example
    # swapped for an unlabeled one of its class (the same labels at the split's indices) ...
    from metassl.data.sources import load_dataset

    y = load_dataset("digits", None).y_train.tolist()
    (mine / "checkpoint.pt").write_bytes(own)
    original = (mine / "split.json").read_text()
    # ... or for one of another class: other labels at the split's indices
    for same_class, refusal in ((True, "another split"), (False, "does not match")):
        split = json.loads(original)
        first = split["labeled"][0]
        k = next(i for i, j in enumerate(split["unlabeled"]) if (y[j] == y[first]) == same_class)
        split["labeled"][0], split["unlabeled"][k] = split["unlabeled"][k], first
        (mine / "split.json").write_text(json.dumps(split))
        before = _files(mine)
        proc = cli("train", "--resume", str(mine), "steps=10")
        assert proc.returncode == 1 and refusal in _one_line(proc)
        assert _files(mine) == before

    # --out and --overwrite mean nothing to a resume: refused rather than ignored (a usage error)
    for extra in (["--out", str(tmp_path / "elsewhere")], ["--overwrite"]):
        proc = cli("train", "--resume", str(mine), *extra, "steps=10")
        assert proc.returncode == 2 and f"drop {extra[0]}" in _one_line(proc)
        assert _files(mine) == before and not (tmp_path / "elsewhere").exists()


def _wait_for_lock(path, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (path / rundir.LOCK_FILE).exists():
            with open(path / rundir.LOCK_FILE) as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
        time.sleep(0.05)
    raise AssertionError("the run never took its lock")


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "metassl.cli", "train", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_resumes_at_once_the_second_is_refused_and_a_kill_releases_the_lock(cli, tmp_path):
    out = tmp_path / "run"
    _train(out, "steps=5", "eval_every=5")
    first = _start("--resume", str(out), "steps=1000000")
    try:
        _wait_for_lock(out, first)
        proc = cli("train", "--resume", str(out), timeout=120)
        assert proc.returncode == 1
        assert f"{out} is in use by another metassl process (pid {first.pid})" in _one_line(proc)
        deadline = time.time() + 120
        while len(_rows(out)) < 2 and time.time() < deadline:  # training, with its signal handlers, is on
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130, err
    finally:
        first.kill()
    steps = [r["step"] for r in _rows(out)]
    assert steps == sorted(set(steps))

    # kill -9 leaves no lock behind
    again = _start("--resume", str(out))
    try:
        _wait_for_lock(out, again)
        again.send_signal(signal.SIGKILL)
        again.wait(timeout=120)
    finally:
        again.kill()
    rundir.lock_run(out).close()


def test_a_look_at_a_run_s_lock_does_not_refuse_a_run_taking_it(tmp_path):
    import threading

    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK_FILE).touch()
    probe = open(out / rundir.LOCK_FILE)  # as lock_holder holds it, for an instant
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.05, probe.close).start()
    held = rundir.lock_run(out)  # waits out the probe
    try:
        assert (out / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        # a holder that stays is still refused, once the wait is over
        start = time.monotonic()
        with pytest.raises(CheckpointError, match="is in use by another metassl process"):
            rundir.lock_run(out)
        assert time.monotonic() - start >= rundir.PROBE_WAIT
    finally:
        held.close()


def test_a_new_run_is_refused_while_another_process_holds_the_directory(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = rundir.lock_run(out)
    try:
        proc = cli("train", "--out", str(out), *FAST, "steps=5")
        assert proc.returncode == 1 and "is in use by another metassl process" in _one_line(proc)
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK_FILE]
    finally:
        lock.close()
    claim = rundir.claim_new(out, overwrite=False)  # released, and nothing of a run left
    assert not claim.created and not claim.new_lock
    claim.release()


def test_a_run_that_fails_to_start_in_an_existing_directory_leaves_it_as_it_was(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    proc = cli("train", "--out", str(out), "--overwrite", "dataset=npz", f"data_root={tmp_path / 'none.npz'}",
               "model=mlp", "steps=5")
    assert proc.returncode != 0 and "none.npz" in _one_line(proc)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no lock file left either


def test_files_named_as_a_runs_without_its_config_are_the_users_and_no_overwrite_replaces_them(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "best.pt").write_bytes(b"my own weights")
    proc = cli("train", "--out", str(out), "--overwrite", *FAST, "steps=5")
    assert proc.returncode == 2
    assert _one_line(proc).endswith(f"{out} holds best.pt but no run's config.yaml, so not a metassl run; a run "
                                    "writes its own best.pt there, so give another folder")
    assert (out / "best.pt").read_bytes() == b"my own weights"


def test_replacing_a_run_removes_the_tensorboard_files_it_wrote_and_keeps_the_users(tmp_path):
    out = tmp_path / "run"
    _train(out, "steps=5", "eval_every=5")
    board = out / "tensorboard"
    board.mkdir(exist_ok=True)
    (board / "events.out.tfevents.1.host").write_bytes(b"event")
    rundir.clear_run(out)
    assert not board.exists() and not (out / "config.yaml").exists()
    board.mkdir()
    (board / "events.out.tfevents.2.host").write_bytes(b"event")
    (board / "my-notes.txt").write_text("keep")
    rundir.clear_run(out)
    assert sorted(p.name for p in board.iterdir()) == ["my-notes.txt"]


def test_stale_temporary_files_of_a_killed_run_are_removed(cli, tmp_path):
    out = tmp_path / "run"
    _train(out, "steps=5", "eval_every=5")
    stale = [out / ".checkpoint.pt.tmp4242", out / ".best.pt.tmp17", out / ".data_info.json.tmp99"]
    for path in stale:
        path.write_bytes(b"")
    keep = out / ".notes.tmp1"
    keep.write_text("mine")
    cli("train", "--resume", str(out), "steps=10", check=True)
    assert not any(p.exists() for p in stale) and keep.exists()


def test_a_kill_between_an_evaluation_and_its_checkpoint_leaves_no_duplicate_row(tmp_path):
    cfg = config.load_config(None, FAST + ["steps=30", "eval_every=10"])
    Trainer(cfg, tmp_path / "whole").fit()

    part = tmp_path / "part"
    trainer = Trainer(cfg, part)
    real_save = trainer.save

    def killed_at_20():
        if trainer.step == 20:
            raise KeyboardInterrupt
        real_save()

    trainer.save = killed_at_20
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert [r["step"] for r in _rows(part)] == [10, 20]
    Trainer(cfg, part, resume=True).fit()
    assert [r["step"] for r in _rows(part)] == [10, 20, 30]
    assert _without_times(_rows(part)) == _without_times(_rows(tmp_path / "whole"))


def test_train_averages_after_resuming_from_a_non_evaluation_step_cover_the_whole_interval(tmp_path):
    cfg = config.load_config(None, FAST + ["steps=30", "eval_every=20", "checkpoint_every=5"])
    Trainer(cfg, tmp_path / "whole").fit()

    part = tmp_path / "part"
    trainer = Trainer(cfg, part)
    kill_after_checkpoint(trainer, 25)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    Trainer(cfg, part, resume=True).fit()
    whole, resumed = _rows(tmp_path / "whole"), _rows(part)
    assert [r["step"] for r in resumed] == [20, 30]
    assert resumed[1]["train_loss"] == whole[1]["train_loss"]


def test_a_resume_that_stops_early_gives_its_lock_back(tmp_path):
    from metassl import cli
    from metassl.errors import MetasslError

    out = tmp_path / "run"
    out.mkdir()
    cfg = config.dump(config.load_config(None, ["dataset=digits", "steps=5"]))
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = cli.parser().parse_args(["train", "--resume", str(out)])
    with pytest.raises(MetasslError, match="holds no checkpoint.pt") as failed:
        cli.cmd_train(args)
    # The failed call's frame is still alive in the traceback; its lock must not be.
    assert failed.traceback
    rundir.lock_run(out).close()


def test_a_run_given_its_lengths_as_step_counts_resumes(tmp_path):
    """A saved config writes each length's fraction (at its default) beside the step count the run
    was given; reading it back must not take that for two lengths."""
    cfg = config.load_config(None, FAST + ["method=mixup_ssl", "steps=20", "eval_every=10", "checkpoint_every=5",
                                           "schedule.warmup_steps=3", "mixup_ssl.rampup_steps=4",
                                           "ema_decay=0.9", "ema_horizon_steps=6"])
    Trainer(cfg, tmp_path / "whole").fit()
    part = tmp_path / "part"
    trainer = Trainer(cfg, part)
    kill_after_checkpoint(trainer, 15)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    again = config.load_config(part / "config.yaml", [])  # the run's own config, read back
    assert config.dump(again) == config.dump(cfg)
    Trainer(again, part, resume=True).fit()
    assert _without_times(_rows(part)) == _without_times(_rows(tmp_path / "whole"))


def _image_folder(root, classes=("cat", "dog"), per_class=10):
    """labeled/<class>/ of tiny PNGs (no test/: a share of each class is held out) and unlabeled/."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / "labeled" / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(60 + 130 * c + rng.normal(0, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "labeled" / name / f"{i}.png")
    (root / "unlabeled").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "unlabeled" / f"u{i}.png")
    return root


def _train_on_folder(data, out):
    cfg = config.load_config(None, ["dataset=imagefolder", f"data_root={data}", "image_size=8", "model=mlp",
                                    "labels_per_class=3", "val_per_class=2", "batch_size=8", "tensorboard=false",
                                    "steps=4", "eval_every=4", "threads=1"])
    Trainer(cfg, out).fit()


def _error_line(proc):
    """The one error line, beside the notes a start prints (the test set held out, training begun)."""
    lines = [line for line in proc.stderr.strip().splitlines()
             if not line.startswith("metassl: training ") and "has no test set; held out" not in line]
    assert len(lines) == 1 and lines[0].startswith("metassl: error: "), proc.stderr
    return lines[0]


def test_eval_and_resume_refuse_images_added_to_the_runs_folder_since_it_was_trained(cli, tmp_path):
    data, out = _image_folder(tmp_path / "D"), tmp_path / "run"
    _train_on_folder(data, out)
    before = _files(out)
    added = [data / "labeled" / "dog" / f"new{i}.png" for i in range(6)]
    for path in added:
        shutil.copy(data / "labeled" / "dog" / "0.png", path)
    for command in (["eval", str(out)], ["train", "--resume", str(out), "steps=8"]):
        proc = cli(*command)
        line = _error_line(proc)
        assert proc.returncode == 1 and "the data changed since the run was trained" in line
        assert "it now holds 27 training examples, the run was trained on 22" in line
        assert "its test set now holds 5 examples, the run's held 4" in line
    assert _files(out) == before
    for path in added:
        path.unlink()
    cli("eval", str(out), check=True)
    split = json.loads((out / "split.json").read_text())
    assert (split["n_train"], split["n_test"]) == (22, 4)  # 2 x 10 labeled less 4 held out, 6 unlabeled
    # a split.json written before it recorded the data as a whole is read as before
    for key in ("n_train", "train_labels_digest", "n_test"):
        split.pop(key)
    (out / "split.json").write_text(json.dumps(split))
    cli("eval", str(out), check=True)


def test_a_split_refuses_data_of_the_same_size_with_other_labels_or_another_test_set(tmp_path):
    from metassl.data.splits import data_identity, labels_digest, load_split, make_split, save_split

    y = torch.tensor([0, 1] * 10 + [-1] * 4)
    split = make_split(y, ["a", "b"], 3, 2, seed=0)
    path = tmp_path / "split.json"
    save_split(split, path, labels_digest=labels_digest(split, y), **data_identity(y, 6))
    assert torch.equal(load_split(path, len(y), y, 6).labeled, split.labeled)
    labeled = y.clone()
    labeled[-1] = 0  # an unlabeled example now labeled; the split's own examples are unchanged
    with pytest.raises(DataError, match="its 24 training examples have other labels, or are in another order"):
        load_split(path, len(y), labeled, 6)
    with pytest.raises(DataError, match="its test set now holds 7 examples, the run's held 6"):
        load_split(path, len(y), y, 7)


def test_classes_added_or_renamed_since_the_run_are_named_before_its_weights_are_loaded(cli, tmp_path):
    data, out = _image_folder(tmp_path / "D"), tmp_path / "run"
    _train_on_folder(data, out)
    before = _files(out)
    shutil.copytree(data / "labeled" / "dog", data / "labeled" / "zebra")
    for command in (["eval", str(out)], ["train", "--resume", str(out), "steps=8"]):
        proc = cli(*command)
        assert proc.returncode == 1 and _error_line(proc) == (
            f"metassl: error: data: {data} has the classes cat, dog, zebra; run {out} was trained on cat, dog "
            "(zebra is new)")
    assert _files(out) == before
    shutil.rmtree(data / "labeled" / "zebra")
    (data / "labeled" / "dog").rename(data / "labeled" / "wolf")
    proc = cli("eval", str(out))
    assert _error_line(proc).endswith("was trained on cat, dog (wolf is new; dog is missing)")


def test_a_run_stopped_before_its_first_evaluation_says_how_to_continue_it(cli, tmp_path):
    from metassl.api.export import export_run
    from metassl.api.predict import predict_to_csv

    out = tmp_path / "run"
    trainer = Trainer(config.load_config(None, FAST + ["steps=20", "eval_every=20", "checkpoint_every=5"]), out)
    kill_after_checkpoint(trainer, 5)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert (out / "checkpoint.pt").is_file() and not (out / "best.pt").exists()
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, 8, 8), np.uint8))
    reads = (lambda: rundir.evaluate_run(out), lambda: export_run(out, "torchscript", tmp_path / "m.pt"),
             lambda: predict_to_csv(out, [tmp_path / "x.npz"], tmp_path / "p.csv"))
    for read in reads:
        with pytest.raises(CheckpointError) as info:
            read()
        assert str(info.value) == (f"checkpoint: {out / 'best.pt'} does not exist: the run stopped before its "
                                   f"first evaluation; 'metassl train --resume {out}' continues it")
    assert rundir.evaluate_run(out, "last")["step"] == 5
    # while a process holds the run, it is training, not stopped
    with rundir.lock_run(out):
        proc = cli("eval", str(out))
        assert proc.returncode == 1 and _one_line(proc).endswith(
            f"the run in {out} is still training (pid {os.getpid()}) and has not saved those weights yet; "
            "they are there after its first evaluation")
    (out / "checkpoint.pt").unlink()
    for weights in ("selected", "last"):
        proc = cli("eval", str(out), "--weights", weights)
        assert proc.returncode == 1 and f"the run in {out} has no saved weights" in _one_line(proc)
    (out / "config.yaml").unlink()
    with rundir.lock_run(out):
        proc = cli("eval", str(out))
        assert proc.returncode == 1 and _one_line(proc).endswith(
            f"run: {out} is a run still starting (pid {os.getpid()}): it writes its config.yaml once its data "
            "is read and its model built")


def test_an_interrupt_as_an_overwrite_starts_leaves_a_run_to_resume(tmp_path, monkeypatch):
    from metassl import cli

    out = tmp_path / "run"
    _train(out, "steps=5", "eval_every=5")
    real_clear = rundir.clear_run

    def clear_then_interrupt(path):
        real_clear(path)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the old run's files are removed

    monkeypatch.setattr(rundir, "clear_run", clear_then_interrupt)
    assert cli.main(["train", "--out", str(out), "--overwrite", *FAST, "steps=10", "eval_every=5"]) == 130
    monkeypatch.undo()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 0
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert json.loads((out / "final.json").read_text())["steps"] == 10
