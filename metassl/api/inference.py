"""A trained run as one module: raw inputs in, class probabilities out.

`SSLClassifier.predict_proba`, `metassl predict` and the exported ONNX/TorchScript files all
run this same module, so they read inputs exactly as training did:

* images: uint8 (or 0..255-valued float) N x C x H x W at the run's size, divided by 255 and
  normalised with the training data's per-channel mean and std;
* feature vectors (runs of `SSLClassifier.fit` on N x D arrays): float N x D, encoded into
  8-bit 1 x S x S images by `metassl.data.vectors.VectorEncoder` first.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn

from metassl.config import TrainConfig
from metassl.data.images import IMAGE_SUFFIXES
from metassl.data.runinfo import load_data_info
from metassl.data.vectors import VectorEncoder  # noqa: F401  (part of this module's API)
from metassl.engine import checkpoint as ckpt
from metassl.engine import rundir
from metassl.errors import CheckpointError, ConfigError, MetasslError
from metassl.models import create_model


class Classifier(nn.Module):
    """Raw inputs -> softmax probabilities N x K (see the module docstring for the inputs)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 encoder: Optional[VectorEncoder] = None):
        super().__init__()
        self.model, self.encoder = model, encoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            x = self.encoder(x)
        # The same arithmetic as the engine's Augmenter.normalize.
        x = (x.float() / 255.0 - self.mean) / self.std
        return torch.softmax(self.model(x).float(), dim=1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        device = self.mean.device
        outs = [self(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, len(self.model.head.bias))


class LoadedRun(NamedTuple):
    classifier: Classifier
    info: dict          # data_info.json
    cfg: TrainConfig
    step: int           # the step whose weights were selected


def build_classifier(cfg: TrainConfig, info: dict, state: dict, source: Path) -> Classifier:
    hw = tuple(int(d) for d in info["image_hw"])
    model = create_model(cfg.model, int(info["in_channels"]), len(info["classes"]), hw)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint: weights in {source} do not fit model {cfg.model!r}: "
                              f"{rundir.state_dict_mismatch(exc)}") from None
    vectors = info.get("vectors")
    encoder = VectorEncoder(vectors["mean"], vectors["std"]) if vectors else None
    return Classifier(model, info["mean"], info["std"], encoder).eval().requires_grad_(False)


def load_run(run: Path, device: torch.device | str = "cpu") -> LoadedRun:
    """A run directory's selected weights (best.pt: the EMA weights where the run used EMA)."""
    cfg = rundir.load_run_config(run)
    info = load_data_info(run)
    source = rundir.weights_file(run, "best.pt", cfg)
    state = ckpt.load(source, ckpt.WEIGHTS_FORMAT)
    rundir.check_written_by(source, state, cfg)
    classifier = build_classifier(cfg, info, state["model"], source).to(device)
    return LoadedRun(classifier, info, cfg, int(state.get("step", 0)))


def _data_root(run: Path) -> Optional[Path]:
    """The run's data_root as a resolved path, or None (none set, or no readable config: loading
    the run names that)."""
    try:
        root = rundir.load_run_config(run).data_root
    except Exception:  # noqa: BLE001 - load_run reports a bad run with its own message
        return None
    return Path(root).expanduser().resolve() if root else None


def output_temp(out: Path, command: str) -> Path:
    """Create ``out``'s folder and the temporary file the command writes before it replaces ``out``
    (the caller removes it); a folder that cannot be made or written is a one-line error naming
    ``out``, before any work."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (out.parent, *out.parent.parents) if p.exists() and not p.is_dir()), out.parent)
        raise MetasslError(f"{command}: cannot write {out}: {blocking} is a file, not a folder") from None
    except OSError as exc:
        raise MetasslError(f"{command}: cannot write {out}: {exc.strerror or exc}") from None
    return tmp


def check_output_file(out: Path, command: str, run: Path, inputs: list[Path] = ()) -> None:
    """Refuse an ``--out`` that names no file, or one whose writing would destroy what the command
    reads or the run needs: one of its inputs, one of the run's own files, its data_root file or an
    image in its data_root folder. Other existing files are replaced."""
    if out.name in ("", ".", "..") or out.is_dir():
        raise ConfigError(f"{command}: --out {out} is a directory, not a file name; "
                          "give the file to write")
    target, home = out.resolve(), run.resolve()
    own = rundir.RUN_FILES + rundir.REPORT_FILES + (rundir.LOCK_FILE,)
    if target.parent == home and target.name in own or target.is_relative_to(home / "tensorboard"):
        raise ConfigError(f"{command}: --out {out} is one of the run's own files; give another file name")
    for path in inputs:
        # an image file inside an input folder is (or would become) an input
        inside = path.is_dir() and target.is_relative_to(path.resolve()) and target.suffix.lower() in IMAGE_SUFFIXES
        if path.exists() and (target == path.resolve() or inside):
            raise ConfigError(f"{command}: --out {out} is one of the inputs; write it elsewhere")
    data = _data_root(run)
    if data is not None and (target == data or data.is_dir() and target.is_relative_to(data)
                             and target.suffix.lower() in IMAGE_SUFFIXES):
        raise ConfigError(f"{command}: --out {out} is (or would join) the run's training data "
                          f"(data_root {data}); write it elsewhere")
