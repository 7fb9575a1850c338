"""mixup_ssl, and what meta_pl_mixup shares with it: the cross-domain mixup loss of Eq. 12-13."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metassl import config
from metassl.errors import ConfigError
from metassl.methods import Batch, TrainContext
from metassl.methods.meta_pl_mixup import MetaPLMixup
from metassl.methods.mixup_ssl import MixupSSL


class Recorder(nn.Module):
    """A small BatchNorm MLP that keeps the inputs of its train-mode calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                                 nn.Linear(16, 4))
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.net(x)


def make(cls, *overrides, lr=0.05):
    name = "mixup_ssl" if cls is MixupSSL else "meta_pl_mixup"
    cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
    model = Recorder()
    ctx = TrainContext(num_classes=4, total_steps=100, augment=None, normalize=None, device=torch.device("cpu"),
                       lr=lambda: lr)
    return cls(model, torch.optim.SGD(model.parameters(), lr=lr), cfg, ctx)


def batches(n_l=8, n_u=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x_l, x_u = torch.randn(n_l, 1, 8, 8, generator=g), torch.randn(n_u, 1, 8, 8, generator=g)
    return Batch(x=x_l, raw=None, y=torch.randint(0, 4, (n_l,), generator=g)), Batch(x=x_u, raw=None)


def test_loss_is_kl_on_pairs_mixed_per_sample_plus_ramped_mse_to_the_predictions():
    method = make(MixupSSL, "rampup_steps=10", "consistency_weight=2.0", "gamma=0.5")
    labeled, unlabeled = batches()
    net = method.model.net
    net.eval()
    with torch.no_grad():
        y_hat = F.softmax(net(unlabeled.x), 1)
    net.train()
    torch.manual_seed(7)
    lam = torch.distributions.Beta(torch.tensor(0.5), torch.tensor(0.5)).sample((8,))
    torch.manual_seed(7)
    logs = method.train_step(labeled, unlabeled, step=5)
    x_mix, x_u = method.model.seen
    # The i-th labeled example is mixed with the i-th unlabeled one, with its own λ_i.
    expected_x = lam.view(-1, 1, 1, 1) * labeled.x + (1 - lam.view(-1, 1, 1, 1)) * unlabeled.x
    assert torch.allclose(x_mix, expected_x, atol=1e-6) and torch.equal(x_u, unlabeled.x)
    assert lam.unique().numel() == 8
    with torch.no_grad():
        method.model.train()
        torch.manual_seed(0)
        fresh = Recorder()  # the weights before the step
        y_in = lam[:, None] * F.one_hot(labeled.y, 4) + (1 - lam[:, None]) * y_hat
        logp = F.log_softmax(fresh.net(x_mix), 1)
        kl = (torch.xlogy(y_in, y_in) - y_in * logp).sum(1).mean()
        mse = (F.softmax(fresh.net(x_u), 1) - y_hat).pow(2).sum(1).mean()
    assert torch.allclose(logs["loss_cls"], kl, atol=1e-5) and torch.allclose(logs["loss_cons"], mse, atol=1e-6)
    assert torch.allclose(logs["loss"], kl + 2.0 * 0.5 * mse, atol=1e-5)  # w_5 = 2 * 5/10


def test_unequal_batch_sizes_are_a_config_error():
    method = make(MixupSSL)
    labeled, unlabeled = batches(n_l=8, n_u=12)
    with pytest.raises(ConfigError, match="unlabeled_batch_size must equal batch_size"):
        method.train_step(labeled, unlabeled, 0)


def test_meta_version_only_adds_the_pseudo_label_step():
    """With β = 0 meta_pl_mixup takes mixup_ssl's step: the same loss and the same new weights
    (up to the O(ε²) of starting from the perturbed pair's mean)."""
    plain, with_meta = make(MixupSSL, "rampup_steps=0"), make(MetaPLMixup, "rampup_steps=0", "meta_lr=0")
    labeled, unlabeled = batches()
    torch.manual_seed(3)
    a = plain.train_step(labeled, unlabeled, 0)
    torch.manual_seed(3)
    b = with_meta.train_step(labeled, unlabeled, 0)
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-4)
    for p, q in zip(plain.model.parameters(), with_meta.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    # ...and with β > 0 the pseudo labels do move.
    moved = make(MetaPLMixup, "rampup_steps=0", "meta_lr=1.0")
    torch.manual_seed(3)
    c = moved.train_step(labeled, unlabeled, 0)
    assert c["pl_shift"] > 1e-3 and not torch.allclose(a["loss"], c["loss"], rtol=1e-4)


def test_updated_pseudo_labels_are_distributions():
    method = make(MetaPLMixup, "meta_lr=50.0")  # a step large enough to leave the simplex
    labeled, unlabeled = batches()
    y_hat, logs = method.pseudo_labels(labeled, unlabeled.x)
    assert (y_hat >= 0).all() and torch.allclose(y_hat.sum(1), torch.ones(8)) and logs["pl_shift"] > 0.1
