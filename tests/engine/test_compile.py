import pytest
import torch

from metassl import config
from metassl.bench.speed import Bench
from metassl.engine import compiling
from metassl.engine.trainer import Trainer
from metassl.errors import ConfigError
from tests.conftest import FAST

CPU = torch.device("cpu")


@pytest.mark.parametrize("spec,applies", [
    ("supervised", True), ("fixmatch", True), ("fixmatch:meta_gradient=true", True), ("meta_pl_mixup", True),
    ("meta_pl", True), ("meta_pl:pseudo_grad=jvp", False), ("meta_pl_exact", False),
    ("metamixup", False), ("metamixup:grad=first_order", False), ("meta_pl_metamixup", False),
])
def test_compile_applies_where_the_step_has_no_double_backward_or_transform(spec, applies):
    method = Bench("mlp", 4, CPU, shape=(1, 8, 8)).method(spec)
    assert method.compiles() is applies


def test_auto_compiles_only_long_runs_where_it_applies(monkeypatch):
    monkeypatch.setattr(compiling, "available", lambda device: True)
    long, short = compiling.AUTO_MIN_STEPS, compiling.AUTO_MIN_STEPS - 1
    assert compiling.wanted("auto", True, long, CPU)
    assert not compiling.wanted("auto", True, short, CPU)
    assert not compiling.wanted("auto", False, long, CPU)  # e.g. MetaMixUp's double backward stays eager
    assert compiling.wanted("on", True, 10, CPU) and not compiling.wanted("on", False, 10, CPU)
    assert not compiling.wanted("off", True, long, CPU)
    monkeypatch.setattr(compiling, "available", lambda device: False)
    assert not compiling.wanted("auto", True, long, CPU)
    with pytest.raises(ConfigError, match="compile"):
        compiling.wanted("on", True, 10, CPU)


def test_a_resume_may_change_compile():
    from metassl.engine.rundir import RESUMABLE_KEYS

    assert "compile" in RESUMABLE_KEYS
    assert config.load_config(None, []).compile == "off"


def _run(setting: str, device: str) -> tuple[list[float], dict]:
    cfg = config.load_config(None, FAST + ["steps=6", "eval_every=6", "log_every=1", "threads=1",
                                           f"compile={setting}", f"device={device}", "amp=off"])
    trainer = Trainer(cfg, None)
    losses, step = [], trainer.method.train_step

    def recorded(*args):
        out = step(*args)
        losses.append(float(out["loss"]))
        return out

    trainer.method.train_step = recorded
    return losses, trainer.fit()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_compiled_run_tracks_the_eager_run(device):
    """The smallest model (mlp on digits, a few steps): compiling it takes a minute on a loaded
    two-core CPU with a cold kernel cache, seconds with a warm one."""
    if not compiling.available(torch.device(device)):
        pytest.skip("torch.compile cannot build kernels here")
    eager, eager_final = _run("off", device)
    compiled, final = _run("on", device)
    assert not eager_final["compiled"] and eager_final["compile_seconds"] == 0
    assert final["compiled"] and final["compile_seconds"] > 0
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)
    assert abs(final["test_error"] - eager_final["test_error"]) < 1.0
