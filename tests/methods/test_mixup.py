import pytest
import torch

from metassl import config
from metassl.methods.mixing import mix, sample_lam
from metassl.methods.mixup import Mixup


def test_mix_is_a_per_row_convex_combination():
    a, b = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    lam = torch.tensor([0.0, 0.25, 1.0])
    out = mix(a, b, lam)
    assert torch.allclose(out[:, 0, 0], lam)


def test_lambda_draws():
    torch.manual_seed(0)
    per_sample = sample_lam(1.0, 1000, "cpu", per_sample=True)
    per_batch = sample_lam(1.0, 1000, "cpu", per_sample=False)
    assert ((per_sample >= 0) & (per_sample <= 1)).all() and per_sample.std() > 0.2
    assert per_batch.unique().numel() == 1
    small = sample_lam(0.1, 2000, "cpu")
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.6  # Beta(0.1, 0.1) piles up at the ends


@pytest.mark.parametrize("mode, expect_unique", [("batch", 1), ("fixed", 1), ("sample", 8)])
def test_lam_modes(mode, expect_unique):
    cfg = config.load_config(None, ["method=mixup", f"mixup.lam_mode={mode}", "mixup.fixed_lam=0.3"])
    m = Mixup(None, None, cfg.method_cfg, type("Ctx", (), {"device": torch.device("cpu")})())
    lam = m.draw_lam(8)
    assert lam.unique().numel() == expect_unique
    if mode == "fixed":
        assert torch.allclose(lam, torch.full((8,), 0.3))
