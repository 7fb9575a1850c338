import pytest

from metassl.config import ScheduleConfig
from metassl.engine.schedule import lr_at


def test_warmup_then_cosine_to_zero():
    cfg = ScheduleConfig(name="cosine", warmup_steps=10)
    assert lr_at(0, 1.0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 110, cfg) == pytest.approx(0.5)
    assert lr_at(110, 1.0, 110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_truncated_cosine_is_fixmatchs_decay_ending_at_a_fifth_of_the_lr():
    cfg = ScheduleConfig(name="truncated_cosine", warmup_steps=10)
    assert lr_at(9, 1.0, 110, cfg) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 110, cfg) == pytest.approx(1.0)
    # lr cos(7 pi k / 16 K), k counted from the warm-up's end: halfway 0.773, at the end 0.195
    assert lr_at(60, 1.0, 110, cfg) == pytest.approx(0.773010453362737)
    assert lr_at(110, 1.0, 110, cfg) == pytest.approx(0.19509032201612833)
    lrs = [lr_at(s, 1.0, 110, cfg) for s in range(10, 111)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_step_decay_at_milestones():
    cfg = ScheduleConfig(name="step", milestones=[5, 8], gamma=0.1)
    assert [round(lr_at(s, 1.0, 10, cfg), 6) for s in (0, 4, 5, 7, 8, 9)] == [1, 1, 0.1, 0.1, 0.01, 0.01]


def test_constant():
    assert lr_at(500, 0.3, 1000, ScheduleConfig(name="constant")) == 0.3
