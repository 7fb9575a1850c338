"""MetaMixUp's paper-scale configs: the published settings, and two training steps of each on a few
images written in the dataset's real file format."""
from pathlib import Path

import numpy as np
import pytest

from metassl import config
from metassl.data import locate
from metassl.engine import rundir
from metassl.engine.trainer import Trainer
from tests.test_paper_configs import WRITERS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# (file, dataset, model, method, labels per class, validation per class, steps, flip)
PAPER = [
    ("metamixup-cifar10.yaml", "cifar10", "preact_resnet18", "metamixup", None, 100, 229_800, "on"),
    ("metamixup-cifar100.yaml", "cifar100", "preact_resnet18", "metamixup", None, 10, 229_800, "on"),
    ("metamixup-svhn.yaml", "svhn", "preact_resnet18", "metamixup", None, 100, 339_000, "on"),
    ("metamixup_ssl-cifar10-4000.yaml", "cifar10", "wrn28_2", "metamixup_ssl", 400, 50, 91_000, "on"),
    ("metamixup_ssl-svhn1000.yaml", "svhn", "wrn28_2", "metamixup_ssl", 100, 50, 143_600, "off"),
]
SMALL = ["steps=2", "batch_size=4", "unlabeled_batch_size=4", "eval_every=2", "eval_batch_size=16",
         "val_per_class=1", "tensorboard=false", "threads=1"]


@pytest.fixture(autouse=True)
def no_system_datasets(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path_factory.mktemp("no-system"))


@pytest.mark.parametrize("name, dataset, model, method, per_class, val, steps, flip", PAPER)
def test_config_has_the_published_settings(name, dataset, model, method, per_class, val, steps, flip):
    cfg = config.load_config(CONFIGS / name, [])
    assert (cfg.dataset, cfg.model, cfg.method) == (dataset, model, method)
    assert (cfg.labels_per_class, cfg.val_per_class, cfg.steps) == (per_class, val, steps)
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.1, 0.9, False, 1e-4)
    assert cfg.method_cfg.alpha == 5.0 and cfg.augment.flip == flip
    if method == "metamixup":
        assert cfg.batch_size == 128 and cfg.schedule.name == "cosine" and cfg.augment.translate == 0
    else:
        assert cfg.batch_size == cfg.u_batch_size == 100 and cfg.augment.translate == 2
        # lr / 10 after 60, 120 and 180 of 200 epochs; APL every 30 epochs.
        assert cfg.schedule.milestones == [round(steps * f) for f in (0.3, 0.6, 0.9)]
        assert cfg.method_cfg.apl_period_steps == round(steps * 0.15)
        assert (cfg.method_cfg.sigma0, cfg.method_cfg.sigma_d) == (0.95, 0.05)


@pytest.mark.parametrize("name", [p[0] for p in PAPER])
def test_config_trains_two_steps_on_files_in_the_real_format(name, tmp_path):
    cfg = config.load_config(CONFIGS / name, [])
    WRITERS[cfg.dataset](tmp_path, np.random.default_rng(0))
    # One labeled image per class for the supervised runs keeps the evaluation of the training error short.
    labels = "labels_per_class=1" if cfg.labels_per_class is None else "labels_per_class=2"
    cfg = config.load_config(CONFIGS / name, SMALL + [labels, f"data_root={tmp_path}"])
    rundir.prepare_new(tmp_path / "run", cfg, overwrite=False)
    final = Trainer(cfg, tmp_path / "run").fit()
    assert final["steps"] == 2 and 0 <= final["test_error"] <= 100
    assert (tmp_path / "run" / "lambdas.jsonl").read_text().count("\n") == 1
