import pytest
import torch

from tests.methods.conftest import MARGIN


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_decay_is_capped_early_then_0_99_during_rampup_then_0_999(make_method):
    method, _ = make_method("mean_teacher", "rampup_fraction=0.25", total_steps=40000)
    assert method.decay(0) == 0.0
    assert method.decay(49) == pytest.approx(0.98)   # 1 - 1/(t+1)
    assert method.decay(8000) == pytest.approx(0.99)
    assert method.decay(10000) == pytest.approx(0.999) and method.decay(39999) == pytest.approx(0.999)
    short, _ = make_method("mean_teacher", "rampup_fraction=0.25", total_steps=10000)
    assert short.decay(9999) == pytest.approx(0.998)  # capped at the horizon, 5% of the run


def test_teacher_is_the_moving_average_of_the_student(make_method):
    method, batches = make_method("mean_teacher", total_steps=1000)
    for step in (0, 5, 700):
        before = params(method.teacher.module)
        method.train_step(*batches(seed=step), step=step)
        d = method.decay(step)
        for t0, t1, s in zip(before, method.teacher.module.parameters(), method.student.parameters()):
            assert torch.allclose(t1, d * t0 + (1 - d) * s.detach(), atol=1e-6)
        if step == 0:  # the first update copies the student
            assert all(torch.allclose(t, s) for t, s in zip(method.teacher.module.parameters(),
                                                          method.student.parameters()))
    assert all(not p.requires_grad for p in method.teacher.module.parameters())


def test_teacher_tracks_the_student_and_survives_a_resume(make_method):
    method, batches = make_method("mean_teacher", "rampup_fraction=0.0", "ema_decay=0.9", total_steps=200)
    start = params(method.student)
    for step in range(1, 60):
        method.train_step(*batches(seed=step % 3), step=step)
    dist = lambda a, b: sum((x - y).pow(2).sum() for x, y in zip(a, b)).sqrt()  # noqa: E731
    moved = dist(start, params(method.student))
    lag = dist(params(method.teacher.module), params(method.student))
    assert moved > 0.1 and lag < 0.5 * moved

    state = method.state_dict()
    other, _ = make_method("mean_teacher")
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.teacher.module.parameters(),
                                                 method.teacher.module.parameters()))


def test_mean_teacher_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("mean_teacher") < supervised_error - MARGIN


def test_engine_selects_and_saves_the_teacher(tmp_path):
    from metassl import config
    from metassl.engine.trainer import Trainer

    cfg = config.load_config(None, ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5",
                                    "method=mean_teacher", "steps=6", "eval_every=6", "batch_size=16", "mean_teacher.ema_horizon_steps=4",
                                    "tensorboard=false"])
    trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    saved = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    teacher = trainer.method.teacher.module.state_dict()
    student = trainer.s.model.state_dict()
    assert all(torch.equal(saved[k], teacher[k]) for k in saved)
    assert any(not torch.equal(saved[k], student[k]) for k in saved if saved[k].is_floating_point())
