"""The ``meta_gradient`` plug-in: the first-order meta step of meta_pl on the unlabeled target of
every pseudo-labelling method."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metassl import config
from metassl.errors import ConfigError
from metassl.methods.meta_labels import project_rows
from tests.methods.conftest import MARGIN

PLUGGED = ["pseudo_label", "fixmatch", "uda", "flexmatch", "freematch", "softmatch", "mixmatch", "mean_teacher"]
# Where the threshold or ramp would hide the unlabeled loss in two steps of a fresh net.
OPEN = {"pseudo_label": ["threshold=0.3", "t1_steps=0", "t2_steps=0"], "fixmatch": ["threshold=0.3"],
        "uda": ["threshold=0.3"], "mixmatch": ["rampup_steps=0"], "mean_teacher": ["rampup_steps=0"]}
CTX = {"num_train": 24, "num_unlabeled": 24}


def convnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 64, 4))
    with torch.no_grad():
        net(torch.randn(32, 1, 8, 8))  # running statistics away from their initial values
    return net


def run_steps(make_method, name, *overrides, steps=2):
    method, batches = make_method(name, *OPEN.get(name, []), *overrides, model=convnet(), **CTX)
    torch.manual_seed(7)
    logs = []
    for step in range(steps):
        labeled, unlabeled = batches(seed=step)
        unlabeled.idx = torch.arange(unlabeled.x.shape[0])
        logs.append(method.train_step(labeled, unlabeled, step))
    return method, logs


def flat(state: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in state.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("name", PLUGGED)
def test_a_zero_meta_step_is_the_method_bit_for_bit(make_method, name):
    plain, plain_logs = run_steps(make_method, name)
    zero, zero_logs = run_steps(make_method, name, "meta_gradient=true", "meta_lr=0")
    moved, moved_logs = run_steps(make_method, name, "meta_gradient=true", "meta_lr=0.5")
    unlabeled_term = "loss_cons" if name == "mean_teacher" else "loss_u"
    assert all(logs[unlabeled_term] > 0 for logs in plain_logs)  # the target is in use
    for a, b in zip(plain_logs, zero_logs):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, zero.model.state_dict()[key]), key
    for key, value in flat(plain.state_dict()).items():  # thresholds, EMAs, memories, teachers
        assert torch.equal(value, flat(zero.state_dict())[key]), key
    # ... and a non-zero step changes the run.
    assert moved_logs[0]["pl_shift"] > 0
    assert any(not torch.equal(v, moved.model.state_dict()[k]) for k, v in plain.model.state_dict().items())


@pytest.mark.parametrize("name", PLUGGED)
def test_the_look_ahead_runs_on_the_weak_view(make_method, name):
    method, batches = make_method(name, *OPEN.get(name, []), "meta_gradient=true", **CTX)
    seen = []
    real = method.meta_target

    def spy(labeled, x_u, y_tilde):
        seen.append((x_u, y_tilde))
        return real(labeled, x_u, y_tilde)

    method.meta_target = spy
    labeled, unlabeled = batches()
    unlabeled.idx = torch.arange(unlabeled.x.shape[0])
    method.train_step(labeled, unlabeled, 0)
    ((x_u, y_tilde),) = seen
    assert torch.equal(x_u, unlabeled.x)
    assert y_tilde.shape == (unlabeled.x.shape[0], 4) and torch.allclose(y_tilde.sum(1), torch.ones(len(y_tilde)))


def exact_pseudo_grad(net, labeled, x_u, y_tilde, phi, alpha):
    """∇_ỹ G(θ - α ∇_θ L_u(θ; ỹ)) by autograd through the SGD step, BatchNorm in eval mode,
    rescaled by B_u/α (the β convention of meta_pl_base)."""
    params = {n: p for n, p in net.named_parameters()}
    net.eval()
    try:
        y = y_tilde.detach().clone().requires_grad_()
        logits_u = functional_call(net, params, (x_u,))
        if phi == "kl":
            inner = -(y * F.log_softmax(logits_u, 1)).sum(1).mean()
        else:
            inner = (F.softmax(logits_u, 1) - y).pow(2).sum(1).mean()
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        stepped = {n: p - alpha * g for (n, p), g in zip(params.items(), grads)}
        outer = F.cross_entropy(functional_call(net, stepped, (labeled.x,)), labeled.y)
        (dy,) = torch.autograd.grad(outer, [y])
    finally:
        net.train()
    return dy * (x_u.shape[0] / alpha)


@pytest.mark.parametrize("name", PLUGGED)
def test_the_shift_follows_the_exact_meta_gradient(make_method, float64, name):
    """At ỹ = f(x_u; θ) the first-order d is the exact meta-gradient (Eq. 8): ŷ is project(ỹ - β ∇ỹ),
    and the shift lowers the labeled loss after the look-ahead (its sign)."""
    beta = 0.05
    net = convnet()
    method, batches = make_method(name, "meta_gradient=true", f"meta_lr={beta}", model=net, **CTX)
    labeled, unlabeled = batches()
    labeled.x, unlabeled.x = labeled.x.double(), unlabeled.x.double()
    net.eval()
    with torch.no_grad():
        y_tilde = F.softmax(net(unlabeled.x), 1)
    net.train()
    y_hat, logs = method.meta_target(labeled, unlabeled.x, y_tilde)
    exact = exact_pseudo_grad(net, labeled, unlabeled.x, y_tilde, method.meta_score, alpha=0.05)
    expected = project_rows(y_tilde - beta * exact)
    shift = y_hat - y_tilde
    assert shift.abs().max() > 1e-3 and logs["pl_shift"] > 0
    assert (y_hat - expected).abs().max() < 0.02 * (expected - y_tilde).abs().max()
    assert (shift * exact).sum() < 0


def test_the_score_is_the_one_of_the_method_loss(make_method):
    """Φ = cross-entropy for the pseudo-label family, squared error for MixMatch and Mean Teacher."""
    scores = {name: make_method(name, **CTX)[0].meta_score for name in PLUGGED}
    assert scores == {**{n: "kl" for n in PLUGGED}, "mixmatch": "mse", "mean_teacher": "mse"}


def test_fp16_is_refused_where_the_plug_in_takes_look_ahead_gradients():
    with pytest.raises(ConfigError, match=r"amp='fp16' does not suit fixmatch.meta_gradient=true: .* use amp=bf16"):
        config.load_config(None, ["method=fixmatch", "fixmatch.meta_gradient=true", "amp=fp16"])
    assert config.load_config(None, ["method=fixmatch", "amp=fp16"]).amp == "fp16"
    assert config.load_config(None, ["method=uda", "uda.meta_gradient=true", "amp=bf16"]).amp == "bf16"


def test_fixmatch_with_the_plug_in_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("fixmatch", "fixmatch.meta_gradient=true") < supervised_error - MARGIN
