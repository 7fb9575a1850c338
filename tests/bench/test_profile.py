import json

import pytest

from metassl.bench.profile import OTHER, family
from metassl.bench.speed import run_speed


@pytest.mark.parametrize("op, expected", [
    ("aten::convolution_backward", "convolution"),
    ("aten::mkldnn_convolution", "convolution"),
    ("aten::cudnn_convolution", "convolution"),
    ("aten::_to_copy", OTHER),
    ("aten::native_batch_norm_backward", "batch_norm"),
    ("aten::max_pool2d_with_indices_backward", "pooling"),
    ("aten::_adaptive_avg_pool2d", "pooling"),
    ("aten::mm", "matmul"),
    ("aten::addmm", "matmul"),
    ("aten::maximum", OTHER),
    ("aten::mul", OTHER),
])
def test_operators_fall_in_their_family(op, expected):
    assert family(op) == expected


def test_profile_splits_each_rows_step_by_operator_family(tmp_path):
    run_speed(tmp_path, model="cnn3", methods=["supervised", "mixup_ssl"], batch_size=8, rounds=1,
              warmup=1, device="cpu", profile_steps=2)
    profiles = json.loads((tmp_path / "profile.json").read_text())
    assert list(profiles) == ["supervised", "mixup_ssl"]
    for p in profiles.values():
        fams = p["families"]
        assert set(fams) == {"convolution", "batch_norm", "pooling", "matmul", OTHER}
        assert sum(f["ms_per_step"] for f in fams.values()) == pytest.approx(p["ms_per_step"], rel=1e-3, abs=1e-3)
        assert sum(f["percent"] for f in fams.values()) == pytest.approx(100, abs=0.5)
        # cnn3 is three convolutions, four BatchNorms and two linear layers: each family has time.
        assert all(fams[k]["ms_per_step"] > 0 for k in ("convolution", "batch_norm", "matmul"))
        assert p["top"] == sorted(p["top"], key=lambda o: -o["self_ms_per_step"])
        assert any(o["op"] == "aten::convolution_backward" for o in p["top"])
    # cnn3's three convolutions backward once a step in supervised training, twice in mixup_ssl
    # (its labeled and unlabeled mixup losses)
    for row, backwards in (("supervised", 3), ("mixup_ssl", 6)):
        ops = {o["op"]: o for o in profiles[row]["top"]}
        assert ops["aten::convolution_backward"]["calls_per_step"] == backwards
    text = (tmp_path / "profile.md").read_text()
    assert "| supervised |" in text and "| mixup_ssl |" in text and "`aten::convolution_backward`" in text


def test_no_profile_unless_asked(tmp_path):
    run_speed(tmp_path, model="mlp", methods=["supervised"], batch_size=8, rounds=1, warmup=1, device="cpu")
    assert not (tmp_path / "profile.json").exists()


def test_profile_steps_must_be_a_whole_number(cli, tmp_path):
    bad = cli("bench", "speed", "--out", str(tmp_path / "s"), "--profile", "-1", "--methods", "supervised")
    assert bad.returncode == 2 and "--profile" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "s").exists()
