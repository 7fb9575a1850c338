"""Run directories: creation without clobbering, resuming, and re-evaluation."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from metassl import config as config_mod
from metassl.config import TrainConfig
from metassl.engine import checkpoint as ckpt
from metassl.engine.evaluate import error_rate
from metassl.engine.setup import RunSetup, build
from metassl.errors import CheckpointError, ConfigError

RUN_FILES = ("config.yaml", "split.json", "checkpoint.pt", "best.pt", "final.json", "metrics.jsonl",
             "data_info.json", "lambdas.jsonl")
RESUMABLE_KEYS = {"steps", "device", "eval_every", "log_every", "checkpoint_every", "tensorboard"}


def default_run_dir(cfg: TrainConfig) -> Path:
    labels = "all" if cfg.labels_per_class is None else cfg.labels_per_class
    return Path("runs") / f"{cfg.dataset}-{cfg.method}-{cfg.model}-l{labels}-s{cfg.seed}"


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def prepare_new(path: Path, cfg: TrainConfig, *, overwrite: bool) -> bool:
    """Make ``path`` ready for a new run; returns whether the directory was created here."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"train: --out {path} exists and is not a directory")
    if holds_run(path):
        if not overwrite:
            raise ConfigError(f"train: {path} already holds a run; continue it with --resume {path} "
                              f"or replace it with --overwrite")
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        shutil.rmtree(path / "tensorboard", ignore_errors=True)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, cfg)
    return created


def write_config(path: Path, cfg: TrainConfig) -> None:
    (path / "config.yaml").write_text(yaml.safe_dump(config_mod.dump(cfg), sort_keys=False))


def load_run_config(path: Path, overrides: dict | None = None) -> TrainConfig:
    if not (path / "config.yaml").is_file():
        raise CheckpointError(f"run: {path} holds no config.yaml; is it a metassl run directory?")
    raw = config_mod.load_yaml(path / "config.yaml")
    for key in overrides or {}:
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"config: {key!r} cannot change when resuming; only "
                              f"{', '.join(sorted(RESUMABLE_KEYS))} can")
    return config_mod.resolve(config_mod.merge(raw, overrides or {}))


def load_run(path: Path, weights: str = "selected", device: str | None = None) -> tuple[RunSetup, int]:
    """A run's data, split and model with its saved weights loaded (the validation-selected
    ``best.pt``, or the last checkpoint's, EMA where the run used it); the model is in eval mode."""
    cfg = load_run_config(path, {"device": device} if device else {})
    if not (path / "split.json").is_file():
        raise CheckpointError(f"run: {path} holds no split.json")
    if weights == "selected":
        state = ckpt.load(path / "best.pt", ckpt.WEIGHTS_FORMAT)
        model_state, step = state["model"], state["step"]
    else:
        state = ckpt.load(path / "checkpoint.pt")
        model_state, step = state["ema"] or state["model"], state["step"]
    s = build(cfg, path, reuse_split=True)
    try:
        s.model.load_state_dict(model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint: weights in {path} do not fit model {cfg.model!r}: "
                              f"{str(exc).splitlines()[0]}") from None
    s.model.eval()
    return s, step


def evaluate_run(path: Path, weights: str = "selected", device: str | None = None) -> dict:
    """Recompute a run's validation and test error from its saved weights."""
    s, step = load_run(path, weights, device)
    norm, bs = s.augmenter.normalize, s.cfg.eval_batch_size
    out = {
        "run": str(path), "weights": weights, "step": step,
        "val_error": error_rate(s.model, s.x_val, s.y_val, norm, bs, s.autocast),
        "test_error": error_rate(s.model, s.x_test, s.y_test, norm, bs, s.autocast),
    }
    final = path / "final.json"
    if final.exists():
        out["final_json_test_error"] = json.loads(final.read_text()).get("test_error")
    return out
