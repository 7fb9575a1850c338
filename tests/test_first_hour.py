"""What a user meets in the first hour: resuming with the command that started a run, several
config files, dotted keys in YAML, data that moved, --overwrite, and runs that never checkpointed."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from metassl import config
from metassl.engine import rundir
from metassl.errors import ConfigError, DataError
from tests.conftest import FAST, kill_after_checkpoint

RUN = FAST + ["steps=10", "eval_every=5", "threads=1"]


def _one_error(proc, *words):
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("metassl: training ")]
    assert len(lines) == 1 and lines[0].startswith("metassl: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_resume_accepts_the_runs_own_values_and_runtime_keys_and_refuses_other_changes(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *RUN, "steps=6", check=True)
    before = (out / "final.json").read_bytes()
    # the starting command, with --resume and a longer run: every key equals the run's own
    proc = cli("train", "--resume", str(out), *RUN, "eval_batch_size=64")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "final.json").read_text())["steps"] == 10
    changed = cli("train", "--resume", str(out), *RUN, "seed=3")
    assert changed.returncode == 2
    _one_error(changed, "seed cannot change when resuming", "seed=0")
    # a change the run's config cannot even take is named as the key that cannot change
    other = cli("train", "--resume", str(out), "method=mixup")
    _one_error(other, "method cannot change when resuming", "method='supervised'")
    # the override's own fault is reported as for a new run
    _one_error(cli("train", "--resume", str(out), "nosuch=1"), "unknown key 'nosuch'")
    _one_error(cli("train", "--resume", str(out), "lr=abc"), "lr='abc' is not a valid float")
    shorter = cli("train", "--resume", str(out), "steps=4")
    assert shorter.returncode == 2
    _one_error(shorter, "already trained 10 steps", "steps=4")
    assert json.loads((out / "final.json").read_text())["steps"] == 10 and before != (out / "final.json").read_bytes()


def test_a_resume_with_fewer_steps_than_the_checkpoint_is_refused(tmp_path):
    from metassl.engine.trainer import Trainer

    cfg = config.load_config(None, RUN + ["checkpoint_every=5"])
    trainer = Trainer(cfg, tmp_path)
    kill_after_checkpoint(trainer, 5)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    shorter = rundir.load_run_config(tmp_path, {"steps": 3})
    with pytest.raises(ConfigError, match="already trained 5 steps; steps=3"):
        Trainer(shorter, tmp_path, resume=True)


def test_a_relative_data_root_is_saved_absolute_and_a_moved_one_can_be_given(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, (30, 4)) for c in range(3)])
    y = np.repeat(np.arange(3), 30)
    work = tmp_path / "work"
    work.mkdir()
    np.savez(work / "blobs.npz", x=x.astype(np.float32), y=y)
    args = ["train", "--out", "runs/b", "dataset=npz", "data_root=../work/blobs.npz", "model=mlp", "labels_per_class=5",
            "val_per_class=5", "steps=6", "eval_every=3", "threads=1"]
    proc = cli(*args, cwd=work)
    assert proc.returncode == 0, proc.stderr
    run = work / "runs" / "b"
    saved = yaml.safe_load((run / "config.yaml").read_text())["data_root"]
    assert Path(saved).is_absolute() and ".." not in Path(saved).parts
    assert Path(saved).resolve() == (work / "blobs.npz").resolve()
    first = json.loads(cli("eval", str(run), check=True).stdout)  # from another directory
    (tmp_path / "moved").mkdir()
    os.replace(work / "blobs.npz", tmp_path / "moved" / "blobs.npz")
    gone = cli("eval", str(run))
    assert gone.returncode != 0
    _one_error(gone, "blobs.npz")
    moved = json.loads(cli("eval", str(run), "--data-root", str(tmp_path / "moved" / "blobs.npz"), check=True).stdout)
    assert moved["test_error"] == first["test_error"]
    _one_error(cli("train", "--out", "", "steps=2"), "train: --out '' names no folder")
    # an empty data_root is no path either: not the working directory, nor the dataset's own place
    _one_error(cli("train", "--out", str(tmp_path / "e"), "dataset=fashion_mnist", "data_root=", "steps=2"),
               'config: data_root="" names no file or folder')
    assert not (tmp_path / "e").exists()
    # a run on an embedded dataset has no data to point at
    digits = tmp_path / "digits"
    assert cli("train", "--out", str(digits), "dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "steps=3",
               "eval_every=3", "threads=1", "tensorboard=false").returncode == 0
    _one_error(cli("eval", str(digits), "--data-root", str(tmp_path / "moved")),
               f"eval: --data-root does not apply to {digits}: its dataset=digits is not read from files")


def test_several_config_files_merge_in_order_and_name_the_file_of_a_bad_value(tmp_path):
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("steps: 30\nmethod: mixup\nmixup: {alpha: 0.2}\nlr: 0.5\n")
    b.write_text("mixup.alpha: 0.4\nlr: 0.05\n")
    c.write_text("steps: abc\n")
    cfg = config.load_config([a, b], ["lr=0.01"])
    assert (cfg.steps, cfg.method, cfg.method_cfg.alpha, cfg.lr) == (30, "mixup", 0.4, 0.01)
    with pytest.raises(ConfigError, match=r"^config: .*c\.yaml: steps='abc' is not a valid int"):
        config.load_config([a, c], [])
    # the same bad value from the command line is the command line's
    with pytest.raises(ConfigError, match=r"^config: steps='abc'"):
        config.load_config([a], ["steps=abc"])
    b.write_text("method: mixup\nmixup.alpah: 0.4\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: unknown key 'mixup\.alpah'"):
        config.load_config([b], [])


@pytest.mark.parametrize("text, message", [
    ("fixmatch: 5\n", "fixmatch must be a mapping, got 5"),
    ("method: fixmach\n", "unknown method 'fixmach' (did you mean 'fixmatch'?)"),
    ("model: mlpp\n", "unknown model 'mlpp' (did you mean 'mlp'?)"),
    ("dataset: digitz\n", "dataset='digitz' is unknown (did you mean 'digits'?)"),
    ("method: mixup\nfixmatch: {threshold: 0.9}\n", "section 'fixmatch' does not apply to method=mixup"),
    ("method: meta_pl\namp: fp16\n", "amp='fp16' does not suit method=meta_pl"),
    ("schedule: {milestones: [1, 2]}\n", "schedule.milestones=[1, 2] applies only to schedule.name=step"),
])
def test_every_bad_value_of_a_file_is_named_with_its_file(tmp_path, text, message):
    (tmp_path / "ok.yaml").write_text("lr: 0.05\n")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load_config([tmp_path / "ok.yaml", tmp_path / "c.yaml"], [])
    assert str(info.value).startswith(f"config: {tmp_path / 'c.yaml'}: {message}"), str(info.value)


@pytest.mark.parametrize("text, message", [
    ("mixup.alpha: 0.4\nmixup:\n  alpha: 0.3\n", "key mixup.alpha is given twice"),
    ("mixup: 3\nmixup.alpha: 1\n", "mixup is set to a value"),
    ("schedule..name: cosine\n", "has an empty part"),
])
def test_dotted_yaml_keys_that_collide_are_one_line_errors(tmp_path, text, message):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load_config(f, [])


@pytest.mark.parametrize("text", ["method: mixup\nmixup.alpha: 0.3\nmixup: {}\n",
                                  "method: mixup\nmixup: {}\nmixup.alpha: 0.3\n"])
def test_an_empty_section_beside_dotted_keys_in_it_is_no_collision(tmp_path, text):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    assert config.load_config(f, []).method_cfg.alpha == 0.3


def test_the_cli_takes_config_more_than_once(cli, tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"dataset": "digits", "model": "mlp", "steps": 4, "eval_every": 4, "threads": 1}))
    b.write_text("method: mixup\nmixup.alpha: 0.4\n")
    out = tmp_path / "run"
    cli("train", "--config", str(a), "--config", str(b), "--out", str(out), check=True)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["steps"], saved["method"], saved["mixup"]["alpha"]) == (4, "mixup", 0.4)


def test_overwrite_removes_the_old_runs_report_and_keeps_other_files(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *RUN, check=True)
    for name in rundir.REPORT_FILES:
        (out / name).write_text("old")
    (out / "notes.txt").write_text("mine")
    cli("train", "--out", str(out), "--overwrite", *RUN, "steps=4", "eval_every=4", check=True)
    assert not any((out / name).exists() for name in rundir.REPORT_FILES)
    assert (out / "notes.txt").read_text() == "mine"
    # a directory holding no run (a suite's, with its report) keeps its report
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "report.md").write_text("the suite's")
    cli("train", "--out", str(suite), "--overwrite", *RUN, "steps=2", "eval_every=2", check=True)
    assert (suite / "report.md").read_text() == "the suite's"


def test_every_report_file_is_one_overwrite_removes():
    from metassl.report.build import FILES

    assert set(FILES.values()) | {"report.md", "report.html"} == set(rundir.REPORT_FILES)


def test_a_run_that_stopped_before_its_first_checkpoint_is_only_offered_overwrite(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(config.dump(config.load_config(None, RUN))))
    again = cli("train", "--out", str(out), *RUN)
    assert again.returncode == 2
    line = _one_error(again, "stopped before its first checkpoint", "--overwrite")
    assert "--resume" not in line
    resumed = cli("train", "--resume", str(out))
    assert resumed.returncode != 0
    _one_error(resumed, "holds no checkpoint.pt", "--overwrite")


def test_small_mistakes_get_a_message_that_names_the_cause(cli, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b,label\n1,2,0\n")
    proc = cli("train", "dataset=npz", f"data_root={table}", "--out", str(tmp_path / "r1"))
    _one_error(proc, "is not an .npz file", "zip archive")
    x = np.full((40, 1, 8, 8), 0.5, np.float32)
    x[3, 0, 2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(40) % 2)
    proc = cli("train", "dataset=npz", f"data_root={tmp_path / 'nan.npz'}", "--out", str(tmp_path / "r2"))
    _one_error(proc, "1 NaN or infinite values", "(3, 0, 2, 1)")
    proc = cli("train", "schedule.milestones=[2]", "--out", str(tmp_path / "r3"))
    assert proc.returncode == 2
    _one_error(proc, "schedule.milestones=[2] applies only to schedule.name=step")
    proc = cli("train", "schedule.name=step", "schedule.milestones=[5,2]", "--out", str(tmp_path / "r4"))
    _one_error(proc, "must be increasing")
    proc = cli("train", "schedule.name=step", "schedule.milestones_fraction=[0.5,1.5]", "--out", str(tmp_path / "r4"))
    _one_error(proc, "each must lie in [0, 1]")
    proc = cli("eval", str(tmp_path / "nowhere"))
    _one_error(proc, "nowhere does not exist")
    # `--out RUN --resume steps=N` took steps=N for the run's folder
    proc = cli("train", "--out", str(tmp_path / "r5"), "--resume", "steps=12")
    _one_error(proc, "train: --resume takes the run's folder, not 'steps=12': metassl train --resume RUN steps=12")
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 6))


def test_weights_that_do_not_fit_name_the_mismatch(cli, tmp_path):
    import torch

    out = tmp_path / "run"
    cli("train", "--out", str(out), *RUN, "steps=2", "eval_every=2", check=True)
    state = torch.load(out / "best.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = torch.zeros(3, 3)
    torch.save(state, out / "best.pt")
    proc = cli("eval", str(out))
    _one_error(proc, "do not fit model 'mlp'", f"size mismatch for {first}")


def test_predictions_are_written_with_plain_newlines(cli, tmp_path):
    out = tmp_path / "run"
    cli("train", "--out", str(out), *RUN, "steps=2", "eval_every=2", check=True)
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 1, 8, 8), np.uint8))
    cli("predict", str(out), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv"), check=True)
    raw = (tmp_path / "p.csv").read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 4


def test_a_table_without_labels_is_not_trained_on_its_last_feature(cli, tmp_path):
    table = tmp_path / "nolabel.csv"
    rng = np.random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.2f}" for v in rng.uniform(0, 5, 4)) for _ in range(40))
    table.write_text("sl,sw,pl,pw\n" + rows + "\n")
    proc = cli("train", "dataset=csv", f"data_root={table}", "--out", str(tmp_path / "r"))
    assert proc.returncode == 1 and not (tmp_path / "r").exists()
    _one_error(proc, "the header names no 'label' column (columns: sl, sw, pl, pw)")
    table.write_text(rows + "\n")  # without a header: the last column, whose fractions are no labels
    proc = cli("train", "dataset=csv", f"data_root={table}", "--out", str(tmp_path / "r"))
    assert proc.returncode == 1 and not (tmp_path / "r").exists()
    _one_error(proc, "no header naming a 'label' column", "column 4 (the last)", "fractional numbers")


def test_a_misspelt_option_shows_the_usage_of_its_command(cli):
    proc = cli("train", "--outt", "x")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: metassl train") and "unrecognized arguments: --outt" in proc.stderr


def test_a_column_named_label_holds_class_names_whatever_they_look_like(tmp_path):
    from metassl.data.csvfile import load_csv

    rng = np.random.default_rng(0)
    lines = [f"{rng.normal():.3f},{rng.normal():.3f},{['0.5', '1.5', 'inf'][i % 3]}" for i in range(60)]
    named = tmp_path / "named.csv"
    named.write_text("a,b,label\n" + "\n".join(lines) + "\n")
    data = load_csv(named)
    assert sorted(data.classes) == ["0.5", "1.5", "inf"]
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"column 3 \(the last\), which holds fractional numbers such as"):
        load_csv(unnamed)


def test_data_that_is_not_the_runs_is_refused_before_anything_is_written(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((90, 1, 8, 8)).astype(np.float32)
    y = np.repeat(np.arange(3), 30)
    test = {"x_test": x[:9], "y_test": y[::10]}  # a test split of its own: no hold-out note on stderr
    np.savez(tmp_path / "d.npz", x=x, y=y, **test)
    np.savez(tmp_path / "reversed.npz", x=x[::-1], y=y[::-1], **test)
    unlabeled = y.copy()
    unlabeled[::2] = -1
    np.savez(tmp_path / "unlabeled.npz", x=x, y=unlabeled, **test)
    out = tmp_path / "run"
    cli("train", "--out", str(out), "dataset=npz", f"data_root={tmp_path / 'd.npz'}", "model=mlp",
        "labels_per_class=5", "val_per_class=5", "steps=4", "eval_every=2", "threads=1", check=True)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    for other, words in (("reversed.npz", "have other labels in it"), ("unlabeled.npz", "have no label in it")):
        proc = cli("train", "--resume", str(out), "steps=8", f"data_root={tmp_path / other}")
        _one_error(proc, "does not match", words)
        _one_error(cli("eval", str(out), "--data-root", str(tmp_path / other)), "does not match")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before


def test_a_loaded_classifier_saved_back_where_it_came_from_changes_nothing(cli, tmp_path):
    from metassl import SSLClassifier

    out = tmp_path / "run"
    cli("train", "--out", str(out), *RUN, "steps=2", "eval_every=2", check=True)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    SSLClassifier.load(out).save(out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before


@pytest.mark.parametrize("key", ["image_size=16", "channels=3", "test_fraction=0.5", "imagenet_fraction=0.5",
                                 "svhn_extra=true", 'data_root="/tmp"'])
def test_a_data_key_that_the_dataset_does_not_read_is_refused(cli, tmp_path, key):
    proc = cli("train", "--out", str(tmp_path / "run"), *RUN, key)
    assert proc.returncode == 2
    _one_error(proc, f"{key} does not apply to dataset=digits; it applies to")
    assert not (tmp_path / "run").exists()
    from metassl.bench import suites

    if key.startswith("data_root"):  # a suite's runs share one data_root, read by those that read files
        assert suites.resolve_runs("digits", suites.load_suite("digits")[1], [key])
        return
    with pytest.raises(ConfigError, match=f"run method=supervised,seed=0: config: {key} does not apply"):
        suites.resolve_runs("digits", suites.load_suite("digits")[1], [key])


def test_a_run_trained_on_files_with_data_keys_loads_in_python(cli, tmp_path):
    from metassl import SSLClassifier

    rng = np.random.default_rng(1)
    x, y = rng.random((60, 1, 8, 8)).astype(np.float32), np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "run"
    cli("train", "--out", str(out), "dataset=npz", f"data_root={tmp_path / 'd.npz'}", "model=mlp",
        "test_fraction=0.5", "labels_per_class=5", "val_per_class=2", "steps=2", "eval_every=2", "threads=1",
        check=True)
    loaded = SSLClassifier.load(out)
    assert loaded.classes_.tolist() == [0, 1, 2] and loaded.predict(x[:4]).shape == (4,)


def test_a_run_fit_in_python_is_not_offered_an_overwrite_on_resume(cli, tmp_path):
    from metassl import SSLClassifier

    rng = np.random.default_rng(0)
    x, y = rng.random((40, 1, 8, 8)).astype(np.float32), np.repeat(np.arange(2), 20)
    run = SSLClassifier(method="supervised", model="mlp", steps=4, eval_every=2, val_per_class=2).fit(x, y) \
        .save(tmp_path / "api")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    line = _one_error(cli("train", "--resume", str(run), "steps=8"), "fit in Python", "fit it again in Python")
    assert "--overwrite" not in line
    # refused as well with no steps added (not "already finished")
    proc = cli("train", "--resume", str(run))
    assert proc.returncode != 0
    _one_error(proc, "fit in Python", "fit it again in Python")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before


@pytest.mark.parametrize("keys, needle", [
    (["pseudo_label.t1_fraction=0.7"], r"t2_fraction=0.6 \(step 600\) comes before pseudo_label.t1_fraction=0.7 "
                                       r"\(step 700\) in a run of 1000 steps"),
    (["pseudo_label.t1_steps=50", "pseudo_label.t2_steps=10"], r"t2_steps=10 \(step 10\) comes before"),
    (["pseudo_label.t1_steps=700"], r"t2_fraction=0.6 \(step 600\) comes before pseudo_label.t1_steps=700"),
])
def test_a_pseudo_label_ramp_that_ends_before_it_starts_is_refused(keys, needle, tmp_path):
    with pytest.raises(ConfigError, match=needle):
        config.load_config(None, ["method=pseudo_label", "steps=1000", *keys])
    # the ends given in different units, in order: accepted
    ok = config.load_config(None, ["method=pseudo_label", "steps=1000", "pseudo_label.t1_fraction=0.7",
                                   "pseudo_label.t2_steps=900"])
    assert ok.method_cfg.t2_steps == 900
    # a YAML file that sets t1 is named
    path = tmp_path / "c.yaml"
    path.write_text("method: pseudo_label\nsteps: 1000\npseudo_label: {t1_fraction: 0.7}\n")
    with pytest.raises(ConfigError, match=f"config: {path}: pseudo_label.t2_fraction=0.6"):
        config.load_config(path, [])
    # a saved run's config is read without the check
    assert config.resolve({"method": "pseudo_label", "pseudo_label": {"t1_fraction": 0.7}}).method_cfg.t1_fraction == 0.7


def test_weights_of_another_run_are_refused_and_old_weights_still_load(cli, tmp_path):
    import torch

    from metassl import SSLClassifier

    a, b = tmp_path / "a", tmp_path / "b"
    cli("train", "--out", str(a), *RUN, "steps=2", "eval_every=2", "lr=0.1", check=True)
    cli("train", "--out", str(b), *RUN, "steps=2", "eval_every=2", check=True)
    good = (b / "best.pt").read_bytes()
    (b / "best.pt").write_bytes((a / "best.pt").read_bytes())  # same shapes, another run's weights
    for proc in (cli("eval", str(b)), cli("predict", str(b), str(tmp_path), "--out", str(tmp_path / "p.csv"))):
        _one_error(proc, f"{b / 'best.pt'} belongs to another run", "lr=0.1", "lr=0.05")
    with pytest.raises(Exception, match="belongs to another run"):
        SSLClassifier.load(b)
    # weights written before they recorded their run load as before
    state = torch.load(a / "best.pt", weights_only=True)
    del state["config"]
    torch.save(state, b / "best.pt")
    assert cli("eval", str(b)).returncode == 0
    (b / "best.pt").write_bytes(good)
    copy = SSLClassifier.load(b).save(tmp_path / "copy")
    assert SSLClassifier.load(copy).predict(np.zeros((2, 1, 8, 8), np.float32)).shape == (2,)
    assert cli("eval", str(b)).returncode == 0
    # weights fit on another split of the same config
    state = torch.load(b / "best.pt", weights_only=True)
    torch.save({**state, "split": "0" * 64}, b / "best.pt")
    _one_error(cli("eval", str(b)), f"{b / 'best.pt'} belongs to another run", "another split")
    (b / "best.pt").write_bytes(good)
    # the last checkpoint's weights likewise
    assert cli("eval", str(b), "--weights", "last").returncode == 0
    (b / "checkpoint.pt").write_bytes((a / "checkpoint.pt").read_bytes())
    _one_error(cli("eval", str(b), "--weights", "last"), f"{b / 'checkpoint.pt'} belongs to another run")


def test_every_label_of_the_users_own_files_is_used_unless_labels_per_class_is_set(cli, tmp_path):
    """labels_per_class left unset keeps all of an imagefolder's, a CSV's or an npz's labels (the
    benchmarks' datasets keep 10 a class); a value given still applies."""
    for dataset in config.OWN_LABELS:
        assert config.load_config(None, [f"dataset={dataset}"]).labels_per_class is None
        assert config.load_config(None, [f"dataset={dataset}", "labels_per_class=4"]).labels_per_class == 4
    for dataset in ("digits", "fashion_mnist", "imagenet"):
        assert config.load_config(None, [f"dataset={dataset}"]).labels_per_class == 10
    rng = np.random.default_rng(0)
    x = rng.random((90, 1, 8, 8)).astype(np.float32)
    y = np.repeat(np.arange(3), 30)
    y[::5] = -1  # 24 labels a class, 18 images unlabeled
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:9], y_test=np.arange(9) % 3)
    base = ["dataset=npz", f"data_root={tmp_path / 'd.npz'}", "model=mlp", "val_per_class=4", "steps=2",
            "eval_every=2", "tensorboard=false"]
    cli("train", "--out", str(tmp_path / "all"), *base, check=True)
    split = json.loads((tmp_path / "all" / "split.json").read_text())
    assert len(split["labeled"]) == 3 * 20 and len(split["unlabeled"]) == 18
    assert yaml.safe_load((tmp_path / "all" / "config.yaml").read_text())["labels_per_class"] is None
    cli("train", "--out", str(tmp_path / "some"), *base, "labels_per_class=5", check=True)
    split = json.loads((tmp_path / "some" / "split.json").read_text())
    assert len(split["labeled"]) == 15 and len(split["unlabeled"]) == 18 + 3 * 15


@pytest.mark.parametrize("argv, error", [
    (["config", "fixmach"], "unknown method 'fixmach' (did you mean 'fixmatch'?); choose from fixmatch,"),
    (["config", "FixMatch"], "unknown method 'FixMatch' (did you mean 'fixmatch'?)"),
    (["config", "meta-pl"], "unknown method 'meta-pl' (did you mean 'meta_pl'?)"),
    (["train", "lables_per_class=5"], "unknown key 'lables_per_class' (did you mean 'labels_per_class'?)"),
    (["train", "fixmatch.treshold=0.9", "method=fixmatch"], "unknown key 'fixmatch.treshold' (did you mean "
                                                            "'fixmatch.threshold'?)"),
    (["train", "mixup.alfa=0.3", "method=mixup"], "unknown key 'mixup.alfa' (did you mean 'mixup.alpha'?)"),
    (["train", "dataset=fashion"], "dataset='fashion' is unknown (did you mean 'fashion_mnist'?)"),
    (["train", "model=cnn4"], "unknown model 'cnn4' (did you mean 'cnn3'?)"),
    (["bench", "digit", "--out", "x", "--dry-run"], "no suite 'digit' (did you mean 'digits'?)"),
])
def test_a_misspelt_name_is_answered_with_the_name_meant(argv, error, tmp_path, monkeypatch, capsys):
    from metassl.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and error in line, line
    assert not any(tmp_path.iterdir())


def test_a_name_close_to_nothing_gets_no_guess(capsys):
    from metassl.cli import main
    from metassl.errors import did_you_mean

    assert main(["config", "zzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err
    assert did_you_mean("fashion", ["fashion_mnist", "mnist"]) == " (did you mean 'fashion_mnist'?)"
    assert did_you_mean("svm", ["fixmatch", "mixup"]) == ""
