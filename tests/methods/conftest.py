"""What the method tests share: small methods to probe one step at a time, and the SSL accuracy
check: digits with 5 labels per class, one seed, one step budget and batch sizes for all
methods, against one supervised run per session."""
import pytest
import torch

from metassl import config
from metassl.data.augment import Augmenter
from metassl.data.sources import load_dataset
from metassl.engine.trainer import Trainer
from metassl.methods import METHODS, Batch, TrainContext

DIGITS_SSL = ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "batch_size=32",
              "unlabeled_batch_size=64", "steps=1000", "eval_every=1000", "select=last", "lr=0.05",
              "augment.translate=1", "tensorboard=false", "seed=0", "threads=1"]
# Percentage points of test error (about 7 of the 359 test images) that an SSL method must gain.
MARGIN = 2.0


@pytest.fixture(scope="session")
def digits_error():
    """Test error (percent) of ``method`` trained on the shared digits setting."""
    data = load_dataset("digits", None)

    def run(method: str, *overrides: str) -> float:
        cfg = config.load_config(None, DIGITS_SSL + [f"method={method}", *overrides])
        return Trainer(cfg, run_dir=None, data=data).fit()["test_error"]

    return run


def mean_test_error(overrides: list[str], method: str, seeds=(0, 1, 2)) -> float:
    """Mean test error (percent) of ``method`` over ``seeds`` at the given settings."""
    base = [o for o in overrides if not o.startswith("seed=")]
    errors = [Trainer(config.load_config(None, base + [f"method={method}", f"seed={seed}"]), None).fit()["test_error"]
              for seed in seeds]
    return sum(errors) / len(errors)


@pytest.fixture(scope="session")
def supervised_error(digits_error):
    return digits_error("supervised")


def small_net(classes: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, classes))


@pytest.fixture
def make_method():
    """A method on a small BatchNorm MLP over 1x8x8 images with 4 classes, and a function that
    draws (labeled, unlabeled) batches for it."""
    aug = Augmenter((0.5,), (0.25,), flip=False, translate=1, noise=0.0, device="cpu")

    def make(name: str, *overrides: str, total_steps: int = 100, model=None, augment=aug, **ctx_fields):
        cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
        model = model if model is not None else small_net()
        ctx = TrainContext(num_classes=4, total_steps=total_steps, augment=augment, normalize=aug.normalize,
                           device=torch.device("cpu"), strong_augment=aug.strong, **ctx_fields)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        method = METHODS.get(name)(model, opt, cfg, ctx)

        def batches(n_l: int = 16, n_u: int = 24, seed: int = 1):
            g = torch.Generator().manual_seed(seed)
            raw_l = torch.randint(0, 256, (n_l, 1, 8, 8), generator=g, dtype=torch.uint8)
            raw_u = torch.randint(0, 256, (n_u, 1, 8, 8), generator=g, dtype=torch.uint8)
            y = torch.randint(0, 4, (n_l,), generator=g)
            return Batch(x=augment(raw_l), raw=raw_l, y=y), Batch(x=augment(raw_u), raw=raw_u)

        return method, batches

    return make
