"""The paper-scale configs of the meta-gradient SSL paper: the published hyperparameters, and two
training steps of each on a few images written in the dataset's real file format."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from metassl import config
from metassl.data import locate, sources
from metassl.engine import rundir
from metassl.engine.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PER_CLASS = 4  # 1 validation, 2 labeled, 1 unlabeled

# (file, dataset, classes, labels, mixup gamma, weight decay): the paper's runs (REFERENCE-NOTES).
PAPER = [
    ("meta_pl_mixup-svhn1000.yaml", "svhn", 10, 1000, 0.1, 5e-5),
    ("meta_pl_mixup-cifar10-4000.yaml", "cifar10", 10, 4000, 1.0, 1e-4),
    ("meta_pl_mixup-cifar100-10000.yaml", "cifar100", 100, 10000, 1.0, 1e-4),
]


def labels(classes: int, rng) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(classes), PER_CLASS))


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, rng) -> None:
    d = root / "cifar-10-batches-py"
    y = labels(10, rng)
    for i, part in enumerate(np.array_split(y, 5), start=1):
        rows = rng.integers(0, 256, (len(part), 3072), dtype=np.uint8)
        dump(d / f"data_batch_{i}", {b"data": rows, b"labels": part.tolist()})
    dump(d / "test_batch", {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3, 4, 5]})
    dump(d / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})


def write_cifar100(root: Path, rng) -> None:
    d = root / "cifar-100-python"
    y = labels(100, rng)
    dump(d / "train", {b"data": rng.integers(0, 256, (len(y), 3072), dtype=np.uint8),
                       b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()})
    dump(d / "test", {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                      b"fine_labels": [0, 1, 2, 99], b"coarse_labels": [0, 0, 0, 19]})
    dump(d / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                      b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})


def write_svhn(root: Path, rng) -> None:
    d = root / "svhn"
    d.mkdir(parents=True)
    for name, y in (("train_32x32.mat", labels(10, rng)), ("test_32x32.mat", np.arange(6))):
        x = rng.integers(0, 256, (32, 32, 3, len(y)), dtype=np.uint8)  # rows, columns, channels, image
        scipy.io.savemat(d / name, {"X": x, "y": np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)})


def write_imagenet(root: Path, rng) -> None:
    for c, wnid in enumerate(["n01440764", "n01443537"]):
        for split, n in (("train", PER_CLASS), ("val", 1)):
            for i in range(n):
                path = root / split / wnid / f"{wnid}_{split}_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)


WRITERS = {"svhn": write_svhn, "cifar10": write_cifar10, "cifar100": write_cifar100, "imagenet": write_imagenet}
SMALL = ["steps=2", "batch_size=4", "unlabeled_batch_size=4", "eval_every=2", "eval_batch_size=16",
         "labels_per_class=2", "val_per_class=1", "tensorboard=false", "threads=1"]


@pytest.fixture(autouse=True)
def no_system_datasets(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path_factory.mktemp("no-system"))


@pytest.mark.parametrize("name, dataset, classes, total_labels, gamma, weight_decay", PAPER)
def test_paper_config_has_the_published_hyperparameters(name, dataset, classes, total_labels, gamma, weight_decay):
    cfg = config.load_config(CONFIGS / name, [])
    assert (cfg.dataset, cfg.model, cfg.method) == (dataset, "convlarge", "meta_pl_mixup")
    assert cfg.labels_per_class * classes == total_labels
    assert (cfg.method_cfg.gamma, cfg.weight_decay) == (gamma, weight_decay)
    assert (cfg.steps, cfg.batch_size, cfg.u_batch_size, cfg.lr, cfg.momentum, cfg.nesterov) == \
        (400_000, 128, 128, 0.1, 0.9, False)
    s = cfg.schedule
    assert (s.name, s.warmup_steps, s.milestones, s.gamma) == ("step", 4000, [300_000, 350_000], 0.1)
    assert (cfg.method_cfg.rampup_steps, cfg.method_cfg.meta_lr, cfg.method_cfg.fd_radius) == (4000, None, 0.01)
    assert cfg.augment.translate == 4 and cfg.augment.flip == ("off" if dataset == "svhn" else "on")


def paper_config_files():
    names = [p for p, *_ in PAPER]
    if "imagenet" in sources.DATASETS:
        names.append("meta_pl_mixup-imagenet10.yaml")
    return names


@pytest.mark.parametrize("name", paper_config_files())
def test_paper_config_trains_two_steps_on_files_in_the_real_format(name, tmp_path):
    cfg = config.load_config(CONFIGS / name, [])
    WRITERS[cfg.dataset](tmp_path, np.random.default_rng(0))
    cfg = config.load_config(CONFIGS / name, SMALL + [f"data_root={tmp_path}"])
    rundir.prepare_new(tmp_path / "run", cfg, overwrite=False)
    final = Trainer(cfg, tmp_path / "run").fit()
    assert final["steps"] == 2 and final["method"] == "meta_pl_mixup" and 0 <= final["test_error"] <= 100
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
