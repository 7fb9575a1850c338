import json

import pytest
import torch

from metassl.engine import machine
from metassl.bench.speed import run_speed


def test_speed_rows_for_each_method(tmp_path):
    rows = run_speed(tmp_path, model="mlp", methods=["supervised", "mixup"], batch_size=16, rounds=3,
                     device="cpu")
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved == rows
    by = {r["method"]: r for r in rows}
    assert set(by) == {"supervised", "mixup"}
    assert by["supervised"]["ratio_to_supervised"] == 1.0
    assert all(r["ms_per_step"] > 0 for r in rows)
    assert all(r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0 for r in rows)
    assert "| mixup |" in (tmp_path / "speed.md").read_text()


def test_speed_times_the_layout_asked_for(tmp_path, monkeypatch):
    from metassl.bench import speed

    seen = []
    real = speed.Bench.step

    def step(self, method, i):
        w = method.model.features[4].weight  # cnn3's second conv, 64 x 32 x 3 x 3
        seen.append(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())
        return real(self, method, i)

    monkeypatch.setattr(speed.Bench, "step", step)
    for layout in (True, False):
        seen.clear()
        run_speed(tmp_path / str(layout), model="cnn3", methods=["supervised"], batch_size=4, rounds=1,
                  warmup=1, device="cpu", channels_last=layout)
        assert seen and all(s == layout for s in seen)
        meta = json.loads((tmp_path / str(layout) / "speed_meta.json").read_text())
        assert meta["layout"].startswith("channels_last" if layout else "contiguous")
        # the figures name the processor they were measured on
        assert meta["machine"] == machine.fingerprint(torch.device("cpu"))
        assert f"device cpu ({meta['machine']['cpu']} ({meta['machine']['isa']}))" in (
            tmp_path / str(layout) / "speed.md").read_text()


def test_the_newer_baselines_and_the_plug_in_variants_take_bench_steps():
    from metassl.bench.speed import Bench

    bench = Bench("mlp", 8, torch.device("cpu"))
    for name in ["uda", "flexmatch", "freematch", "softmatch", "fixmatch:meta_gradient=true",
                 "pseudo_label:meta_gradient=true"]:
        method = bench.method(name)
        assert bench.step(method, 0) > 0
        assert method.cfg.meta_gradient == name.endswith("meta_gradient=true")



def test_variants_set_the_top_level_keys_of_a_step():
    from metassl.bench.speed import variant
    from metassl.errors import ConfigError
    from metassl.methods import METHODS

    v = variant("supervised:compile=on")
    assert v.run.compile == "on" and v.cfg == METHODS.get("supervised").Config()
    v = variant("meta_pl_mixup:amp=bf16,gamma=0.5")
    assert (v.run.amp, v.cfg.gamma, v.run.lr) == ("bf16", 0.5, 0.01)
    assert variant("supervised:lr=0.1,steps=20000").run.steps == 20000
    # A key of the method's own section is the method's, even where a top-level key shares its name.
    v = variant("mean_teacher:ema_decay=0.9")
    assert v.cfg.ema_decay == 0.9 and v.run.ema_decay == 0.0
    for spec, key in [("supervised:dataset=mnist", "dataset"), ("supervised:amp=fp8", "amp"),
                      ("meta_pl:amp=fp16", "fp16"), ("supervised:compile=maybe", "compile")]:
        with pytest.raises(ConfigError, match=key):
            variant(spec)


def test_a_variants_unknown_key_names_the_keys_it_may_set():
    from metassl.bench.speed import variant
    from metassl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown key 'mixup.alpah' \(did you mean 'mixup.alpha'\?\); known keys: alpha, "):
        variant("mixup:alpah=1")
    with pytest.raises(ConfigError, match="unknown key 'supervised.bogus'; supervised has no keys of its own"):
        variant("supervised:bogus=1")


def test_speed_dry_run_lists_the_rows_and_times_nothing(cli, tmp_path):
    out = tmp_path / "speed"
    proc = cli("bench", "speed", "--out", str(out), "--dry-run", "--methods", "supervised",
               "meta_pl_mixup:amp=bf16", "meta_pl_mixup_reference")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["supervised", "meta_pl_mixup:amp=bf16", "meta_pl_mixup_reference"]
    assert not out.exists()
    bad = cli("bench", "speed", "--out", str(out), "--dry-run", "--methods", "mixup:alpah=1")
    assert bad.returncode == 2 and "alpah" in bad.stderr and "Traceback" not in bad.stderr
    # the model is checked as a timing run checks it: a misspelt name, or images too small for it
    for extra, said in ((["--model", "cnn4"], "unknown model 'cnn4' (did you mean 'cnn3'?)"),
                        (["--model", "wrn28_2", "--image-size", "4"], "image_size must be an integer >= 8")):
        bad = cli("bench", "speed", "--out", str(out), "--dry-run", "--methods", "supervised", *extra)
        assert bad.returncode == 2 and said in bad.stderr and "Traceback" not in bad.stderr
    # a suite's key=value or --only would be silently ignored by the timings: refused
    for extra in (["threads=1"], ["--only", "method=mixup"]):
        bad = cli("bench", "speed", "--out", str(out), "--methods", "supervised", "--rounds", "2", *extra)
        assert bad.returncode == 2 and "does not apply" in bad.stderr and not out.exists()


def test_one_run_interleaves_a_top_level_setting_against_its_absence(tmp_path, monkeypatch):
    from metassl.bench import speed

    monkeypatch.setattr(speed, "_peak_mb_subprocess", lambda *args: None)
    seen = set()
    real = speed.Bench.step

    def step(self, method, i):
        inner = method.train_step

        def observed(*args):
            seen.add((type(method).__name__, torch.is_autocast_enabled("cpu"),
                      method.optimizer.param_groups[0]["lr"]))
            return inner(*args)

        method.train_step = observed
        try:
            return real(self, method, i)
        finally:
            method.train_step = inner

    monkeypatch.setattr(speed.Bench, "step", step)
    names = ["supervised", "supervised:lr=0.1", "meta_pl_mixup", "meta_pl_mixup:amp=bf16", "meta_pl_mixup_reference"]
    rows = run_speed(tmp_path, model="mlp", methods=names, batch_size=8, rounds=1, warmup=1, device="cpu")
    assert seen == {("Supervised", False, 0.01), ("Supervised", False, 0.1), ("MetaPLMixup", False, 0.01),
                    ("MetaPLMixup", True, 0.01), ("MetaPLMixupReference", False, 0.01)}
    by = {r["method"]: r for r in rows}
    assert [r["method"] for r in rows] == names
    assert [by[n]["amp"] for n in names] == ["off", "off", "off", "bfloat16", "off"]
    assert by["meta_pl_mixup:amp=bf16"]["ratio_to_plain"] > 0 and by["supervised:lr=0.1"]["ratio_to_plain"] > 0
    assert by["meta_pl_mixup"]["ratio_to_plain"] is None and by["meta_pl_mixup_reference"]["ratio_to_plain"] is None
    assert not any(r["compiled"] for r in rows)
    assert by["supervised"]["images_per_second"] == pytest.approx(8 / by["supervised"]["ms_per_step"] * 1000, rel=1e-2)
    assert "| meta_pl_mixup_reference |" in (tmp_path / "speed.md").read_text()


@pytest.mark.cuda
def test_cuda_rows_run_bf16_and_nhwc_by_default(tmp_path):
    rows = run_speed(tmp_path, model="cnn3", methods=["supervised", "supervised:amp=off", "meta_pl_mixup",
                                                      "meta_pl_mixup_reference"],
                     batch_size=16, rounds=2, warmup=1, device="cuda", shape=(3, 32, 32))
    assert [r["amp"] for r in rows] == ["bfloat16", "off", "bfloat16", "bfloat16"]
    assert all(r["peak_mem_mb"] > 0 for r in rows)
    assert json.loads((tmp_path / "speed_meta.json").read_text())["layout"].startswith("channels_last")
