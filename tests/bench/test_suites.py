import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from metassl import config
from metassl.bench import suites
from metassl.errors import ConfigError

SUITE = {
    "description": "tiny",
    "base": {"dataset": "digits", "model": "mlp", "labels_per_class": 5, "val_per_class": 5,
             "steps": 4, "eval_every": 2, "batch_size": 16, "tensorboard": False},
    "grid": {"method": ["supervised", "mixup"]},
    "seeds": [0, 1],
    "paper": [{"match": {"method": "mixup"}, "error": 6.74, "source": "Table I"}],
}


def write_suite(tmp_path, suite=SUITE):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_suite_runs_tabulates_and_skips_finished_runs(tmp_path):
    path = write_suite(tmp_path)
    out = tmp_path / "out"
    table = suites.run_suite(str(path), out)
    assert "differ beyond" not in table
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4
    assert {(r["overrides"]["method"], r["overrides"]["seed"]) for r in rows} == {
        ("supervised", 0), ("supervised", 1), ("mixup", 0), ("mixup", 1)}
    assert all(r["steps"] == 4 and r["test_error"] is not None for r in rows)
    sup = [r["test_error"] for r in rows if r["overrides"]["method"] == "supervised"]
    mean = sum(sup) / 2
    line = next(l for l in table.splitlines() if l.startswith("| supervised"))
    assert f"{mean:.2f} ± " in line and "| 2 |" in line
    assert "6.74 (Table I)" in next(l for l in table.splitlines() if l.startswith("| mixup"))
    assert (out / "table.md").read_text() == table
    stamp = {r["name"]: (out / r["name"] / "final.json").stat().st_mtime_ns for r in rows}
    suites.run_suite(str(path), out)
    assert stamp == {r["name"]: (out / r["name"] / "final.json").stat().st_mtime_ns for r in rows}


def test_the_table_names_the_runs_own_thread_count(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_suite(tmp_path)
    table = suites.run_suite(str(path), tmp_path / "out", overrides=["threads=1"], only=["method=supervised", "seed=0"])
    assert "CPU, 1 thread, " in table.splitlines()[2]
    assert "2 runs at once, 1 thread each" in suites.machine(2, None) and "3 threads each" in suites.machine(2, 3)


def test_rows_record_the_config_each_run_was_trained_with(tmp_path):
    path = write_suite(tmp_path)
    out = tmp_path / "out"
    suites.run_suite(str(path), out, overrides=["weight_decay=0.001"], only=["method=supervised"])
    suites.run_suite(str(path), out, overrides=["weight_decay=0.002"], only=["method=mixup"])
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4
    assert {r["overrides"]["method"]: r["config"]["weight_decay"] for r in rows} == {
        "supervised": 0.001, "mixup": 0.002}
    assert "differ beyond the grid in: weight_decay (0.001, 0.002)." in (out / "table.md").read_text()


def test_parallel_jobs_give_the_same_results_as_serial(tmp_path):
    suite = {**SUITE, "grid": {"method": ["supervised"]}}
    path = write_suite(tmp_path, suite)
    suites.run_suite(str(path), tmp_path / "serial")
    suites.run_suite(str(path), tmp_path / "parallel", jobs=2)
    a = json.loads((tmp_path / "serial" / "results.json").read_text())
    b = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert [r["test_error"] for r in a] == [r["test_error"] for r in b]


def test_dry_run_and_bad_suites(tmp_path):
    names = suites.run_suite(str(write_suite(tmp_path)), tmp_path / "o", dry_run=True).splitlines()
    assert names == ["method=supervised,seed=0", "method=supervised,seed=1", "method=mixup,seed=0",
                     "method=mixup,seed=1"]
    assert not (tmp_path / "o").exists()
    # a run the command would not train is marked so
    done, started = tmp_path / "o" / "method=supervised,seed=0", tmp_path / "o" / "method=mixup,seed=1"
    for d, f in ((done, "final.json"), (started, "checkpoint.pt")):
        d.mkdir(parents=True)
        (d / f).write_text("{}")
    names = suites.run_suite(str(write_suite(tmp_path)), tmp_path / "o", dry_run=True).splitlines()
    assert names == ["method=supervised,seed=0 (finished, not trained)", "method=supervised,seed=1",
                     "method=mixup,seed=0", "method=mixup,seed=1 (resumed)"]
    with pytest.raises(ConfigError, match=r"unknown key 'gird' \(did you mean 'grid'\?\)"):
        suites.run_suite(str(write_suite(tmp_path, {**SUITE, "gird": {}})), tmp_path / "o")
    bad = {**SUITE, "base": {**SUITE["base"], "stepz": 3}}
    with pytest.raises(ConfigError, match="bench: suite tiny: base.stepz: unknown key 'stepz'"):
        suites.run_suite(str(write_suite(tmp_path, bad)), tmp_path / "o")
    # a bad value from the command line is named as the run's, not as the file's base
    with_lr = {**SUITE, "base": {**SUITE["base"], "lr": 0.1}}
    with pytest.raises(ConfigError, match=r"run method=supervised,seed=0: config: lr=-1.0 is out of range"):
        suites.run_suite(str(write_suite(tmp_path, with_lr)), tmp_path / "o", overrides=["lr=-1"])
    # a base value that fails only with a run's grid values is named with the run
    ramp = {"base": {**SUITE["base"], "steps": 1000, "method": "pseudo_label", "pseudo_label": {"t1_steps": 500}},
            "grid": {"steps": [400, 5000]}}
    with pytest.raises(ConfigError, match=r"suite tiny, run steps=400,seed=0: config: pseudo_label.t2_fraction"):
        suites.run_suite(str(write_suite(tmp_path, ramp)), tmp_path / "o")
    # one data_root for a suite whose runs read files and built-in data alike
    mixed = {"base": SUITE["base"], "grid": {"dataset": ["digits", "npz"]}}
    assert suites.run_suite(str(write_suite(tmp_path, mixed)), None, dry_run=True,
                            overrides=["data_root=/somewhere/d.npz"]).split() == ["dataset=digits,seed=0",
                                                                                  "dataset=npz,seed=0"]
    with pytest.raises(ConfigError, match="no suite 'nope'"):
        suites.run_suite("nope", tmp_path / "o")


def test_shipped_suites_resolve():
    for name in suites.suite_names():
        assert suites.run_suite(name, None, dry_run=True).strip(), name


def test_only_trains_the_matching_runs_and_the_table_grows_with_each_part(tmp_path, capsys):
    path = write_suite(tmp_path, {**SUITE, "base": {**SUITE["base"], "select": "last"}})
    out = tmp_path / "out"
    assert suites.run_suite(str(path), out, dry_run=True, only=["method=mixup", "seed=1"]) == "method=mixup,seed=1"
    table = suites.run_suite(str(path), out, only=["method=supervised"])
    # the progress lines count the runs this command trains, not the suite's
    counters = [line.split()[0] for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert counters == ["[1/2]", "[2/2]"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["method=supervised,seed=0",
                                                                   "method=supervised,seed=1"]
    assert [r["overrides"]["method"] for r in json.loads((out / "results.json").read_text())] == ["supervised"] * 2
    assert "| supervised" in table and "| mixup" not in table and "the last checkpoint" in table
    suites.run_suite(str(path), out, only=["seed=0,1", "method=mixup,supervised"])
    assert len(json.loads((out / "results.json").read_text())) == 4
    with pytest.raises(ConfigError, match=r"--only methd: not a key of this suite's runs \(did you mean 'method'\?\)"):
        suites.run_suite(str(path), out, only=["methd=mixup"])
    with pytest.raises(ConfigError, match=r"--only method=mixpu: no run of the suite has it \(did you mean 'mixup'\?\)"):
        suites.run_suite(str(path), out, only=["method=mixpu"])
    for only in (["method=vat"], ["method=supervised,vat"]):  # a value no run has is not dropped silently
        with pytest.raises(ConfigError, match="--only method=vat: no run of the suite has it .*supervised, mixup"):
            suites.run_suite(str(path), out, only=only)
    with pytest.raises(ConfigError, match="--only names method twice"):
        suites.run_suite(str(path), out, only=["method=supervised", "method=mixup"])
    with pytest.raises(ConfigError, match="expected key=value"):
        suites.run_suite(str(path), out, only=["method"])



def test_included_results_join_the_table_and_are_not_trained_again(tmp_path):
    path = write_suite(tmp_path)
    suites.run_suite(str(path), tmp_path / "a", only=["method=supervised"])
    suites.run_suite(str(path), tmp_path / "b", only=["method=mixup"])
    a, b = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    earlier = {r["name"]: r for f in (a, b) for r in json.loads(f.read_text())}
    # Everything is in the two files: nothing is trained, and the rows come in the suite's order.
    table = suites.run_suite(str(path), tmp_path / "c", include=[b, a])
    assert not [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
    rows = json.loads((tmp_path / "c" / "results.json").read_text())
    assert [r["name"] for r in rows] == suites.run_suite(str(path), None, dry_run=True).splitlines()
    assert all(r == earlier[r["name"]] for r in rows)
    assert "| supervised" in table and "| mixup" in table
    assert "; every run trained before this command, which only tabulated them;" in table
    assert "trained before this command" not in (tmp_path / "a" / "table.md").read_text()
    # A run finished in --out wins over an included row of the same name.
    forged = [{**r, "test_error": 99.0} for r in json.loads(b.read_text())]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    suites.tabulate(str(path), tmp_path / "b", include=[tmp_path / "forged.json", a])
    merged = {r["name"]: r["test_error"] for r in json.loads(b.read_text())}
    assert len(merged) == 4 and 99.0 not in merged.values()
    # Trains only what neither --out nor the included files have.
    suites.run_suite(str(path), tmp_path / "d", include=[a])
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir()) == ["method=mixup,seed=0",
                                                                              "method=mixup,seed=1"]
    assert len(json.loads((tmp_path / "d" / "results.json").read_text())) == 4


def test_a_finished_run_with_other_settings_is_refused_and_overrides_are_named(tmp_path):
    path = write_suite(tmp_path)
    out = tmp_path / "out"
    suites.run_suite(str(path), out, overrides=["steps=2"], only=["method=supervised", "seed=0"])
    table = (out / "table.md").read_text()
    assert f"Command: `metassl bench {path} --out DIR steps=2`" in table  # the file as given: runnable again
    assert "tiny. Set on the command line" in table
    # the description states the suite's own budget; the table says the command replaced it
    assert "in place of the suite's own values where the text above gives them: steps=2." in table
    # how the runs were executed replaces nothing the description says
    assert suites._overridden(["threads=1", "steps=4"]).endswith("gives them: steps=4.")
    assert suites._overridden(["threads=1", "eval_batch_size=64"]) == ""
    before = (out / "results.json").read_bytes()
    # the same directory under other settings: not a table of the old runs under the new name
    with pytest.raises(ConfigError, match=r"method=supervised,seed=0 \(finished; use another --out.*"
                                          r"trained with steps=2, suite tiny has steps=3"):
        suites.run_suite(str(path), out, overrides=["steps=3"], only=["seed=0"])
    assert (out / "results.json").read_bytes() == before and not (out / "method=mixup,seed=0").exists()
    # how it ran may differ
    assert "| supervised" in suites.run_suite(str(path), out, overrides=["steps=2", "threads=1"],
                                              only=["method=supervised", "seed=0"])


def test_bench_counts_must_be_positive(capsys):
    from metassl.cli import main
    for opt, value in (("--rounds", "0"), ("--batch-size", "-4"), ("--jobs", "0"), ("--image-size", "x")):
        with pytest.raises(SystemExit) as exc:
            main(["bench", "speed", "--out", "unused", opt, value])
        assert exc.value.code == 2
        assert f"argument {opt}: {value}: must be a whole number >= 1" in capsys.readouterr().err


def test_bad_included_files_are_one_line_errors(tmp_path):
    path = write_suite(tmp_path)
    with pytest.raises(ConfigError, match=r"--include .*missing.json: No such file"):
        suites.tabulate(str(path), tmp_path / "o", include=[tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"--include .*bad.json: not JSON"):
        suites.tabulate(str(path), tmp_path / "o", include=[tmp_path / "bad.json"])
    (tmp_path / "dict.json").write_text('{"name": "x"}')
    with pytest.raises(ConfigError, match=r"dict.json: not a suite's results.json"):
        suites.tabulate(str(path), tmp_path / "o", include=[tmp_path / "dict.json"])
    (tmp_path / "other.json").write_text(json.dumps([{"name": "method=vat,seed=0", "overrides": {"method": "vat"},
                                                       "test_error": 1.0, "config": {}}]))
    with pytest.raises(ConfigError, match=r"other.json: none of its 1 runs is a run of suite tiny"):
        suites.run_suite(str(path), tmp_path / "o", include=[tmp_path / "other.json"])
    assert not (tmp_path / "o").exists()
    # a row whose figures are not numbers, or that records no config, before anything is written
    row = {"name": "method=supervised,seed=0", "overrides": {"method": "supervised"}, "test_error": 1.0, "config": {}}
    for bad, needle in (({"test_error": "abc"}, 'test_error="abc" is not a number'),
                        ({"wall_seconds": "x"}, 'wall_seconds="x" is not a number'),
                        ({"test_error": None}, "test_error=null is not a number"),
                        ({"config": None}, "records no config")):
        (tmp_path / "rows.json").write_text(json.dumps([{**row, **bad}]))
        with pytest.raises(ConfigError, match=re.escape(f"rows.json: run method=supervised,seed=0{'' if 'config' in bad else ':'}")
                           + ".*" + re.escape(needle)):
            suites.run_suite(str(path), tmp_path / "o", include=[tmp_path / "rows.json"])
    assert not (tmp_path / "o").exists()
    # A run of the same name from another experiment (another suite, other settings) is refused,
    # unless this invocation's overrides make the settings the same; how it ran may differ.
    suites.run_suite(str(path), tmp_path / "lr", overrides=["lr=0.1", "threads=1"], only=["method=supervised", "seed=0"])
    other = tmp_path / "lr" / "results.json"
    with pytest.raises(ConfigError, match=r"run method=supervised,seed=0 was trained with lr=0.1, suite tiny has lr=0.05"):
        suites.run_suite(str(path), tmp_path / "o", include=[other], only=["method=supervised"])
    assert not (tmp_path / "o").exists()
    assert "| supervised" in suites.tabulate(str(path), tmp_path / "o2", include=[other], overrides=["lr=0.1"])
    # On the command line an override written after --include's files is an override, not a file.
    from metassl.cli import main
    assert main(["bench", str(path), "--out", str(tmp_path / "o3"), "--include", str(other), "lr=0.1",
                 "--only", "method=supervised", "seed=0"]) == 0
    assert not (tmp_path / "o3" / "method=supervised,seed=0").exists()
    assert "| supervised" in (tmp_path / "o3" / "table.md").read_text()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_long_parallel_suite(tmp_path):
    """``metassl bench --jobs 2`` on two endless runs, returned once both have saved a checkpoint
    (a run evaluates before it checkpoints, so metrics.jsonl alone would leave a window)."""
    suite = {**SUITE, "base": {**SUITE["base"], "steps": 100000, "eval_every": 20}, "seeds": [0]}
    path, out = write_suite(tmp_path, suite), tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "metassl.cli", "bench", str(path), "--out", str(out),
                             "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [out / "method=supervised,seed=0", out / "method=mixup,seed=0"]
    deadline = time.time() + 120
    while not all((r / "checkpoint.pt").exists() for r in runs):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc, runs


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigterm_to_a_parallel_suite_checkpoints_every_run_and_leaves_no_worker(tmp_path):
    proc, runs = _start_long_parallel_suite(tmp_path)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err.splitlines()[-1] and "Traceback" not in err
    assert all((r / "checkpoint.pt").exists() and not (r / "final.json").exists() for r in runs)
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_killed_from_outside_ends_the_suite_with_one_line(tmp_path):
    proc, runs = _start_long_parallel_suite(tmp_path)
    workers = [w for w in _children(proc.pid) if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "worker process ended" in err.splitlines()[-1] and "Traceback" not in err
    assert all((r / "checkpoint.pt").exists() for r in runs)  # the resume point of each run


BASE = {"dataset": "digits", "model": "mlp", "steps": 2}


@pytest.mark.parametrize("extra, needle", [
    ({"grid": {"method": ["supervised", "mixup"], "lr": [0.1, 0.2]}, "group_by": ["method"]},
     "group_by ['method'] puts runs that differ in lr into one row"),
    ({"grid": {"method": ["supervised", "mixup"]}, "group_by": ["method", "lables_per_class"]},
     "group_by key 'lables_per_class' is set by neither base nor any run"),
    ({"runs": [{"method": "supervised"}, {"method": "mixup"}, {"method": "supervised"}]},
     "two runs of its grid and runs have the same settings (method=supervised)"),
    ({"grid": {"method": ["supervised", "supervised"]}, "group_by": ["method"]},
     "two runs of its grid and runs have the same settings (method=supervised)"),
    ({"grid": {"method": "supervised"}}, 'grid.method must be a list of values, got "supervised"'),
    ({"grid": {"method": ["supervised", "mixup"]}, "parents": {"match": 1}}, "parents must be a list"),
    ({"grid": {"method": ["supervised", "mixup"]}, "parents": [{"match": {"method": "mixup"},
                                                                "parent": {"method": "mixp"}}]},
     'parents[0].parent {"method": "mixp"} matches none of the suite\'s runs'),
    ({"grid": {"method": ["supervised"]}, "paper": [{"match": {"method": "supervised"}, "error": "abc",
                                                     "source": "x"}]},
     "paper must be a list of {match: {key: value}, error: NUMBER"),
    ({"grid": {"method": ["supervised", "mixup"]}, "group_by": "method"}, "group_by must be a list of keys"),
    ({"grid": {"method": ["supervised"]}, "seeds": [0, 0]}, "seeds must be a non-empty list of distinct integers"),
    ({"grid": {"method": ["supervised"]}, "seeds": 3}, "seeds must be a non-empty list"),
    ({"grid": {"method": ["supervised"]}, "seeds": []}, "seeds must be a non-empty list"),
    ({"grid": {"method": ["supervised"], "seed": [0, 1]}}, "seeds go in the suite's seeds list"),
    ({"runs": {"method": "mixup"}}, "runs must be a list of mappings"),
    ({"runs": ["mixup"]}, "runs must be a list of mappings"),
    ({"grid": ["supervised", "mixup"]}, "grid must be a mapping"),
    ({"grid": {"method": ["supervised"]}, "base": [1, 2]}, "base must be a mapping"),
    ({"grid": {"method": ["supervised"]}, "description": [1, 2]}, "description must be text"),
    ({"grid": {"method": ["supervised"]}, "paper": [{"match": {"method": "supervised"}, "error": 1.0}]},
     "paper must be a list of {match"),
    ({"grid": {}}, "defines no runs"),
    ({"grid": {"method": []}}, "its grid has an empty list of values"),
])
def test_a_malformed_suite_is_one_error_naming_the_file_and_key_before_training(tmp_path, extra, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, **extra}))
    with pytest.raises(ConfigError) as err:
        suites.run_suite(str(path), tmp_path / "out")
    assert str(err.value).startswith(f"bench: {path}: ") and needle in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_run_another_command_is_training_is_not_trained_twice(tmp_path):
    from metassl.engine import rundir
    from metassl.errors import MetasslError

    path = write_suite(tmp_path)
    out = tmp_path / "out"
    held = out / "method=supervised,seed=0"
    held.mkdir(parents=True)
    with rundir.lock_run(held):  # as a second `metassl bench` on the same --out meets the first
        with pytest.raises(MetasslError, match=r"method=supervised,seed=0 is in use by another metassl process \(pid"):
            suites.run_suite(str(path), out, only=["method=supervised", "seed=0"])
    assert not (held / "metrics.jsonl").exists()
    suites.run_suite(str(path), out, only=["method=supervised", "seed=0"])  # free again: it trains
    assert (held / "final.json").is_file()


def test_an_included_row_may_differ_in_layout_and_in_keys_its_setting_does_not_use(tmp_path):
    """channels_last is how the arithmetic was laid out; a MetaMixUp run with the exact gradient does
    not use the first-order difference's form: neither stops --include; a used key does."""
    suite = {"base": {"dataset": "digits", "model": "mlp", "steps": 2}, "grid": {"method": ["metamixup"]},
             "seeds": [0]}
    path = write_suite(tmp_path, suite)
    rows = [{"name": "method=metamixup,seed=0", "overrides": {"method": "metamixup", "seed": 0},
             "test_error": 5.0, "steps": 2, "wall_seconds": 1.0,
             "config": {**{k: v for k, v in suites.flatten(suites.config_mod.dump(cfg)).items()},
                        "channels_last": True, "metamixup.directional": "fd"}}
            for _, cfg in suites.resolve_runs("tiny", suite)]
    (tmp_path / "old.json").write_text(json.dumps(rows))
    suites.tabulate(str(path), tmp_path / "out", include=[tmp_path / "old.json"])
    assert json.loads((tmp_path / "out" / "results.json").read_text())[0]["test_error"] == 5.0
    rows[0]["config"]["metamixup.alpha"] = 1.0  # a key the setting uses: another experiment
    (tmp_path / "old.json").write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match="trained with metamixup.alpha=1.0, suite tiny has metamixup.alpha=5.0"):
        suites.tabulate(str(path), tmp_path / "out", include=[tmp_path / "old.json"])
    # with the first-order gradient the difference's form is used: a row that differs in it is refused
    first = {"base": {**suite["base"], "metamixup": {"grad": "first_order"}}, "grid": suite["grid"], "seeds": [0]}
    path = write_suite(tmp_path, first)
    rows[0]["config"].update({"metamixup.alpha": 5.0, "metamixup.grad": "first_order"})
    (tmp_path / "old.json").write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match="trained with metamixup.directional=\"fd\""):
        suites.tabulate(str(path), tmp_path / "out2", include=[tmp_path / "old.json"])


def test_an_override_of_a_key_the_suites_runs_set_is_an_error_not_silently_ignored(tmp_path):
    path = write_suite(tmp_path, {**SUITE, "grid": {"lr": [0.05]}, "runs": [
        {"method": "supervised"}, {"method": "mixup"}, {"method": "mixup", "mixup": {"alpha": 0.2}}]})
    for override, needle in (("seed=7", "takes its seeds from its seeds list (0, 1); pick some with --only seed="),
                             ("method=fixmatch", "runs set method themselves"),
                             ("mixup.alpha=0.3", "runs set mixup.alpha themselves (null, 0.2)")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            suites.run_suite(str(path), tmp_path / "o", dry_run=True, overrides=[override])
    # a key of base is the command line's to change
    assert suites.run_suite(str(path), None, dry_run=True, overrides=["steps=5"])


def test_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(ConfigError, match="--out .*afile is a file; give a folder"):
        suites.run_suite(str(write_suite(tmp_path)), tmp_path / "afile", only=["seed=0"])
    with pytest.raises(ConfigError, match=f"--out .*afile/sub: {tmp_path / 'afile'} is a file, not a folder"):
        suites.run_suite(str(write_suite(tmp_path)), tmp_path / "afile" / "sub", only=["seed=0"])
    assert (tmp_path / "afile").read_text() == "keep"
    # found before the timing, not after it
    from metassl.cli import main
    assert main(["bench", "speed", "--out", str(tmp_path / "afile"), "--model", "mlp", "--methods", "supervised",
                 "--rounds", "1"]) == 2
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.parametrize("files", [{"results.json": '{"my": "results"}\n'}, {"results.json": "not json"},
                                   {"table.md": "| my | table |\n"}])
def test_a_results_json_or_table_md_no_suite_wrote_is_refused_and_kept(tmp_path, files):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    with pytest.raises(ConfigError, match=f"--out {out} holds a (results.json that no suite wrote|table.md but no "
                                          "suite's results.json)"):
        suites.run_suite(str(write_suite(tmp_path)), out, only=["seed=0"])
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_only_picks_runs_by_the_setting_the_table_shows_and_repeated_only_flags_combine(tmp_path, capsys):
    from metassl.cli import main

    suite = {**SUITE, "grid": {"method": ["fixmatch"]}, "runs": [{}, {"fixmatch": {"meta_gradient": True}}],
             "paper": []}
    path = write_suite(tmp_path, suite)
    # the plain runs leave meta_gradient at its default: null in the suite, false as resolved and tabulated
    assert suites.run_suite(str(path), None, dry_run=True, only=["fixmatch.meta_gradient=false"]).split() == [
        "method=fixmatch,seed=0", "method=fixmatch,seed=1"]
    assert suites.run_suite(str(path), None, dry_run=True, only=["fixmatch.meta_gradient=null", "seed=1"]).split() == [
        "method=fixmatch,seed=1"]
    with pytest.raises(ConfigError, match=r"fixmatch.meta_gradient=0.5: no run of the suite has it \(its runs "
                                          r"have fixmatch.meta_gradient: false, null, true\)"):
        suites.run_suite(str(path), None, dry_run=True, only=["fixmatch.meta_gradient=0.5"])
    assert main(["bench", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--only", "seed=0",
                 "--only", "fixmatch.meta_gradient=true"]) == 0
    assert capsys.readouterr().out.split() == ["fixmatch.meta_gradient=True,method=fixmatch,seed=0"]


def test_only_with_a_methods_key_picks_that_methods_runs_and_a_base_key_matches_its_value(tmp_path):
    suite = {**{k: v for k, v in SUITE.items() if k != "grid"}, "paper": [],
             "runs": [{"method": "supervised"}, {"method": "fixmatch"},
                      {"method": "fixmatch", "fixmatch": {"meta_gradient": True}}, {"method": "pseudo_label"},
                      {"method": "pseudo_label", "pseudo_label": {"meta_gradient": True}}]}
    path = write_suite(tmp_path, suite)

    def picked(*only):
        return suites.run_suite(str(path), None, dry_run=True, only=[*only, "seed=0"]).split()

    # runs of other methods have no fixmatch.meta_gradient: neither =null nor =true picks them
    assert picked("fixmatch.meta_gradient=null") == ["method=fixmatch,seed=0"]
    assert picked("fixmatch.meta_gradient=false") == ["method=fixmatch,seed=0"]
    assert picked("fixmatch.meta_gradient=true") == ["fixmatch.meta_gradient=True,method=fixmatch,seed=0"]
    assert picked("pseudo_label.meta_gradient=true") == [
        "method=pseudo_label,pseudo_label.meta_gradient=True,seed=0"]
    # a setting of the suite's base, as the run resolves it, is a key --only matches
    assert len(picked("labels_per_class=5")) == 5
    assert picked("labels_per_class=5", "method=supervised") == ["method=supervised,seed=0"]
    with pytest.raises(ConfigError, match=r"--only labels_per_class=4: no run of the suite has it \(its runs "
                                          r"have labels_per_class: 5\)"):
        picked("labels_per_class=4")


def test_an_interrupted_run_with_other_settings_is_refused_before_anything_trains(tmp_path):
    path = write_suite(tmp_path)
    run = tmp_path / "o" / "method=mixup,seed=0"
    run.mkdir(parents=True)
    cfg = config.load_config(None, ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5",
                                    "steps=4", "eval_every=2", "batch_size=16", "tensorboard=false",
                                    "method=mixup", "seed=0", "lr=0.1"])
    (run / "config.yaml").write_text(yaml.safe_dump(config.dump(cfg), sort_keys=False))
    (run / "checkpoint.pt").write_bytes(b"x")
    for dry in (True, False):
        with pytest.raises(ConfigError, match=r"method=mixup,seed=0 \(interrupted; use another --out.*"
                                              r"trained with lr=0.1, suite tiny has lr=0.05"):
            suites.run_suite(str(path), tmp_path / "o", dry_run=dry, only=["method=mixup"])
    assert not (tmp_path / "o" / "method=mixup,seed=1").exists()


def _row(method, seed, test, steps=40):
    return {"name": f"method={method},seed={seed}", "overrides": {"method": method, "seed": seed},
            "config": {"method": method, "seed": seed, "steps": steps, "threads": seed + 1},
            "test_error": test, "last_test_error": test, "val_error": 5.0, "selected_step": steps,
            "wall_seconds": 60.0, "cpu_seconds": 60.0}


def test_runs_that_differ_beyond_the_grid_are_rows_of_their_own_and_pair_only_with_their_like():
    rows = [_row("supervised", 0, 20.0, steps=20), _row("supervised", 1, 14.0), _row("supervised", 2, 16.0),
            _row("mixup", 0, 18.0), _row("mixup", 1, 13.0), _row("mixup", 2, 15.0)]
    text = "\n".join(suites.table_body(SUITE, rows, ["method"]))
    lines = text.splitlines()
    # steps splits the rows (what was computed); threads is named but does not (how it ran)
    assert "| method | steps | test error % (mean ± std) |" in text
    assert "| supervised | 20 | 20.00 | 20.00 | 20 |" in text
    assert any(l.startswith("| supervised | 40 | 15.00 ± 1.41 | seed 1: 14.00, seed 2: 16.00 |") for l in lines)
    assert "differ beyond the grid in: steps (20, 40); threads (1, 2, 3)" in text
    # mixup at 40 steps pairs with supervised at 40 steps alone: seeds 1 and 2
    paired = next(l for l in lines if l.startswith("| mixup | 40 | supervised |"))
    assert "| 1, 2 | -1.00, -1.00 | -1.00 | 2/2 |" in paired


def test_the_machine_line_speaks_of_runs_at_once_only_where_this_command_trained_them(tmp_path):
    rows = [_row("supervised", 0, 20.0)]
    assert "2 runs at once" in suites.make_table("tiny", SUITE, rows, ["method"], jobs=2, at_once=2)
    only_tabulated = suites.make_table("tiny", SUITE, rows, ["method"], jobs=2, at_once=1)
    assert "--jobs 2" in only_tabulated and "runs at once" not in only_tabulated
    assert "CPU, 1 thread," in only_tabulated and "; tabulated " in only_tabulated
    assert "trained before this command" not in only_tabulated
    none_trained = suites.make_table("tiny", SUITE, rows, ["method"], jobs=2, at_once=0)
    assert ("CPU, 1 thread, " in none_trained and "runs at once" not in none_trained
            and "; every run trained before this command, which only tabulated them; tabulated " in none_trained)


def test_the_runs_column_counts_only_the_runs_its_mean_is_over():
    rows = [_row("supervised", 0, 20.0), _row("supervised", 1, None), _row("supervised", 2, 16.0)]
    line = next(l for l in suites.table_body(SUITE, rows, ["method"]) if l.startswith("| supervised |"))
    assert "| 18.00 ± 2.83 |" in line
    assert "| 2 (+1 without a test error) |" in line
    full = next(l for l in suites.table_body(SUITE, [_row("mixup", 0, 3.0)], ["method"]) if l.startswith("| mixup |"))
    assert "| 5.00 | 1 |" in full
