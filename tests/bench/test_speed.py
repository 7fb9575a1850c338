import json

import torch

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


def test_the_newer_baselines_and_the_plug_in_variants_take_bench_steps():
    from metassl.bench.speed import Bench

    bench = Bench("mlp", 8, torch.device("cpu"))
    for name in ["uda", "flexmatch", "freematch", "softmatch", "fixmatch:meta_gradient=true",
                 "pseudo_label:meta_gradient=true"]:
        method = bench.method(name)
        assert bench.step(method, 0) > 0
        assert method.cfg.meta_gradient == name.endswith("meta_gradient=true")

