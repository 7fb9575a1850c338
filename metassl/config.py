"""Typed run configuration: dataclasses validated from YAML files and ``key=value`` overrides.

Every key is checked against the schema: an unknown key, a value of the wrong type or one out
of range raises :class:`ConfigError` with a one-line message naming the dotted key.
Method hyperparameters live in a section named after the method (``mixup.alpha=0.4``) and are
validated against that method's own ``Config`` dataclass.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from metassl.errors import ConfigError


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def bounded(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """A dataclass field whose value must lie in [lo, hi] (or (lo, hi] with ``lo_open``)."""
    return field(default=default, metadata=_range(lo, hi, lo_open=lo_open))


@dataclass
class ScheduleConfig:
    name: Literal["constant", "cosine", "step"] = "cosine"
    warmup_steps: int = field(default=0, metadata=_range(0))
    milestones: list[int] = field(default_factory=list)
    gamma: float = field(default=0.1, metadata=_range(0.0, 1.0, lo_open=True))


@dataclass
class AugmentConfig:
    flip: Literal["auto", "on", "off"] = "auto"
    translate: int = field(default=2, metadata=_range(0, 64))
    noise: float = field(default=0.0, metadata=_range(0.0))


@dataclass
class TrainConfig:
    dataset: str = "digits"
    data_root: Optional[str] = None
    svhn_extra: bool = False
    # Image files (imagefolder, csv, imagenet) are resized to image_size x image_size; null keeps
    # their size, which must then be the same for all. Arrays (npz) always keep theirs.
    image_size: Optional[int] = field(default=32, metadata=_range(8))
    # Image files: 1 (grayscale) or 3 (RGB); null means RGB if any image has colour, else grayscale.
    channels: Optional[Literal[1, 3]] = None
    # Share of each class's labeled examples held out as the test set when the data has none.
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.9))
    # Share of each class's ImageNet training images that is read at all.
    imagenet_fraction: float = field(default=1.0, metadata=_range(0.0, 1.0, lo_open=True))
    labels_per_class: Optional[int] = field(default=10, metadata=_range(1))
    val_per_class: int = field(default=10, metadata=_range(0))
    model: str = "mlp"
    method: str = "supervised"
    steps: int = field(default=1000, metadata=_range(1))
    batch_size: int = field(default=64, metadata=_range(1))
    unlabeled_batch_size: Optional[int] = field(default=None, metadata=_range(1))
    lr: float = field(default=0.05, metadata=_range(0.0, lo_open=True))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))
    nesterov: bool = True
    weight_decay: float = field(default=5e-4, metadata=_range(0.0))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ema_decay: float = field(default=0.0, metadata=_range(0.0, 1.0))
    eval_every: int = field(default=200, metadata=_range(1))
    eval_batch_size: int = field(default=256, metadata=_range(1))
    log_every: int = field(default=50, metadata=_range(1))
    checkpoint_every: Optional[int] = field(default=None, metadata=_range(1))
    select: Literal["val", "last"] = "val"
    seed: int = field(default=0, metadata=_range(0))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = field(default=None, metadata=_range(1))
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    # NHWC layout for image models: null = on CUDA only (on CPUs it slows the steps that differentiate
    # through a gradient by 16-47% and leaves plain steps within 10%), true = every device, false = never.
    channels_last: Optional[bool] = None
    tensorboard: bool = True
    # Filled from the section named after ``method``; validated by that method's Config.
    method_cfg: Any = field(default=None, metadata={"internal": True})

    @property
    def u_batch_size(self) -> int:
        return self.unlabeled_batch_size or self.batch_size


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config: {key}={value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config: {key}={value!r} must be one of {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or value in ("null", "none", "None"):
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise bad
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else []
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise bad
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return build_dataclass(tp, value, key)
    raise bad


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    if value is None or "lo" not in meta:
        return
    lo, hi, lo_open = meta["lo"], meta["hi"], meta["lo_open"]
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"config: {key}={value!r} is out of range: must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"config: {key}={value!r} is out of range: must be <= {hi}")


def build_dataclass(cls: type, data: Any, prefix: str = "") -> Any:
    """Validate a mapping against dataclass ``cls`` (recursively) and return an instance."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise ConfigError(f"config: unknown key {key!r}; known keys: {', '.join(fields)}")
        kwargs[name] = _coerce(value, hints[name], key)
        _check_range(kwargs[name], fields[name].metadata, key)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("internal")}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config: {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=1", "method=mixup"]`` -> nested dict with YAML-parsed values."""
    tree: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"config: override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        set_dotted(tree, key, value)
    return tree


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path}{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def resolve(raw: dict) -> TrainConfig:
    """Build a validated TrainConfig from a nested mapping (file merged with overrides)."""
    from metassl.data.sources import DATASETS
    from metassl.methods import METHODS
    from metassl.models import MODELS

    raw = dict(raw)
    sections = {name: raw.pop(name) for name in list(raw) if name in METHODS}
    cfg = build_dataclass(TrainConfig, raw)
    method_cls = METHODS.get(cfg.method)
    MODELS.get(cfg.model)
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"config: dataset={cfg.dataset!r} is unknown; choose from {', '.join(DATASETS)}")
    for name, section in sections.items():
        # Sections of other methods are validated too so that typos never pass silently.
        built = build_dataclass(METHODS.get(name).Config, section, name)
        if name == cfg.method:
            cfg.method_cfg = built
    if cfg.method_cfg is None:
        cfg.method_cfg = method_cls.Config()
    if cfg.amp == "fp16" and method_cls.meta_gradient:
        raise ConfigError(f"config: amp='fp16' does not suit method={cfg.method}: its look-ahead gradients "
                          "are taken without loss scaling and underflow in float16; use amp=bf16 or amp=off")
    return cfg


def dump(cfg: TrainConfig) -> dict:
    out = to_dict(cfg)
    out[cfg.method] = to_dict(cfg.method_cfg)
    return out


def load_config(path: str | Path | None, overrides: list[str]) -> TrainConfig:
    raw = load_yaml(path) if path else {}
    return resolve(merge(raw, parse_overrides(overrides)))
