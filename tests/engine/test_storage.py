"""A machine's storage failing (a full disk, a folder without permission) and a run stopped at
any moment: one line naming the path, and nothing already on disk lost."""
from __future__ import annotations

import errno
import json
import os
import signal

import pytest

from metassl import cli
from metassl.engine import checkpoint, rundir
from metassl.errors import CheckpointError, ConfigError, StorageError, os_error_in
from metassl.files import atomic_write, atomic_write_text
from tests.conftest import FAST


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_full_disk(obj, fh):
    """What torch.save raises on a full disk: a RuntimeError whose context is the OSError."""
    try:
        full_disk()
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 73024 vs 72920")


def test_a_write_that_fails_for_lack_of_space_keeps_the_old_file_and_names_the_path(tmp_path):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "old\n")
    with pytest.raises(StorageError) as info:
        atomic_write(path, lambda fh: (fh.write(b"new"), full_disk()))
    assert str(info.value) == f"cannot write {path}: No space left on device"
    with pytest.raises(StorageError, match="No space left on device"):
        atomic_write(path, lambda fh: torch_full_disk(None, fh))
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "preds.csv"
    target.write_text("old\n")
    link = tmp_path / "preds.csv"
    link.symlink_to(target)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv", "shared"]


def test_a_storage_error_on_another_file_names_that_file_not_the_one_being_written(tmp_path):
    from metassl.files import storage_errors

    out = tmp_path / "out" / "model.pt"
    with pytest.raises(StorageError) as info:
        with storage_errors(out, "export"):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cache" / "lib.so"))
    assert str(info.value) == f"export: {tmp_path / 'cache' / 'lib.so'}: Permission denied"
    with pytest.raises(StorageError) as info:
        with storage_errors(out, "export"):
            raise OSError(errno.ENOSPC, "No space left on device", str(out.with_name(".model.pt.tmp1")))
    assert str(info.value) == f"export: cannot write {out}: No space left on device"
    board = tmp_path / "run" / "tensorboard"  # a file inside the folder being written is that folder's
    with pytest.raises(StorageError) as info:
        with storage_errors(board):
            raise OSError(errno.ENOSPC, "No space left on device", str(board / "events.out.tfevents.1.host"))
    assert str(info.value) == f"cannot write {board}: No space left on device"


def test_an_error_that_is_not_the_storage_s_keeps_its_type(tmp_path):
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "x", lambda fh: (_ for _ in ()).throw(ValueError("ours")))
    with pytest.raises(OSError, match="Bad file descriptor"):
        atomic_write(tmp_path / "x", lambda fh: (_ for _ in ()).throw(OSError(errno.EBADF, "Bad file descriptor")))
    assert list(tmp_path.iterdir()) == []


def test_train_onto_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *FAST, "steps=20", "eval_every=10", "threads=1"]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(checkpoint.torch, "save", torch_full_disk)
    code = cli.main(["train", "--resume", str(out), "steps=40"])
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert code == 1 and "Traceback" not in err
    assert last.startswith(f"metassl: error: cannot write {out}/") and last.endswith(".pt: No space left on device")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_any_command_s_storage_error_is_one_line_and_others_keep_their_traceback(monkeypatch, capsys, tmp_path):
    def report(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report.md"))

    monkeypatch.setattr(cli, "cmd_report", report)
    assert cli.main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"metassl: error: {tmp_path / 'report.md'}: No space left on device\n"

    def broken(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(cli, "cmd_report", broken)
    with pytest.raises(OSError):
        cli.main(["report", str(tmp_path)])


def test_a_final_json_cut_short_is_one_line_for_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *FAST, "steps=10", "eval_every=10", "threads=1"]) == 0
    (out / "final.json").write_text('{"test_err')
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / 'final.json'} is not a finished run's record" in err
    # eval evaluates the weights, which do not need the record
    assert cli.main(["eval", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["step"] == 10 and "final_json_test_error" not in evaluated
    # the advice holds: without it, resuming from the last checkpoint writes it again
    (out / "final.json").unlink()
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert json.loads((out / "final.json").read_text())["steps"] == 10


def test_sigterm_before_training_gives_the_folder_back(tmp_path, monkeypatch, capsys):
    from metassl.engine import trainer

    real_build = trainer.build

    def build(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the data is read
        return real_build(*args, **kwargs)

    monkeypatch.setattr(trainer, "build", build)
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *FAST, "steps=10", "threads=1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) is not signal.default_int_handler  # restored


def test_a_folder_another_process_is_filling_is_named_in_use_not_a_run_to_overwrite(tmp_path):
    path = tmp_path / "run"
    assert cli.main(["train", "--out", str(path), *FAST, "steps=2", "threads=1"]) == 0
    (path / "final.json").unlink()  # a run another command is resuming: its config.yaml is there
    held = rundir.lock_run(path)
    try:
        for overwrite in (False, True):
            with pytest.raises(CheckpointError, match=f"{path} is in use by another metassl process "
                                                      f"\\(pid {os.getpid()}\\); wait for it"):
                rundir.claim_new(path, overwrite=overwrite)
    finally:
        held.close()
    with pytest.raises(ConfigError, match="--overwrite"):  # once free, it is a run again
        rundir.claim_new(path, overwrite=False)
    rundir.claim_new(path, overwrite=True).release()


def test_a_full_disk_on_an_appended_record_names_the_file(tmp_path, monkeypatch, capsys):
    from metassl import files

    real_open = open

    def full_on_append(path, mode="r", *args, **kwargs):
        return real_open("/dev/full", "w") if "a" in mode else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", full_on_append, raising=False)
    with pytest.raises(StorageError) as info:
        files.append_line(tmp_path / "lambdas.jsonl", "{}")
    assert str(info.value) == f"cannot write {tmp_path / 'lambdas.jsonl'}: No space left on device"
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *FAST, "steps=4", "eval_every=2", "threads=1"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"metassl: error: cannot write {out / 'metrics.jsonl'}: No space left on device"
    assert "Traceback" not in err


def test_a_storage_error_is_an_os_error_and_a_handled_one_is_not_the_cause():
    assert isinstance(StorageError("cannot write x: No space left on device"), OSError)
    try:
        try:
            full_disk()
        except OSError:
            raise ValueError("not a file: a bad value") from None
    except ValueError as exc:
        assert os_error_in(exc) is None  # the OSError was handled, not what went wrong
    try:
        try:
            full_disk()
        except OSError as inner:
            raise RuntimeError("torch: unexpected pos") from inner
    except RuntimeError as exc:
        assert os_error_in(exc).errno == errno.ENOSPC
    try:
        try:
            full_disk()
        except OSError:
            raise RuntimeError("torch: unexpected pos")
    except RuntimeError as exc:
        assert os_error_in(exc).errno == errno.ENOSPC


def test_a_sigterm_handler_installed_outside_python_is_replaced_by_the_default(monkeypatch, tmp_path):
    calls = []
    real_signal = signal.signal

    def fake_signal(signum, handler):
        if handler is None:
            raise TypeError("signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object")
        previous = real_signal(signum, handler)
        calls.append(handler)
        # the first answer is what signal.signal gives for a handler that was set from C
        return None if len(calls) == 1 else previous

    monkeypatch.setattr(cli.signal, "signal", fake_signal)
    assert cli.main(["train", "--out", str(tmp_path / "run"), *FAST, "steps=2", "threads=1"]) == 0
    assert calls[0] is signal.default_int_handler and calls[-1] is signal.SIG_DFL


@pytest.mark.parametrize("how", ["save", "run_dir"])
def test_a_python_classifier_s_damaged_record_names_the_fix_that_applies_to_it(tmp_path, how):
    import numpy as np

    from metassl.api import SSLClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 2
    path = tmp_path / "saved"
    if how == "save":  # best.pt only
        SSLClassifier(method="supervised", model="mlp", steps=2, batch_size=8).fit(x, y).save(path)
    else:  # a run directory with checkpoint.pt, which the command line cannot resume
        SSLClassifier(method="supervised", model="mlp", steps=2, batch_size=8, run_dir=path).fit(x, y)
        assert (path / "checkpoint.pt").is_file()
    (path / "final.json").write_text('{"test_err')
    with pytest.raises(CheckpointError) as info:
        SSLClassifier.load(path)
    assert str(info.value).endswith("; delete it; the weights in best.pt load without it")
    (path / "final.json").unlink()
    SSLClassifier.load(path)


def test_a_failure_to_close_tensorboard_does_not_hide_why_training_stopped(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch.utils.tensorboard")
    from metassl.engine import logger

    def close_full(self):
        full_disk()

    monkeypatch.setattr(logger.RunLogger, "train", lambda self, step, values: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter.close", close_full)
    out = tmp_path / "run"
    code = cli.main(["train", "--out", str(out), *FAST, "tensorboard=true", "steps=20", "log_every=1", "threads=1"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    # with nothing else in flight, the failure is named
    log = logger.RunLogger(tmp_path / "other", 10, tensorboard=True)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / 'other' / 'tensorboard'}: No space"):
        log.close()
