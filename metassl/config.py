"""Typed run configuration: dataclasses validated from YAML files and ``key=value`` overrides.

Every key is checked against the schema: an unknown key, a value of the wrong type or one out
of range raises :class:`ConfigError` with a one-line message naming the dotted key.
Method hyperparameters live in a section named after the method (``mixup.alpha=0.4``) and are
validated against that method's own ``Config`` dataclass.
"""
from __future__ import annotations

import dataclasses
import json
import os
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from metassl.errors import ConfigError, did_you_mean


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def bounded(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """A dataclass field whose value must lie in [lo, hi] (or (lo, hi] with ``lo_open``)."""
    return field(default=default, metadata=_range(lo, hi, lo_open=lo_open))


# Lengths within a run. Every length NAME is a pair of keys: ``NAME_fraction``, a share of the run's
# ``steps`` (the default), and ``NAME_steps``, a count of steps (null unless set). Setting both is a
# config error; ``run_length`` resolves the pair for a given run.
def run_fraction(default: float):
    """``NAME_fraction``: a length as a share of the run, in [0, 1]."""
    return field(default=default, metadata={**_range(0.0, 1.0), "length": "fraction"})


def step_count(default: Optional[int] = None):
    """``NAME_steps``: a length as a count of steps; null means its ``NAME_fraction`` applies."""
    return field(default=default, metadata={**_range(0), "length": "steps"})


def run_length(cfg: Any, name: str, total_steps: int) -> int:
    """The length ``name`` of ``cfg`` in steps, for a run of ``total_steps``."""
    count = getattr(cfg, f"{name}_steps")
    if count is not None:
        return int(count)
    return int(round(getattr(cfg, f"{name}_fraction") * total_steps))


@dataclass
class ScheduleConfig:
    # After the warm-up: constant, cosine to 0, FixMatch's cosine that ends at 0.195 lr
    # (truncated_cosine), or step decay.
    name: Literal["constant", "cosine", "truncated_cosine", "step"] = "cosine"
    warmup_fraction: float = run_fraction(0.0)
    warmup_steps: Optional[int] = step_count()
    # ``step`` decay points as step counts (or give milestones_fraction, not both).
    milestones: list[int] = field(default_factory=list)
    # ``step`` decay points as shares of the run (instead of milestones).
    milestones_fraction: list[float] = field(default_factory=list, metadata={"length": "fraction"})
    # ``step``: the lr is multiplied by gamma at each milestone.
    gamma: float = field(default=0.1, metadata=_range(0.0, 1.0, lo_open=True))


@dataclass
class AugmentConfig:
    flip: Literal["auto", "on", "off"] = "auto"  # random horizontal flip; auto: where the dataset allows it
    # Random shift in pixels; null: 1/16 of the image side, at least 1 (1 for 8x8 digits, 2 for 28x28
    # and 32x32 images: the 2-pixel translation of CIFAR-scale SSL protocols, scaled with the image).
    translate: Optional[int] = field(default=None, metadata=_range(0, 64))
    noise: float = field(default=0.0, metadata=_range(0.0))  # std of Gaussian noise on the normalised images
    # Feature vectors only (their views; flip and translate do not apply to them): Gaussian noise,
    # in standard deviations of each feature.
    vector_noise: float = field(default=0.2, metadata=_range(0.0))
    # Feature vectors: share of features set to their mean.
    vector_dropout: float = field(default=0.1, metadata=_range(0.0, 0.5))


@dataclass
class TrainConfig:
    dataset: str = "digits"  # a built-in dataset or an on-disk format; `metassl list` names them
    # Where the dataset's files are looked for: the folder or file of an on-disk format.
    data_root: Optional[str] = None
    svhn_extra: bool = False  # svhn: add extra_32x32.mat to the training images
    cifar100_coarse: bool = False  # cifar100: its 20 superclasses as the labels, not its 100 classes
    # Image files (imagefolder, csv, imagenet) are resized to image_size x image_size; null keeps
    # their size, which must then be the same for all. Arrays (npz) always keep theirs.
    image_size: Optional[int] = field(default=32, metadata=_range(8))
    # Image files: 1 (grayscale) or 3 (RGB); null means RGB if any image has colour, else grayscale.
    channels: Optional[Literal[1, 3]] = None
    # Share of each class's labeled examples held out as the test set when the data has none.
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.9))
    # Share of each class's ImageNet training images that is read at all.
    imagenet_fraction: float = field(default=1.0, metadata=_range(0.0, 1.0, lo_open=True))
    # Labeled examples kept per class; null: all not in validation. Unset, it is null for the
    # user's own labels (imagefolder, csv, npz: every label given is used) and 10 otherwise.
    labels_per_class: Optional[int] = field(default=10, metadata=_range(1))
    # Validation examples per class, from the labeled ones.
    val_per_class: int = field(default=10, metadata=_range(0))
    model: str = "mlp"  # the network; `metassl list` names them (mlp for feature vectors)
    method: str = "supervised"  # the training method; its own keys are the section named after it
    steps: int = field(default=1000, metadata=_range(1))  # training iterations
    batch_size: int = field(default=64, metadata=_range(1))  # labeled examples per step
    # Unlabeled examples per step; null: batch_size times the method's ratio (7 for fixmatch, uda, flexmatch, freematch and softmatch; else 1).
    unlabeled_batch_size: Optional[int] = field(default=None, metadata=_range(1))
    # SGD learning rate, before the schedule.
    lr: float = field(default=0.05, metadata=_range(0.0, lo_open=True))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))  # SGD momentum
    nesterov: bool = True  # Nesterov momentum
    weight_decay: float = field(default=5e-4, metadata=_range(0.0))  # SGD weight decay
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Evaluate an EMA of the weights with this decay; 0: off.
    ema_decay: float = field(default=0.0, metadata=_range(0.0, 1.0))
    # Cap on the EMA's time constant 1/(1 - decay) (metassl/engine/ema.py); a length of 0: no cap.
    ema_horizon_fraction: float = run_fraction(0.05)
    ema_horizon_steps: Optional[int] = step_count()
    eval_every: int = field(default=200, metadata=_range(1))  # steps between evaluations
    eval_batch_size: int = field(default=256, metadata=_range(1))  # batch size of evaluation and prediction
    log_every: int = field(default=50, metadata=_range(1))  # steps between progress lines
    # Steps between checkpoints; null: eval_every.
    checkpoint_every: Optional[int] = field(default=None, metadata=_range(1))
    select: Literal["val", "last"] = "val"  # weights reported: lowest validation error, or the last step's
    seed: int = field(default=0, metadata=_range(0, 2**32 - 1))  # fixes the split, the initialisation and the data order
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA where present
    threads: Optional[int] = field(default=None, metadata=_range(1))  # CPU threads; null: torch's default
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # mixed precision; auto: bf16 on CUDA, off on a CPU
    # NHWC layout for image models: null = on CUDA only (on CPUs it slows the steps that differentiate
    # through a gradient by 16-47% and leaves plain steps within 10%), true = every device, false = never.
    channels_last: Optional[bool] = None
    # torch.compile the model's passes where the method's step allows it (not through a double
    # backward); auto: only runs of at least 10000 steps, long enough to repay the compile time.
    compile: Literal["off", "on", "auto"] = "off"
    tensorboard: bool = True  # write TensorBoard scalars
    # Filled from the section named after ``method``; validated by that method's Config.
    method_cfg: Any = field(default=None, metadata={"internal": True})

    @property
    def u_batch_size(self) -> int:
        """``unlabeled_batch_size``, or the method's own ratio (FixMatch's μ = 7) times ``batch_size``."""
        if self.unlabeled_batch_size:
            return self.unlabeled_batch_size
        from metassl.methods import METHODS

        return self.batch_size * METHODS.get(self.method).unlabeled_ratio


class NotFinite(ConfigError):
    """A float key given NaN or an infinity."""


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
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # np.int64(3), np.float32(0.1), np.bool_(True): as the Python scalar
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config: {key}={value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        members = typing.get_args(tp)
        if isinstance(value, bool):
            # YAML reads on/off, yes/no and true/false as booleans: take the member so spelled.
            spelled = [m for m in (("on", "true", "yes") if value else ("off", "false", "no")) if m in members]
            if spelled:
                return spelled[0]
        elif value in members:
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
            except NotFinite:
                raise
            except ConfigError:
                pass
        raise bad
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            try:
                value = yaml_value(value) if value.strip() else []
            except yaml.YAMLError:
                raise bad from None
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
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise bad from None
        else:
            raise bad
        # NaN compares false with every bound, so the range check alone would let it through.
        if not math.isfinite(number):
            raise NotFinite(f"config: {key}={value!r} is not a finite number")
        return number
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


def _keyed(exc: ConfigError, key: Optional[str]) -> ConfigError:
    """``exc`` marked as the fault of ``key`` (where it has no key yet), so that a config file
    holding that key is named in the message."""
    if key and getattr(exc, "key", None) is None:
        exc.key = key
    return exc


def build_dataclass(cls: type, data: Any, prefix: str = "") -> Any:
    """Validate a mapping against dataclass ``cls`` (recursively) and return an instance."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _keyed(ConfigError(f"config: {prefix or 'config'} must be a mapping, got {data!r}"), prefix or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        try:
            if name not in fields:
                known = f"known keys: {', '.join(fields)}" if fields else f"{prefix or 'config'} has no keys of its own"
                raise ConfigError(f"config: unknown key {key!r}{did_you_mean(name, fields, prefix)}; {known}")
            kwargs[name] = _coerce(value, hints[name], key)
            _check_range(kwargs[name], fields[name].metadata, key)
        except ConfigError as exc:  # the innermost key, for load_config to name the file it came from
            exc.key = getattr(exc, "key", None) or key
            raise
    for name in kwargs:
        if fields[name].metadata.get("length") == "fraction":
            stem = name[: -len("_fraction")]
            twin = f"{stem}_steps" if f"{stem}_steps" in fields else stem if stem in fields else None
            # A fraction at its default is no second length: a saved config (a run's config.yaml,
            # a checkpoint's) writes it beside the step count that the run was given.
            if (twin is not None and twin in kwargs and kwargs[twin] not in (None, [])
                    and kwargs[name] not in (None, []) and kwargs[name] != _default(fields[name])):
                where = f"{prefix}." if prefix else ""
                raise ConfigError(f"config: {where}{twin} and {where}{name} both set; give the length "
                                  "as a step count or as a fraction of the run, not both")
    return cls(**kwargs)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("internal")}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested mapping as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


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
            value = yaml_value(raw) if raw != "" else ""
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


_INT = "tag:yaml.org,2002:int"
_INT_TEXT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")


class _Loader(yaml.SafeLoader):
    """YAML's safe loader with YAML 1.2's integers: digits are decimal even with leading zeros
    (``steps: 020`` is 20, where YAML 1.1 reads octal 16), octal needs ``0o`` and hex ``0x``;
    ``1:30`` (1.1's base 60) stays text, which a key of numbers refuses."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_INT, _INT_TEXT, list("-+0123456789"))


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_Loader.add_constructor(_INT, _construct_int)


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper quoting every text that either reading takes for a number ("08")."""


_Dumper.add_implicit_resolver(_INT, _INT_TEXT, list("-+0123456789"))


def yaml_value(text: str) -> Any:
    """One YAML document read as a config file is (YAML 1.2's integers; see ``_Loader``)."""
    return yaml.load(text, Loader=_Loader)


def yaml_text(data: Any, sort_keys: bool = True) -> str:
    """``data`` as YAML that ``yaml_value`` (and YAML 1.1's readers) read back unchanged."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys)


class _UniqueKeyLoader(_Loader):
    """YAML's safe loader, but a key given twice in one mapping is an error rather than the last
    one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # << *anchor: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            # by position, so that two keys on one line ({steps: 20, steps: 30}) collide too
            where = (key_node.start_mark.line, key_node.start_mark.column)
            try:
                first = seen.setdefault(key, where)
            except TypeError:  # an unhashable key: left to the base class's own error
                continue
            if first != where:
                raise _DuplicateKey(key, first[0] + 1, where[0] + 1)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        super().__init__(key, first, again)
        self.key, self.first, self.again = key, first, again


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config: {path} is not a UTF-8 text file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"config: {path} line {exc.again}: key {exc.key!r} is given twice "
                          f"(first on line {exc.first})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path}{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _nest(tree: dict, path: Path) -> dict:
    """``tree`` with dotted keys (``mixup.alpha: 0.4``, as on the command line) nested as sections;
    a key set both ways is an error naming it."""
    out: dict = {}

    def leaves(node: dict, prefix: tuple) -> typing.Iterator[tuple[tuple, Any]]:
        for key, value in node.items():
            parts = prefix + tuple(str(key).split("."))
            if any(not p for p in parts):
                raise ConfigError(f"config: {path}: key {'.'.join(parts)!r} has an empty part")
            if isinstance(value, dict) and value:
                yield from leaves(value, parts)
            else:
                yield parts, value

    for parts, value in leaves(tree, ()):
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config: {path}: {'.'.join(parts[:i + 1])} is set to a value, so "
                                  f"{'.'.join(parts)} cannot be set in it")
        if parts[-1] in node:
            if value == {} and isinstance(node[parts[-1]], dict):
                continue  # an empty section beside keys set in it adds nothing
            raise ConfigError(f"config: {path}: key {'.'.join(parts)} is given twice")
        node[parts[-1]] = value
    return out


def _check_schedule(s: ScheduleConfig) -> None:
    for key in ("milestones", "milestones_fraction"):
        points = getattr(s, key)
        if points and s.name != "step":
            raise _keyed(ConfigError(f"config: schedule.{key}={points} applies only to schedule.name=step, "
                                     f"not {s.name}; drop it or set schedule.name=step"), f"schedule.{key}")
        if any(b <= a for a, b in zip(points, points[1:])):
            raise _keyed(ConfigError(f"config: schedule.{key}={points} must be increasing"), f"schedule.{key}")
    if any(not 0.0 <= f <= 1.0 for f in s.milestones_fraction):
        raise _keyed(ConfigError(f"config: schedule.milestones_fraction={s.milestones_fraction}: each must lie "
                                 "in [0, 1]"), "schedule.milestones_fraction")


def check_new(cfg: TrainConfig, *, in_suite: bool = False) -> None:
    """The checks of a new run's config beyond each value's own: a saved run's config is read
    without them, so that a run trained under looser rules stays readable. ``in_suite``: a
    suite's runs share one ``data_root`` (where the machine keeps its data), used by those that
    read files."""
    _check_schedule(cfg.schedule)
    check_selection(cfg)
    if cfg.data_root is not None and not str(cfg.data_root).strip():
        raise _keyed(ConfigError(f"config: data_root={json.dumps(cfg.data_root)} names no file or folder; give "
                                 "a path, or leave data_root unset for the dataset's own place"), "data_root")
    check_data_keys(cfg, skip=("data_root",) if in_suite else ())
    check = getattr(cfg.method_cfg, "check", None)
    if check is not None:
        check(cfg.steps)


def check_selection(cfg: TrainConfig) -> None:
    """Selecting weights on the validation split needs one."""
    if cfg.select == "val" and cfg.val_per_class == 0:
        raise ConfigError("config: select='val' needs val_per_class >= 1 (or use select=last)")


def check_data_keys(cfg: TrainConfig, skip: tuple[str, ...] = ()) -> None:
    """A data key set away from its default for a dataset that does not read it is an error, not
    a setting recorded in config.yaml that changed nothing."""
    from metassl.data.sources import key_datasets

    defaults = TrainConfig()
    for key, datasets in key_datasets().items():
        if key in skip:
            continue
        value = getattr(cfg, key)
        if value != getattr(defaults, key) and cfg.dataset not in datasets:
            exc = ConfigError(f"config: {key}={json.dumps(value)} does not apply to dataset={cfg.dataset}; it applies to "
                              f"{', '.join(datasets)}")
            exc.key = key
            raise exc


# Datasets whose labels are the user's own, each one given on purpose: `labels_per_class`
# left unset keeps them all (the benchmarks' datasets keep 10 a class).
OWN_LABELS = ("imagefolder", "csv", "npz")


def resolve(raw: dict) -> TrainConfig:
    """Build a validated TrainConfig from a nested mapping (file merged with overrides)."""
    from metassl.data.sources import DATASETS
    from metassl.methods import METHODS
    from metassl.models import MODELS

    raw = dict(raw)
    if "labels_per_class" not in raw and raw.get("dataset") in OWN_LABELS:
        raw["labels_per_class"] = None
    sections = {name: raw.pop(name) for name in list(raw) if name in METHODS}
    cfg = build_dataclass(TrainConfig, raw)
    try:
        method_cls = METHODS.get(cfg.method)
    except ConfigError as exc:
        raise _keyed(exc, "method") from None
    try:
        MODELS.get(cfg.model)
    except ConfigError as exc:
        raise _keyed(exc, "model") from None
    if cfg.dataset not in DATASETS:
        raise _keyed(ConfigError(f"config: dataset={cfg.dataset!r} is unknown{did_you_mean(cfg.dataset, DATASETS)}; "
                                 f"choose from {', '.join(DATASETS)}"), "dataset")
    for name, section in sections.items():
        built = build_dataclass(METHODS.get(name).Config, section, name)
        if name != cfg.method:
            raise _keyed(ConfigError(f"config: section {name!r} does not apply to method={cfg.method}; drop it, "
                                     f"or set method={name} (metassl config {cfg.method} lists this run's keys)"),
                         name)
        cfg.method_cfg = built
    if cfg.method_cfg is None:
        cfg.method_cfg = method_cls.Config()
    plugin = getattr(cfg.method_cfg, "meta_gradient", False)
    if cfg.amp == "fp16" and (method_cls.meta_gradient or plugin):
        what = f"{cfg.method}.meta_gradient=true" if plugin else f"method={cfg.method}"
        raise _keyed(ConfigError(f"config: amp='fp16' does not suit {what}: its look-ahead gradients "
                                 "are taken without loss scaling and underflow in float16; use amp=bf16 or amp=off"),
                     "amp")
    return cfg


def dump(cfg: TrainConfig) -> dict:
    out = to_dict(cfg)
    out[cfg.method] = to_dict(cfg.method_cfg)
    return out


def anchored(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with a relative ``data_root`` made absolute (against the working directory), so that
    the run's saved config finds its data from wherever it is later evaluated or resumed."""
    if cfg.data_root is None:
        return cfg
    root = os.path.abspath(Path(cfg.data_root).expanduser())
    return cfg if root == cfg.data_root else dataclasses.replace(cfg, data_root=root)


def load_config(paths: str | Path | list | None, overrides: list[str]) -> TrainConfig:
    """The config of YAML files ``paths`` (in order, a later file's keys over an earlier's) and
    ``key=value`` ``overrides`` over them. A bad value is named with the file it came from."""
    files = [paths] if isinstance(paths, (str, Path)) else list(paths or [])
    trees = [(Path(p), _nest(load_yaml(p), Path(p))) for p in files]
    extra = parse_overrides(overrides)
    raw: dict = {}
    for _, tree in trees:
        raw = merge(raw, tree)
    try:
        cfg = resolve(merge(raw, extra))
        check_new(cfg)
        return cfg
    except ConfigError as exc:
        key = getattr(exc, "key", None)
        if key and _holds(extra, key):
            typed = _as_typed(exc, key, overrides)
            if typed is not None:
                raise typed from None
        source = next((p for p, tree in reversed(trees) if _holds(tree, key)), None) if key else None
        # the message without its prefix: "config: " or, of a registry (methods, models), the key's
        prefix = next((f for f in ("config: ", f"{key}: ") if str(exc).startswith(f)), None)
        if source is None or _holds(extra, key) or prefix is None:
            raise
        named = ConfigError(f"config: {source}: {str(exc)[len(prefix):]}")
        named.key = key
        raise named from None


def _as_typed(exc: ConfigError, key: str, overrides: list[str]) -> Optional[ConfigError]:
    """``exc`` with the override's value as typed beside the value YAML read from it where YAML
    turned a word into true, false or null (``amp=yes`` read as True), so the message does not
    show only a value never written; else None."""
    typed = [item.partition("=")[2] for item in overrides if item.partition("=")[0] == key]
    if not typed:
        return None
    value = parse_overrides([f"x={typed[-1]}"])["x"]
    if not (isinstance(value, bool) or value is None) or typed[-1].lower() in ("true", "false", "null", ""):
        return None
    named = ConfigError(f"{exc} (the command line's {key}={typed[-1]}, which YAML reads as {value!r})")
    named.key = key
    return named


def _holds(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
