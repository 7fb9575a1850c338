import copy

import pytest
import torch

from metassl.bench.reference import MetaPLMixupReference
from metassl.bench.speed import Bench
from metassl.errors import ConfigError


@pytest.mark.parametrize("model,shape,device", [
    ("cnn3", (1, 16, 16), "cpu"), ("mlp", (1, 8, 8), "cpu"),
    pytest.param("cnn3", (3, 32, 32), "cuda", marks=pytest.mark.cuda),
])
def test_one_reference_step_is_one_meta_pl_mixup_step(model, shape, device):
    """From the same weights, optimizer state, batch and λ draw, the authors' iteration and
    metassl's step leave the same weights and BatchNorm statistics (float32): they differ only in
    taking the pseudo-label start from the pass at θ or from the centre of the perturbed pair."""
    bench = Bench(model, 16, torch.device(device), shape=shape, channels_last=device == "cuda")
    ours, ref = bench.method("meta_pl_mixup"), bench.method("meta_pl_mixup_reference")
    assert isinstance(ref, MetaPLMixupReference)
    labeled, unlabeled = bench.batch("labeled"), bench.batch("unlabeled")
    ours.train_step(labeled, unlabeled, 0)  # momentum to carry over
    ref.model.load_state_dict(ours.model.state_dict())
    ref.optimizer.load_state_dict(copy.deepcopy(ours.optimizer.state_dict()))
    before = copy.deepcopy(ours.model.state_dict())
    labeled, unlabeled = bench.batch("labeled"), bench.batch("unlabeled")
    step = 600  # past the ramp-up: the consistency term and the meta step both act
    losses = []
    for method in (ours, ref):
        torch.manual_seed(step)
        losses.append(method.train_step(labeled, unlabeled, step))
    after_ours, after_ref = ours.model.state_dict(), ref.model.state_dict()
    moved = max((after_ours[k].float() - before[k].float()).abs().max().item() for k in before)
    assert moved > 1e-3  # a real update, far above the tolerance below
    for key in before:
        torch.testing.assert_close(after_ref[key], after_ours[key], atol=2e-5 if device == "cpu" else 5e-5,
                                   rtol=0, msg=key)
    for key in ("loss", "loss_cls", "loss_cons"):
        torch.testing.assert_close(losses[1][key], losses[0][key], atol=1e-3, rtol=0)


def test_the_reference_refuses_settings_the_authors_loop_does_not_have():
    bench = Bench("mlp", 8, torch.device("cpu"), shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="consistency"):
        bench.method("meta_pl_mixup_reference:consistency=kl")
    assert bench.method("meta_pl_mixup_reference:gamma=0.5").cfg.gamma == 0.5
