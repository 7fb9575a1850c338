import pytest

from metassl.config import ScheduleConfig
from metassl.engine.schedule import lr_at


def test_warmup_then_cosine_to_zero():
    cfg = ScheduleConfig(name="cosine", warmup_steps=10)
    assert lr_at(0, 1.0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 110, cfg) == pytest.approx(0.5)
    assert lr_at(110, 1.0, 110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_step_decay_at_milestones():
    cfg = ScheduleConfig(name="step", milestones=[5, 8], gamma=0.1)
    assert [round(lr_at(s, 1.0, 10, cfg), 6) for s in (0, 4, 5, 7, 8, 9)] == [1, 1, 0.1, 0.1, 0.01, 0.01]


def test_constant():
    assert lr_at(500, 0.3, 1000, ScheduleConfig(name="constant")) == 0.3
