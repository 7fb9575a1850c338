import json

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
