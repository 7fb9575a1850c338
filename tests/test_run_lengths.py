"""Lengths within a run: ``NAME_fraction`` (a share of ``steps``) or ``NAME_steps`` (a count), never
both; ramps, warm-ups and EMA horizons that do their job at any run length."""
import pytest
import torch

from metassl import config
from metassl.config import ScheduleConfig
from metassl.data.augment import Augmenter
from metassl.engine.ema import ModelEMA, effective_decay
from metassl.engine.schedule import lr_at
from metassl.errors import ConfigError
from metassl.methods import METHODS, TrainContext

# Every method with a consistency ramp, and the weight function of the step it ramps.
RAMPED = {
    "pi_model": lambda m, s: m.cfg.w_max * _ramp(m, s, "sigmoid"),
    "mean_teacher": lambda m, s: m.cfg.w_max * _ramp(m, s, "sigmoid"),
    "mixmatch": lambda m, s: _ramp(m, s, "linear"),
    "mixup_ssl": lambda m, s: _ramp(m, s, "linear"),
    "meta_pl_mixup": lambda m, s: _ramp(m, s, "linear"),
    "meta_pl": lambda m, s: _ramp(m, s, "linear"),
}


def _ramp(method, step, kind):
    from metassl.methods.ramps import run_rampup

    return run_rampup(kind, step, method.cfg, method.ctx.total_steps)


def build(name, total_steps, *overrides):
    cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    aug = Augmenter((0.5,), (0.25,), flip=False, translate=1, noise=0.0, device="cpu")
    ctx = TrainContext(num_classes=4, total_steps=total_steps, augment=aug, normalize=aug.normalize,
                       device=torch.device("cpu"), strong_augment=aug.strong)
    return METHODS.get(name)(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg, ctx)


@pytest.mark.parametrize("name", sorted(RAMPED))
@pytest.mark.parametrize("total", [300, 400_000])
def test_a_ramp_given_as_a_fraction_reaches_full_weight_at_that_fraction_of_any_run(name, total):
    method = build(name, total)
    end = round(method.cfg.rampup_fraction * total)
    assert 0 < end < total
    full = RAMPED[name](method, total)
    assert RAMPED[name](method, end) == pytest.approx(full)
    assert RAMPED[name](method, end // 2) < 0.9 * full


@pytest.mark.parametrize("name", sorted(RAMPED))
def test_a_ramp_given_in_steps_ignores_the_run_length(name):
    short, long = build(name, 1000, "rampup_steps=100"), build(name, 100_000, "rampup_steps=100")
    assert RAMPED[name](short, 100) == pytest.approx(RAMPED[name](long, 100))
    assert RAMPED[name](long, 50) == pytest.approx(RAMPED[name](short, 50))
    assert RAMPED[name](long, 100) == pytest.approx(RAMPED[name](long, 90_000))


@pytest.mark.parametrize("keys", [
    ["method=mixup_ssl", "mixup_ssl.rampup_steps=10", "mixup_ssl.rampup_fraction=0.2"],
    ["schedule.warmup_steps=10", "schedule.warmup_fraction=0.1"],
    ["ema_horizon_steps=10", "ema_horizon_fraction=0.1"],
    ["method=pseudo_label", "pseudo_label.t1_steps=5", "pseudo_label.t1_fraction=0.2"],
    ["method=mixup_apl", "mixup_apl.apl_period_steps=5", "mixup_apl.apl_period_fraction=0.2"],
    ["schedule.milestones=[5]", "schedule.milestones_fraction=[0.5]"],
])
def test_a_length_set_both_as_steps_and_as_a_fraction_is_a_config_error(keys):
    with pytest.raises(ConfigError, match="both set"):
        config.load_config(None, keys)


def test_every_length_key_has_its_twin():
    """The convention holds for the whole config: each ``*_fraction`` has a ``*_steps`` beside it."""
    import dataclasses

    classes = [config.TrainConfig, config.ScheduleConfig] + [METHODS.get(n).Config for n in METHODS.names()]
    pairs = 0
    for cls in classes:
        fields = {f.name: f.metadata.get("length") for f in dataclasses.fields(cls)}
        for name, kind in fields.items():
            if kind == "fraction" and name != "milestones_fraction":
                assert fields.get(name[: -len("_fraction")] + "_steps") == "steps", (cls.__name__, name)
                pairs += 1
            if kind == "steps":
                assert fields.get(name[: -len("_steps")] + "_fraction") == "fraction", (cls.__name__, name)
    assert pairs >= 10


def test_warmup_and_milestones_as_fractions_scale_with_the_run():
    cfg = ScheduleConfig(name="step", warmup_fraction=0.1, milestones_fraction=[0.5, 0.8], gamma=0.1)
    for total in (100, 10_000):
        assert lr_at(0, 1.0, total, cfg) == pytest.approx(1.0 / (0.1 * total))
        assert lr_at(int(0.1 * total) - 1, 1.0, total, cfg) == pytest.approx(1.0)
        assert lr_at(int(0.5 * total) - 1, 1.0, total, cfg) == pytest.approx(1.0)
        assert lr_at(int(0.5 * total), 1.0, total, cfg) == pytest.approx(0.1)
        assert lr_at(int(0.8 * total), 1.0, total, cfg) == pytest.approx(0.01)


def test_ema_decay_warms_up_and_never_outlasts_its_horizon():
    assert effective_decay(0.999, 0) == 0.0
    assert effective_decay(0.999, 9) == pytest.approx(0.9)            # 1 - 1/(t+1)
    assert effective_decay(0.999, 100_000) == pytest.approx(0.999)
    assert effective_decay(0.999, 100_000, horizon=30) == pytest.approx(1 - 1 / 30)
    assert effective_decay(0.999, 100_000, horizon=20_000) == pytest.approx(0.999)


def test_the_evaluated_ema_of_a_short_run_follows_its_last_steps():
    """With decay 0.999 over 200 steps and no cap, the average would still hold the first steps'
    weights with a large share; capped at 5% of the run, their share is negligible."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, 0.999, horizon=10)
    uncapped = ModelEMA(model, 0.999)
    for step in range(200):
        with torch.no_grad():
            model.weight.fill_(0.0 if step < 100 else 1.0)
        ema.update(model, step)
        uncapped.update(model, step)
    assert ema.module.weight.item() > 0.99
    assert uncapped.module.weight.item() < 0.6


def test_mean_teachers_teacher_is_capped_by_the_run():
    short = build("mean_teacher", 600)
    assert short.decay(599) == pytest.approx(1 - 1 / 30)
    long = build("mean_teacher", 400_000)
    assert long.decay(399_999) == pytest.approx(0.999)


@pytest.mark.parametrize("zero", ["ema_horizon_steps=0", "ema_horizon_fraction=0"])
def test_a_horizon_of_length_0_leaves_every_ema_uncapped(zero):
    """0 means no cap (the decay as given), for the engine's weight EMA, Mean Teacher's teacher and
    FreeMatch's / SoftMatch's statistics alike; never a decay of 0 that turns the average off."""
    from metassl.engine.ema import horizon_steps

    assert horizon_steps(config.load_config(None, ["steps=600", zero]), 600) is None
    assert horizon_steps(config.load_config(None, ["steps=600"]), 600) == 30
    assert horizon_steps(config.load_config(None, ["steps=10"]), 10) == 1  # 5% of 10 steps rounds to 0
    assert build("mean_teacher", 600, zero).decay(9999) == pytest.approx(0.999)  # past its warm-up 1 - 1/(t+1)
    assert build("freematch", 600, zero).decay == pytest.approx(0.999)
    assert build("softmatch", 600, zero).decay == pytest.approx(0.999)
    assert build("freematch", 600).decay == pytest.approx(1 - 1 / 30)


def test_fixmatch_draws_mu_7_unlabeled_images_per_labeled_one_unless_told():
    assert config.load_config(None, ["method=fixmatch", "batch_size=16"]).u_batch_size == 112
    assert config.load_config(None, ["method=fixmatch", "batch_size=16", "unlabeled_batch_size=16"]).u_batch_size == 16
    assert config.load_config(None, ["method=pseudo_label", "batch_size=16"]).u_batch_size == 16


def test_final_json_says_which_weights_were_evaluated(tmp_path):
    from metassl.engine.trainer import Trainer

    base = ["dataset=digits", "model=mlp", "steps=20", "eval_every=20", "tensorboard=false"]
    final = Trainer(config.load_config(None, base + ["ema_decay=0.999"]), tmp_path / "a").fit()
    assert final["evaluated"]["weights"] == "ema" and final["evaluated"]["horizon_steps"] == 1
    final = Trainer(config.load_config(None, base), tmp_path / "b").fit()
    assert final["evaluated"] == {"weights": "model"}
    final = Trainer(config.load_config(None, base + ["method=mean_teacher"]), tmp_path / "c").fit()
    assert final["evaluated"]["weights"] == "teacher"


@pytest.mark.parametrize("keys", [
    ["method=mixup_ssl", "mixup_ssl.rampup_steps=10"],
    ["schedule.warmup_steps=10"],
    ["ema_horizon_steps=10"],
    ["method=pseudo_label", "pseudo_label.t1_steps=5"],
    ["method=mixup_apl", "mixup_apl.apl_period_steps=5"],
    ["schedule.name=step", "schedule.milestones=[5]"],
])
def test_a_length_given_as_steps_reads_back_from_the_saved_config(keys):
    cfg = config.load_config(None, keys)
    saved = config.dump(cfg)
    assert config.dump(config.resolve(saved)) == saved


def test_a_fraction_off_its_default_beside_a_step_count_is_still_an_error():
    saved = config.dump(config.load_config(None, ["schedule.warmup_steps=10"]))
    saved["schedule"]["warmup_fraction"] = 0.1
    with pytest.raises(ConfigError, match="both set"):
        config.resolve(saved)
