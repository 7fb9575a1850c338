"""Run directories: creation without clobbering, resuming, and re-evaluation."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

import yaml

from metassl import config as config_mod
from metassl.config import TrainConfig
from metassl.engine import checkpoint as ckpt
from metassl.engine.evaluate import error_rate
from metassl.engine.setup import RunSetup, build
from metassl.errors import CheckpointError, ConfigError, MetasslError, out_of_memory_as
from metassl.files import atomic_write_text

RUN_FILES = ("config.yaml", "split.json", "checkpoint.pt", "best.pt", "final.json", "metrics.jsonl",
             "data_info.json", "lambdas.jsonl")
# Keys a resume may change: the run's length, where and how it runs and is logged, and where its
# data now lies. Any other key given on resume must equal the run's own value.
RESUMABLE_KEYS = {"steps", "device", "eval_every", "log_every", "checkpoint_every", "tensorboard", "compile",
                  "threads", "eval_batch_size", "data_root"}
# Config keys that may differ between a checkpoint and the run resuming it: the resumable ones
# (the split digest, checked apart, ties the run to its data wherever the data now lies).
NOT_IDENTITY_KEYS = RESUMABLE_KEYS
LOCK_FILE = ".lock"
# What ``metassl report`` writes into a run directory (metassl.report.build).
REPORT_FILES = ("report.md", "report.html", "fig_errors.png", "fig_losses.png", "fig_error_vs_labels.png",
                "fig_tsne.png", "fig_lambda_hist.png", "fig_lambda_pairs.png", "fig_mix_distance.png")
# Rows logged at each evaluation; on resume those after the checkpoint's step are dropped.
LOG_FILES = ("metrics.jsonl", "lambdas.jsonl")


def default_run_dir(cfg: TrainConfig) -> Path:
    labels = "all" if cfg.labels_per_class is None else cfg.labels_per_class
    return Path("runs") / f"{cfg.dataset}-{cfg.method}-{cfg.model}-l{labels}-s{cfg.seed}"


def holds_run(path: Path) -> bool:
    """Whether ``path`` holds a run's files, its config.yaml or others (``check_foreign`` tells a
    run's from a user's)."""
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


# Keys every run's config.yaml holds: a config.yaml without them is a file of the user's.
RUN_CONFIG_KEYS = ("dataset", "method", "model", "steps", "seed", "batch_size", "lr")


def foreign_config(path: Path) -> bool:
    """Whether ``path`` holds a config.yaml that no run wrote (a user's own config, notes): a new
    run would write over it."""
    file = path / "config.yaml"
    if not file.is_file():
        return False
    try:
        data = config_mod.yaml_value(file.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return True
    return not (isinstance(data, dict) and all(k in data for k in RUN_CONFIG_KEYS))


def stray_run_files(path: Path) -> list[str]:
    """The files in ``path`` that bear a run file's name while no config.yaml is there (every run
    writes one first): they are the user's, and a new run must not replace them."""
    if not path.is_dir() or (path / "config.yaml").exists():
        return []
    return [name for name in RUN_FILES if (path / name).exists()]


def check_foreign(path: Path, command: str) -> None:
    """Refuse ``path`` for a run when a file there that a run would replace is not a run's: a
    config.yaml no run wrote, or files named as a run's beside no config.yaml at all. No
    ``overwrite`` allows it."""
    if path.is_dir() and foreign_config(path):
        raise ConfigError(f"{command}: {path} holds a config.yaml that is not a metassl run's; a run writes its "
                          f"own config.yaml there, so give another folder")
    stray = stray_run_files(path)
    if stray:
        raise ConfigError(f"{command}: {path} holds {', '.join(stray)} but no run's config.yaml, so not a metassl "
                          f"run; a run writes its own {stray[0]} there, so give another folder")


def check_new(path: Path, *, overwrite: bool) -> None:
    """Refuse ``path`` for a new run when it is a file, holds files of the user's that the run would
    replace (even with ``overwrite``), or holds a run and ``overwrite`` is off."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"train: --out {path} exists and is not a directory")
    check_foreign(path, "train")
    if holds_run(path) and not overwrite:
        if not resumable(path):
            raise ConfigError(f"train: {path} holds a run that stopped before its first checkpoint; "
                              f"replace it with --overwrite")
        raise ConfigError(f"train: {path} already holds a run; continue it with --resume {path} "
                          f"or replace it with --overwrite")


def check_outside_data(path: Path, cfg: TrainConfig) -> None:
    """Refuse a new run's folder inside a data_root folder that the dataset reads every image of:
    the run's report figures would join its data, which would then no longer be the data it was
    trained on."""
    from metassl.data.sources import FOLDER_DATASETS

    if cfg.dataset not in FOLDER_DATASETS or not cfg.data_root:
        return
    root = Path(cfg.data_root).expanduser().resolve()
    if root.is_dir() and path.resolve().is_relative_to(root):
        raise ConfigError(f"train: --out {path} lies inside data_root {cfg.data_root}, whose images are the "
                          f"run's data (its report's figures would join them); give a folder outside it")


def resumable(path: Path) -> bool:
    """Whether ``path``'s run can be continued: it wrote a checkpoint, or it finished."""
    return (path / "checkpoint.pt").exists() or (path / "final.json").exists()


def clear_run(path: Path) -> None:
    """Remove the files of the run in ``path`` and the report written from them (other files there
    are kept)."""
    for name in RUN_FILES + REPORT_FILES:
        (path / name).unlink(missing_ok=True)
    # TensorBoard's folder only as far as the run wrote it: its event files, then the folder if
    # nothing else is left in it
    board = path / "tensorboard"
    if board.is_dir() and not board.is_symlink():
        for event in board.glob("events.out.tfevents.*"):
            if event.is_file():
                event.unlink(missing_ok=True)
        try:
            board.rmdir()
        except OSError:
            pass


def prepare_new(path: Path, cfg: TrainConfig, *, overwrite: bool) -> bool:
    """Make ``path`` ready for a new run; returns whether the directory was created here."""
    check_new(path, overwrite=overwrite)
    if holds_run(path):
        clear_run(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, cfg)
    return created


def _pid(holder: str) -> str:
    return f" (pid {holder})" if holder.isdigit() else ""


def in_use(path: Path, holder: str) -> CheckpointError:
    return CheckpointError(f"run: {path} is in use by another metassl process{_pid(holder)}; "
                           "wait for it to finish or stop it first")


PROBE_WAIT = 0.25  # seconds: longer than any lock_holder probe holds its shared lock


def _flock_exclusive(fh: IO) -> None:
    """Take ``fh``'s exclusive lock without blocking on a holder. A ``lock_holder`` probe holds a
    shared lock for an instant, so a refusal is retried for ``PROBE_WAIT`` seconds before it counts:
    a run starting as another command looks at its folder is not told the folder is in use."""
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def lock_run(path: Path) -> IO:
    """Take ``path``'s lock for as long as the returned file stays open; the kernel drops it when the
    process ends in any way. A second process asking for it meanwhile gets a one-line error."""
    lock = path / LOCK_FILE
    try:
        fh = open(lock, "a+")
    except OSError as exc:
        raise CheckpointError(f"run: cannot open the lock file {lock}: {exc.strerror or exc}") from None
    try:
        _flock_exclusive(fh)
        # A lock file removed (with its directory) while this one waited locks nothing.
        if os.fstat(fh.fileno()).st_ino != os.stat(lock).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        raise in_use(path, holder) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def check_not_in_use(path: Path) -> None:
    """Refuse ``path`` while another process holds its lock, without taking it: a run still loading
    its data looks like one that stopped before its first checkpoint, and one training like one to
    resume, so the advice those checks give would be wrong."""
    holder = lock_holder(path)
    if holder is not None:
        raise in_use(path, holder)


def lock_holder(path: Path) -> Optional[str]:
    """What the process holding ``path``'s lock wrote in it (its pid), or None when none holds it."""
    try:
        fh = open(path / LOCK_FILE)
    except OSError:
        return None  # no lock file (or none readable): lock_run decides
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip()
    return None


@dataclass
class Claim:
    """A directory taken for a new run (``claim_new``): hold it until the run ends (``release``),
    or give it back as found if the run never starts (``abandon``)."""

    path: Path
    created: bool  # the directory was created for this run
    new_lock: bool  # so was its lock file
    lock: IO

    def release(self) -> None:
        self.lock.close()

    def abandon(self) -> None:
        """Leave nothing of a run that never started: the directory if it was created for it,
        else the lock file if that was."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.new_lock:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        self.release()


def claim_new(path: Path, *, overwrite: bool) -> Claim:
    """Create (or take) ``path`` for a new run under its lock, checked as ``check_new`` does. Nothing
    of a run already there is removed: the new run does that once its data is read and its model
    built."""
    check_not_in_use(path)
    check_new(path, overwrite=overwrite)
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise ConfigError(f"train: cannot create --out {path}: {exc.strerror or exc}") from None
    new_lock = not (path / LOCK_FILE).exists()
    claim = Claim(path, created, new_lock, lock_run(path))
    try:
        check_new(path, overwrite=overwrite)
    except ConfigError:  # another process's run appeared before the lock: leave it be
        claim.release()
        raise
    remove_stale_files(path)
    return claim


def remove_stale_files(path: Path) -> None:
    """Remove the temporary files (``.checkpoint.pt.tmp<pid>`` and the like) a killed run left;
    only while holding the run's lock, when no other process can be writing them."""
    for tmp in path.glob(".*.tmp*"):
        match = re.fullmatch(r"\.(.+)\.tmp\d+", tmp.name)
        if match and match.group(1) in RUN_FILES and tmp.is_file():
            tmp.unlink(missing_ok=True)


def drop_rows_after(path: Path, step: int) -> None:
    """Drop the rows of ``LOG_FILES`` logged after ``step`` (a run stopped between an evaluation and
    its checkpoint logged them; resuming from ``step`` logs them again), and any torn last line."""
    for name in LOG_FILES:
        log = path / name
        if not log.is_file():
            continue
        lines = log.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if line.endswith("\n") and isinstance(row, dict) and row.get("step", 0) <= step:
                kept.append(line)
        if kept != lines:
            atomic_write_text(log, "".join(kept))


def _fit_in_python(path: Path) -> bool:
    """Whether the run in ``path`` was fit on arrays in Python (SSLClassifier), which the command
    line cannot resume."""
    try:
        return config_mod.load_yaml(path / "config.yaml").get("dataset") == "arrays"
    except (MetasslError, AttributeError):
        return False


def read_final(path: Path) -> Optional[dict]:
    """A run's final.json (its finished record); None where the run has none."""
    final = path / "final.json"
    if not final.is_file():
        return None
    try:
        done = json.loads(final.read_text())
    except ValueError as exc:
        done = exc
    if not isinstance(done, dict):
        if (path / "checkpoint.pt").is_file() and not _fit_in_python(path):
            fix = f"delete it and 'metassl train --resume {path}' writes it again from the last checkpoint"
        else:  # a classifier fit or saved in Python: its weights are in best.pt, which does not need it
            fix = "delete it; the weights in best.pt load without it"
        raise CheckpointError(f"run: {final} is not a finished run's record (not a JSON object); {fix}")
    return done


def write_config(path: Path, cfg: TrainConfig) -> None:
    atomic_write_text(path / "config.yaml", config_mod.yaml_text(config_mod.dump(cfg), sort_keys=False))


def load_run_config(path: Path, overrides: dict | None = None) -> TrainConfig:
    if not path.exists():
        raise CheckpointError(f"run: {path} does not exist")
    if not (path / "config.yaml").is_file():
        holder = lock_holder(path)
        if holder is not None:
            raise CheckpointError(f"run: {path} is a run still starting{_pid(holder)}: it writes its config.yaml "
                                  "once its data is read and its model built")
        raise CheckpointError(f"run: {path} holds no config.yaml; is it a metassl run directory?")
    raw = config_mod.load_yaml(path / "config.yaml")
    base = config_mod.resolve(raw)
    if not overrides:
        return base
    run = config_mod.flatten(config_mod.dump(base))
    try:
        merged = config_mod.resolve(config_mod.merge(raw, overrides))
    except ConfigError:
        # The overrides' own fault (an unknown key, a bad value) is reported as for a new run;
        # else a change the run's config cannot take (another method, a second length): name the
        # key that a resume may not change.
        config_mod.resolve(config_mod.merge({"method": run["method"]}, overrides))
        given = config_mod.flatten(overrides)
        for key, value in given.items():
            if key.split(".")[0] not in RESUMABLE_KEYS and str(value) != str(run.get(key)):
                _cannot_change(key, run)
        raise
    asked = config_mod.flatten(config_mod.dump(merged))
    for key in asked:
        if asked[key] != run.get(key) and key.split(".")[0] not in RESUMABLE_KEYS:
            _cannot_change(key, run)
    return config_mod.anchored(merged)


def shorter_run(path: Path, reached: int, steps: int) -> ConfigError:
    return ConfigError(f"train: {path} has already trained {reached} steps; steps={steps} would shorten it "
                       f"(give steps >= {reached})")


def _cannot_change(key: str, run: dict) -> None:
    had = f"{key}={run[key]!r}" if key in run else f"no {key}"
    raise ConfigError(f"config: {key} cannot change when resuming (the run has {had}); only "
                      f"{', '.join(sorted(RESUMABLE_KEYS))} can")


def split_digest(s: RunSetup) -> str:
    """A digest of the run's labeled, validation and unlabeled indices (what its weights were fit on)."""
    return ckpt.digest([s.split.labeled, s.split.val, s.split.unlabeled])


def identity(cfg: TrainConfig, split: str | None = None) -> dict:
    """What a checkpoint or weights file records of the run that wrote it: its config and, where
    known, its split's digest (`check_written_by`, `check_split`)."""
    return {"config": config_mod.yaml_text(config_mod.dump(cfg)), **({"split": split} if split else {})}


def check_split(path: Path, state: dict, digest: str, split_file: Path) -> None:
    """Refuse ``state`` (read from ``path``) if it records a split other than ``digest``, that of
    ``split_file``; state that records none passes."""
    if state.get("split", digest) != digest:
        raise CheckpointError(f"checkpoint: {path} belongs to another run: it was written for another split "
                              f"than {split_file}")


def check_written_by(path: Path, state: dict, cfg: TrainConfig) -> None:
    """Refuse the weights or checkpoint ``state`` (read from ``path``) unless the run that wrote it
    had ``cfg`` (less the keys a resume may change). Weights that record no config (written
    before they did) pass."""
    if "config" not in state:
        return
    try:
        theirs = config_mod.dump(config_mod.resolve(config_mod.yaml_value(state["config"]) or {}))
    except (TypeError, ValueError, AttributeError, yaml.YAMLError, MetasslError) as exc:
        text = str(exc).strip()
        raise CheckpointError(f"checkpoint: {path} does not say which run wrote it "
                              f"({text.splitlines()[0] if text else type(exc).__name__})") from None
    ours, theirs = config_mod.flatten(config_mod.dump(cfg)), config_mod.flatten(theirs)
    for key in list(ours) + [k for k in theirs if k not in ours]:
        if key.split(".")[0] in NOT_IDENTITY_KEYS or ours.get(key) == theirs.get(key):
            continue
        mine, its = (f"{key}={tree[key]!r}" if key in tree else f"no {key}" for tree in (ours, theirs))
        raise CheckpointError(f"checkpoint: {path} belongs to another run: it was written with "
                              f"{its}, this run has {mine}")


def weights_file(path: Path, name: str, cfg: TrainConfig) -> Path:
    """``path``'s weights file ``name`` (best.pt or checkpoint.pt), refused in one line where the run
    has not written it: one stopped before its first evaluation has a checkpoint.pt but no best.pt."""
    source, best, last = path / name, path / "best.pt", path / "checkpoint.pt"
    if source.exists():
        return source
    holder = lock_holder(path)
    if holder is not None:
        hint = (f"the run in {path} is still training{_pid(holder)} and has not saved those weights yet; they "
                "are there after its first " + ("checkpoint" if source == last else "evaluation"))
    elif not best.exists() and not last.exists():
        hint = f"the run in {path} has no saved weights (it stopped before its first checkpoint)"
    elif source == last:
        hint = "the run kept only its selected weights, best.pt"
    elif cfg.dataset == "arrays":
        hint = "the run stopped before its first evaluation; fit it again"
    else:
        hint = f"the run stopped before its first evaluation; 'metassl train --resume {path}' continues it"
    raise CheckpointError(f"checkpoint: {source} does not exist: {hint}")


def load_run(path: Path, weights: str = "selected", device: str | None = None,
             data_root: str | None = None) -> tuple[RunSetup, int]:
    """A run's data, split and model with its saved weights loaded (the validation-selected
    ``best.pt``, or the last checkpoint's, EMA where the run used it); the model is in eval mode.
    ``data_root``: where the run's data lies now, if it has moved."""
    cfg = load_run_config(path, {k: v for k, v in (("device", device), ("data_root", data_root)) if v})
    if cfg.dataset == "arrays":
        raise CheckpointError(f"run: {path} was trained from arrays in Python (metassl.api), which are not on "
                              "disk to evaluate on; use metassl predict, or SSLClassifier.score")
    if data_root:
        from metassl.data.sources import key_datasets
        if cfg.dataset not in key_datasets()["data_root"]:
            raise ConfigError(f"eval: --data-root does not apply to {path}: its dataset={cfg.dataset} is not read "
                              "from files")
    if not (path / "split.json").is_file():
        raise CheckpointError(f"run: {path} holds no split.json")
    source = weights_file(path, "best.pt" if weights == "selected" else "checkpoint.pt", cfg)
    state = ckpt.load(source, ckpt.WEIGHTS_FORMAT if weights == "selected" else ckpt.FORMAT)
    check_written_by(source, state, cfg)
    model_state = state["model"] if weights == "selected" else state["ema"] or state["model"]
    step = state["step"]
    s = build(cfg, path, reuse_split=True)
    check_split(source, state, split_digest(s), path / "split.json")
    try:
        s.model.load_state_dict(model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint: weights in {path} do not fit model {cfg.model!r}: "
                              f"{state_dict_mismatch(exc)}") from None
    s.model.eval()
    return s, step


def state_dict_mismatch(exc: RuntimeError) -> str:
    """The first concrete line of ``load_state_dict``'s error (a size mismatch, a missing key), not
    its "Error(s) in loading state_dict for ...:" header."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = [ln for ln in lines if not ln.startswith("Error(s) in loading state_dict")]
    return (detail or lines or [type(exc).__name__])[0]


def evaluate_run(path: Path, weights: str = "selected", device: str | None = None,
                 data_root: str | None = None, batch_size: int | None = None) -> dict:
    """Recompute a run's validation and test error from its saved weights, ``batch_size`` inputs
    a forward pass (the run's ``eval_batch_size`` by default)."""
    s, step = load_run(path, weights, device, data_root)
    norm, bs = s.augmenter.normalize, batch_size or s.cfg.eval_batch_size
    with out_of_memory_as(lambda asked: f"eval: out of memory on {s.device} evaluating {path} in batches of {bs} "
                                        f"(an allocation of {asked} failed): lower --batch-size"):
        out = {
            "run": str(path), "weights": weights, "step": step,
            "val_error": error_rate(s.model, s.x_val, s.y_val, norm, bs, s.autocast),
            "test_error": error_rate(s.model, s.x_test, s.y_test, norm, bs, s.autocast),
        }
    try:
        final = read_final(path)
    except CheckpointError:
        final = None  # the weights are evaluated; a damaged record of the run is not needed for that
    if final is not None:
        out["final_json_test_error"] = final.get("test_error")
    return out
