import re

import pytest
import yaml

from metassl import config
from metassl.errors import ConfigError
from tests.conftest import FAST


def test_defaults_and_overrides_nest():
    cfg = config.load_config(None, ["method=mixup", "mixup.alpha=0.4", "schedule.warmup_steps=10",
                                    "lr=1e-3", "labels_per_class=null"])
    assert cfg.method == "mixup"
    assert cfg.method_cfg.alpha == 0.4
    assert cfg.schedule.warmup_steps == 10
    assert cfg.lr == pytest.approx(1e-3)  # YAML reads 1e-3 as a string; the schema makes it a float
    assert cfg.labels_per_class is None


def test_yaml_file_merged_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"steps": 7, "method": "mixup", "mixup": {"lam_mode": "sample"}}))
    cfg = config.load_config(path, ["steps=9"])
    assert cfg.steps == 9 and cfg.method_cfg.lam_mode == "sample"


@pytest.mark.parametrize("override, needle", [
    (["stpes=3"], "'stpes'"),
    (["steps=abc"], "steps='abc'"),
    (["steps=0"], "steps=0 is out of range"),
    (["lr=-1"], "lr=-1"),
    (["device=tpu"], "device='tpu'"),
    (["schedule.nme=cosine"], "'schedule.nme'"),
    (["method=mixup", "mixup.alfa=1"], "'mixup.alfa'"),
    (["mixup.alpha=0"], "mixup.alpha=0.0 is out of range"),
    (["method=nope"], "unknown method 'nope'"),
    (["model=nope"], "unknown model 'nope'"),
    (["steps"], "not of the form key=value"),
    (["schedule.name=step", "schedule.milestones=[2,3"], "schedule.milestones='[2,3' is not a valid list"),
    (["seed=4294967296"], "seed=4294967296 is out of range: must be <= 4294967295"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        config.load_config(None, override)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_fp16_is_refused_for_exactly_the_methods_that_take_look_ahead_gradients():
    from metassl.methods import METHODS
    meta = {"meta_pl", "meta_pl_exact", "meta_pl_mixup", "meta_pl_metamixup", "metamixup", "metamixup_ssl",
            "metamixup_pl", "mixmatch_metamixup"}
    assert meta < set(METHODS.names())
    for name in METHODS.names():
        if name in meta:
            with pytest.raises(ConfigError, match=f"amp='fp16' does not suit method={name}: .* use amp=bf16"):
                config.load_config(None, [f"method={name}", "amp=fp16"])
        else:
            assert config.load_config(None, [f"method={name}", "amp=fp16"]).amp == "fp16"
        assert config.load_config(None, [f"method={name}", "amp=bf16"]).amp == "bf16"


def test_dump_round_trips():
    cfg = config.load_config(None, ["method=mixup", "mixup.alpha=0.3", "schedule.name=step", "schedule.milestones=[10,20]"])
    again = config.resolve(config.dump(cfg))
    assert config.dump(again) == config.dump(cfg)


def test_cli_config_error_exit_2_writes_nothing(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, "steps=3", "batch_sise=4")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch_sise" in lines[0]
    assert not out.exists()


def test_cli_bad_yaml_file(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [1,\n")
    proc = cli("train", "--config", str(path), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_config_file_not_in_utf8(cli, tmp_path):
    path = tmp_path / "notepad.yaml"
    path.write_bytes("steps: 5\n".encode("utf-16"))
    proc = cli("train", "--config", str(path), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"metassl: error: config: {path} is not a UTF-8 text file"
    assert not (tmp_path / "r").exists()
    path.write_bytes("\ufeffsteps: 5\n".encode("utf-8"))  # a BOM, as spreadsheets and editors write
    assert config.load_yaml(path) == {"steps": 5}


def test_a_key_given_twice_in_a_file_is_an_error(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("method: mixup\nsteps: 10\nmixup:\n  alpha: 0.3\nsteps: 20\n")
    with pytest.raises(ConfigError, match=r"twice.yaml line 5: key 'steps' is given twice \(first on line 2\)"):
        config.load_yaml(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("mixup:\n  alpha: 0.3\n  alpha: 0.4\n")
    with pytest.raises(ConfigError, match="line 3: key 'alpha' is given twice"):
        config.load_yaml(nested)
    # on one line, in a flow mapping, as suite files write their runs
    flow = tmp_path / "flow.yaml"
    flow.write_text("base: {steps: 20}\nruns:\n  - {method: fixmatch, fixmatch: {meta_gradient: true}, fixmatch: {threshold: 0.9}}\n")
    with pytest.raises(ConfigError, match="flow.yaml line 3: key 'fixmatch' is given twice \\(first on line 3\\)"):
        config.load_yaml(flow)
    # a merge key's values may be overridden, as YAML allows
    merged = tmp_path / "merged.yaml"
    merged.write_text("a: &base {steps: 20, lr: 0.1}\nb: {<<: *base, steps: 30}\n")
    assert config.load_yaml(merged)["b"] == {"steps": 30, "lr": 0.1}
    # the same key in two different sections is not a repeat
    fine = tmp_path / "fine.yaml"
    fine.write_text("mixup:\n  alpha: 0.3\nmixup_ssl:\n  alpha: 0.4\n")
    assert config.load_yaml(fine) == {"mixup": {"alpha": 0.3}, "mixup_ssl": {"alpha": 0.4}}


def test_on_the_command_line_the_last_of_a_repeated_key_wins():
    """A command may be extended by a key it already gives (scripts/gpu-suite.sh's settings, a
    shell alias): the last value is the one trained with."""
    assert config.load_config(None, ["lr=0.05", "steps=7", "lr=0.1"]).lr == 0.1
    assert config.load_config(None, ["mixup.alpha=1", "method=mixup", "mixup.alpha=0.3"]).method_cfg.alpha == 0.3


def test_output_into_a_closed_pipe_ends_quietly():
    """``metassl list | head -1``: the reader is gone before the output is written."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "metassl.cli", "list"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def _float_keys(cls, prefix=""):
    """Dotted keys of ``cls`` (recursively) whose values are floats, and how to write NaN in each."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from _float_keys(tp, f"{key}.")
        elif typing.get_origin(tp) is list:
            if typing.get_args(tp) == (float,):
                yield key, "[{}]"
        elif tp is float or float in typing.get_args(tp):
            yield key, "{}"


def test_every_float_key_refuses_nan_and_inf():
    from metassl.methods import METHODS

    keys = [([], key, form) for key, form in _float_keys(config.TrainConfig)]
    for name in METHODS.names():
        keys += [([f"method={name}"], key, form) for key, form in _float_keys(METHODS.get(name).Config, f"{name}.")]
    assert any(key == "lr" for _, key, _ in keys) and len(keys) > 20
    for extra, key, form in keys:
        for value in (".nan", "nan", ".inf", "-.inf", "inf"):
            with pytest.raises(ConfigError, match=rf"config: {re.escape(key)}(\[0\])?=.* is not a finite number"):
                config.load_config(None, extra + [f"{key}={form.format(value)}"])


@pytest.mark.parametrize("value, shown", [("nan", "lr='nan'"), (".inf", "lr=inf")])
def test_cli_non_finite_lr_exit_2_writes_nothing(cli, tmp_path, value, shown):
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, "steps=3", f"lr={value}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{shown} is not a finite number" in lines[0]
    assert not out.exists()


def test_numbers_with_leading_zeros_are_decimal_on_the_command_line_and_in_files(tmp_path):
    """YAML 1.1 reads 020 as octal 16 and 1:30 as 90 (base 60): a run would quietly train with
    another value than the one typed. Digits are decimal; octal and hex need 0o and 0x."""
    cfg = config.load_config(None, ["steps=020", "seed=0600", "batch_size=08", "eval_every=0x10"])
    assert (cfg.steps, cfg.seed, cfg.batch_size, cfg.eval_every) == (20, 600, 8, 16)
    assert config.load_config(None, ["steps=0o20"]).steps == 16
    path = tmp_path / "zeros.yaml"
    path.write_text("steps: 010\nschedule:\n  name: step\n  milestones: [010, 020]\n")
    cfg = config.load_config(str(path), [])
    assert cfg.steps == 10 and cfg.schedule.milestones == [10, 20]
    with pytest.raises(ConfigError, match="steps='1:30'"):
        config.load_config(None, ["steps=1:30"])
    assert config.load_config(None, ["steps=1_000"]).steps == 1000  # Python's digit separator


def test_text_that_reads_as_a_number_is_written_quoted():
    """A config written by a run reads back the same under YAML 1.2's integers and YAML 1.1's."""
    data = {"data_root": "08", "a": "0o17", "b": "0x1F", "c": "1_000", "d": "on", "e": 8, "f": "photos"}
    text = config.yaml_text(data)
    assert config.yaml_value(text) == data and yaml.safe_load(text) == data
    assert config.yaml_text({"steps": 20}, sort_keys=False) == "steps: 20\n"
