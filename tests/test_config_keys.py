"""Config keys as a user writes them: YAML's on/off spellings, `metassl config METHOD`, and
method sections that the run does not use."""
import dataclasses

import pytest
import yaml

from metassl import config
from metassl.errors import ConfigError


@pytest.mark.parametrize("override, key, value", [
    ("augment.flip=on", "flip", "on"),
    ("augment.flip=off", "flip", "off"),
    ("augment.flip=auto", "flip", "auto"),
    ("amp=off", "amp", "off"),
])
def test_on_and_off_read_as_yaml_booleans_pick_the_member_so_spelled(override, key, value):
    cfg = config.load_config(None, [override])
    assert getattr(cfg.augment if key == "flip" else cfg, key) == value


def test_on_and_off_in_a_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("amp: off\naugment: {flip: on}\n")
    cfg = config.load_config(path, [])
    assert cfg.amp == "off" and cfg.augment.flip == "on"


@pytest.mark.parametrize("override, needle", [
    ("amp=on", "amp=True must be one of 'auto' | 'off' | 'bf16' | 'fp16' (the command line's amp=on, "
               "which YAML reads as True)"),
    ("channels=true", "channels=True is not a valid 1 | 3 or null"),
    ("select=yes", "select=True must be one of 'val' | 'last' (the command line's select=yes, which YAML "
                   "reads as True)"),
    ("method=mixup mixup.alpha=off", "mixup.alpha=False is not a valid float (the command line's "
                                     "mixup.alpha=off, which YAML reads as False)"),
    ("lr=-1", "lr=-1.0 is out of range: must be > 0.0"),
])
def test_a_boolean_with_no_member_of_its_spelling_is_still_refused(override, needle):
    """The message shows the value as typed where YAML turned a word into a boolean."""
    with pytest.raises(ConfigError) as err:
        config.load_config(None, override.split())
    assert str(err.value).endswith(needle)


# --------------------------------------------------------------------------- metassl config METHOD


@dataclasses.dataclass
class _Base:
    # Above the field,
    # over two lines.
    a: int = 1
    b: float = config.bounded(0.5, 0.0, 1.0)  # at the end of the line

    c: str = "x"


@dataclasses.dataclass
class _Child(_Base):
    b: float = config.bounded(0.25, 0.0, 1.0)
    c: str = "y"  # redefined, with its own comment
    d: list[int] = dataclasses.field(default_factory=list)


def test_a_fields_meaning_is_its_comment_and_an_uncommented_redefinition_inherits_it():
    from metassl.config_keys import dataclass_keys

    keys = {k.name: k for k in dataclass_keys(_Child, "s.")}
    assert keys["s.a"] == ("s.a", "int", "1", "Above the field, over two lines.")
    assert keys["s.b"] == ("s.b", "float in [0, 1]", "0.25", "at the end of the line")
    assert keys["s.c"].meaning == "redefined, with its own comment" and keys["s.c"].default == "y"
    assert keys["s.d"] == ("s.d", "list of int", "[]", "")


def test_cli_config_lists_the_methods_keys_with_type_default_and_meaning(cli):
    proc = cli("config", "fixmatch")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[3:]}
    threshold = rows["fixmatch.threshold"].split(None, 5)
    assert threshold[1:5] == ["float", "in", "[0,", "1]"] and threshold[5].startswith("0.95 ")
    assert "confidence" in threshold[5]
    assert rows["method"].split()[2] == "fixmatch"
    assert rows["seed"].split()[1:5] == ["int", "in", "[0,", "4294967295]"]  # a whole bound exactly
    for key in ("dataset", "steps", "lr", "schedule.name", "augment.flip", "amp", "fixmatch.lambda_u"):
        assert key in rows, key
    assert not any(k.startswith("mixup.") for k in rows)
    assert "method_cfg" not in rows

    proc = cli("config", "nope")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "unknown method 'nope'" in proc.stderr

    proc = cli("train", "--help")
    assert "metassl config METHOD" in proc.stdout


def test_every_key_of_every_method_has_a_meaning_and_its_default_is_accepted():
    from metassl.config_keys import method_keys
    from metassl.methods import METHODS

    for method in METHODS.names():
        keys = method_keys(method)
        assert [k.name for k in keys if not k.meaning] == [], method
        names = {k.name for k in keys}
        assert {"method", "steps", "schedule.name", "augment.flip"} <= names
        cfg = config.load_config(None, [f"{k.name}={k.default}" for k in keys])
        assert config.dump(cfg) == config.dump(config.load_config(None, [f"method={method}"])), method


# --------------------------------------------------------------------------- sections of other methods


def test_a_section_of_a_method_the_run_does_not_train_is_an_error_naming_it():
    with pytest.raises(ConfigError) as err:
        config.load_config(None, ["method=vat", "mixup.alpha=0.3"])
    message = str(err.value)
    assert message.startswith("config: section 'mixup' does not apply to method=vat") and "\n" not in message
    # the section of the trained method is still taken, and a bad key in another section is named first
    assert config.load_config(None, ["method=vat", "vat.eps=2"]).method_cfg.eps == 2.0
    with pytest.raises(ConfigError, match="unknown key 'mixup.alfa'"):
        config.load_config(None, ["method=vat", "mixup.alfa=0.3"])


def test_cli_train_with_another_methods_section_exits_2_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), "method=vat", "mixup.alpha=0.3", "steps=2")
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        "metassl: error: config: section 'mixup' does not apply to method=vat; drop it, or set method=mixup "
        "(metassl config vat lists this run's keys)"]


def test_a_suite_base_with_several_methods_sections_gives_each_run_its_own(tmp_path, monkeypatch):
    from metassl.bench import suites

    suite = {"base": {"dataset": "digits", "model": "mlp", "steps": 4, "mixup": {"alpha": 0.3},
                      "vat": {"eps": 2.0}},
             "grid": {"method": ["supervised", "mixup", "vat"]}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    built = []
    resolve = config.resolve
    monkeypatch.setattr(config, "resolve", lambda raw: built.append(resolve(raw)) or built[-1])
    assert suites.run_suite(str(path), None, dry_run=True, overrides=["mixup.lam_mode=sample"]).splitlines() == [
        "method=supervised,seed=0", "method=mixup,seed=0", "method=vat,seed=0"]
    by_method = {c.method: c.method_cfg for c in built}
    assert by_method["mixup"].alpha == 0.3 and by_method["mixup"].lam_mode == "sample"
    assert by_method["vat"].eps == 2.0

    path.write_text(yaml.safe_dump({**suite, "grid": {"method": ["supervised", "mixup"]}}))
    with pytest.raises(ConfigError, match="base section 'vat' is for method vat, which no run trains"):
        suites.run_suite(str(path), None, dry_run=True)
    # a section given on the command line is named as the override it is, not as the suite's
    path.write_text(yaml.safe_dump({**suite, "base": {"dataset": "digits"}, "grid": {"method": ["supervised"]}}))
    with pytest.raises(ConfigError, match=r"suite s: override vat.eps=\.\.\. is for method vat, which no run trains "
                                          r"\(they train supervised\)"):
        suites.run_suite(str(path), None, dry_run=True, overrides=["vat.eps=1"])


def test_shipped_suites_resolve_each_run_with_its_own_section():
    from metassl.bench import suites

    for name in suites.suite_names():
        assert suites.run_suite(name, None, dry_run=True).strip(), name


def test_the_readmes_table_of_method_keys_is_the_code_s():
    """README's table of each method's own keys and defaults is generated from the config dataclasses
    (`python -m metassl.config_keys`); a key added, renamed or given another default shows here."""
    from pathlib import Path

    from metassl.config_keys import README_BEGIN, README_END, method_sections_markdown
    from metassl.methods import METHODS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    assert readme[start:end] == method_sections_markdown()
    table = method_sections_markdown()
    assert all(f"| `{name}` |" in table for name in METHODS.names())
    assert "| `fixmatch` | `meta_gradient` false, `meta_lr` null, `threshold` 0.95, `lambda_u` 1.0 |" in table
    assert "`lam.grad` exact" in table.split("| `meta_pl_metamixup` |")[1].splitlines()[0]
