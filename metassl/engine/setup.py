"""What training, evaluation and export share: device, data on the device, split, model."""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from metassl.config import TrainConfig
from metassl.data.arrays import ArrayDataset
from metassl.data.augment import Augmenter
from metassl.data.images import _listing
from metassl.data.runinfo import DATA_INFO, load_data_info
from metassl.data.sources import dataset_options, load_dataset
from metassl.data.splits import Split, data_identity, labels_digest, load_split, make_split, save_split
from metassl.errors import ConfigError, DataError
from metassl.models import MIN_IMAGE_SIZE, create_model


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config: device='cuda' but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"config: device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def device_memory(device: torch.device) -> Optional[int]:
    """Bytes of memory the device has (a CPU: the machine's physical memory), or None where unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError, RuntimeError):
        pass
    return None


def check_batch_fits(cfg: TrainConfig, images: int, shape: tuple, device: torch.device) -> None:
    """A step's ``images`` inputs of ``shape`` held once as float32 (the augmented batch, before
    any activation) larger than the device's whole memory is a one-line error naming batch_size,
    not a process the kernel kills without a word. A batch that passes may still not fit: the
    step's own out-of-memory error then names it."""
    memory = device_memory(device)
    need = images * 4 * int(torch.Size(shape).numel())
    if memory is not None and need > memory:
        unlabeled = images - cfg.batch_size
        what = f"{cfg.batch_size} labeled" + (f" + {unlabeled} unlabeled" if unlabeled else "")
        raise ConfigError(f"config: batch_size={cfg.batch_size} is too large: a step's {what} inputs of "
                          f"{tuple(shape)} take {need / 2**30:.1f} GiB as float32 alone, more than the "
                          f"{memory / 2**30:.1f} GiB of memory of {device}")


def autocast_for(cfg: TrainConfig, device: torch.device) -> tuple[Callable, Optional[torch.dtype]]:
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if amp == "off":
        return nullcontext, None
    if device.type != "cuda" and amp == "fp16":
        raise ConfigError("config: amp='fp16' needs a CUDA device; use amp=bf16 or amp=off on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype), dtype


@dataclass
class RunSetup:
    cfg: TrainConfig
    device: torch.device
    data: ArrayDataset
    split: Split
    x: torch.Tensor            # all training images (uint8) on the device
    y: torch.Tensor
    x_test: Optional[torch.Tensor]
    y_test: Optional[torch.Tensor]
    model: nn.Module
    augmenter: Augmenter
    autocast: Callable
    amp_dtype: Optional[torch.dtype]

    @property
    def x_val(self) -> torch.Tensor:
        return self.x[self.split.val.to(self.device)]

    @property
    def y_val(self) -> torch.Tensor:
        return self.y[self.split.val.to(self.device)]


def use_channels_last(setting: Optional[bool], device: torch.device) -> bool:
    """The ``channels_last`` key: null lays images and conv weights out NHWC on CUDA only."""
    return device.type == "cuda" if setting is None else setting


def size_of_test_set(data: ArrayDataset) -> int:
    return 0 if data.y_test is None else len(data.y_test)


def write_split(cfg: TrainConfig, split: Split, run_dir: Path, data: ArrayDataset) -> None:
    save_split(split, run_dir / "split.json", dataset=cfg.dataset, seed=cfg.seed,
               labels_per_class=cfg.labels_per_class, val_per_class=cfg.val_per_class,
               labels_digest=labels_digest(split, data.y_train),
               **data_identity(data.y_train, size_of_test_set(data)))


def check_classes(data: ArrayDataset, run_dir: Path) -> None:
    """Refuse data whose classes are not those the run in ``run_dir`` was trained on, in their
    order (its data_info.json's): the model has one output per class. A run without the file passes."""
    if not (run_dir / DATA_INFO).is_file():
        return
    trained, now = [str(c) for c in load_data_info(run_dir)["classes"]], [str(c) for c in data.classes]
    if now == trained:
        return
    diff = []
    new, gone = [c for c in now if c not in trained], [c for c in trained if c not in now]
    for names, what in ((new, "new"), (gone, "missing")):
        if names:
            diff.append(f"{_listing(names)} {'is' if len(names) == 1 else 'are'} {what}")
    raise DataError(f"data: {data.name} has the classes {_listing(now)}; run {run_dir} was trained on "
                    f"{_listing(trained)} ({'; '.join(diff) or 'in another order'})")


def translation(setting: Optional[int], hw: tuple[int, int]) -> int:
    """The ``augment.translate`` key: null is 1/16 of the shorter image side, at least one pixel."""
    return setting if setting is not None else max(1, round(min(hw) / 16))


def build(cfg: TrainConfig, run_dir: Optional[Path], *, reuse_split: bool,
          data: Optional[ArrayDataset] = None) -> RunSetup:
    """Load the data (unless given), make (or reload) the split, build the model; nothing is trained."""
    device = pick_device(cfg.device)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_root, **dataset_options(cfg))
    split_path = run_dir / "split.json" if run_dir is not None else None
    if reuse_split and split_path is not None and split_path.exists():
        check_classes(data, run_dir)
        split = load_split(split_path, len(data.y_train), data.y_train, size_of_test_set(data))
    else:
        split = make_split(data.y_train, data.classes, cfg.labels_per_class, cfg.val_per_class, cfg.seed,
                           held_out=data.test_held_out)
        if split_path is not None:
            write_split(cfg, split, run_dir, data)
    channels_last = use_channels_last(cfg.channels_last, device) and data.x_train.dim() == 4
    if min(data.image_hw) < MIN_IMAGE_SIZE:  # before the model says it of its own image_size
        h, w = data.image_hw
        raise DataError(f"data: {data.name} holds {h} x {w} images; the models take images of at least "
                        f"{MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE} (pad or upscale them)")
    model = create_model(cfg.model, data.in_channels, data.num_classes, data.image_hw).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    flip = cfg.augment.flip == "on" or (cfg.augment.flip == "auto" and data.hflip)
    augmenter = Augmenter(data.mean, data.std, flip=flip, translate=translation(cfg.augment.translate, data.image_hw),
                          noise=cfg.augment.noise, device=device, channels_last=channels_last,
                          vector_features=data.vector_features, vector_noise=cfg.augment.vector_noise,
                          vector_dropout=cfg.augment.vector_dropout)
    autocast, amp_dtype = autocast_for(cfg, device)
    to_dev = (lambda t: t.to(device) if t is not None else None)
    return RunSetup(cfg, device, data, split, to_dev(data.x_train), to_dev(data.y_train),
                    to_dev(data.x_test), to_dev(data.y_test), model, augmenter, autocast, amp_dtype)
