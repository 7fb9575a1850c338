"""Benchmark suites: a YAML grid of config overrides x seeds, run and tabulated.

A suite file holds ``base`` (overrides for every run), ``grid`` (key -> list of values,
crossed), optional ``runs`` (a list of override mappings, each crossed with the grid),
``seeds``, optional ``group_by`` (the keys that make a table row), optional ``paper``
(published errors: ``{match: {key: value}, error: float, source: str}``) and optional ``parents``
(``{match: {key: value}, parent: {key: value}, label: TEXT}``, label optional: the row a row is paired with by seed where that
is not its method's parent, ``bench.paired``).
Finished runs are skipped, interrupted ones resumed, so a suite can be re-run to completion.
"""
from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import multiprocessing
import os
import signal
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from importlib import resources
from pathlib import Path
from typing import Optional

import torch

from metassl import config as config_mod
from metassl.bench import paired
from metassl.engine import machine as machine_mod, rundir
from metassl.config import flatten
from metassl.engine.trainer import Interrupted, Trainer
from metassl.files import atomic_write_text, check_out_folder
from metassl.report import records
from metassl.errors import ConfigError, MetasslError, did_you_mean

SUITE_KEYS = {"description", "base", "grid", "runs", "seeds", "group_by", "paper", "parents"}


def suite_names() -> list[str]:
    folder = resources.files("metassl.bench") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> tuple[str, dict]:
    path = Path(name_or_path)
    if not path.is_file():
        if name_or_path not in suite_names():
            raise ConfigError(f"bench: no suite {name_or_path!r}{did_you_mean(name_or_path, suite_names())}: not "
                              f"a file, and the shipped suites are {', '.join(suite_names() + ['speed'])}")
        path = Path(str(resources.files("metassl.bench") / "suites" / f"{name_or_path}.yaml"))
    suite = config_mod.load_yaml(path)
    unknown = set(suite) - SUITE_KEYS
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"bench: {path}: unknown key {first!r}{did_you_mean(first, SUITE_KEYS)}; known: "
                          f"{', '.join(sorted(SUITE_KEYS))}")
    check_suite(path, suite)
    return path.stem, suite


def check_suite(path: Path, suite: dict) -> None:
    """A one-line error naming ``path`` and the key for a suite whose structure is wrong, before
    anything trains: a table from it would be wrong (rows merged, a run counted twice) or fail
    after the training."""
    def bad(key: str, want: str) -> ConfigError:
        return ConfigError(f"bench: {path}: {key} must be {want}, got {json.dumps(suite.get(key), default=str)}")

    if not isinstance(suite.get("description", ""), str):
        raise bad("description", "text")
    for key in ("base", "grid"):
        if not isinstance(suite.get(key) or {}, dict):
            raise bad(key, "a mapping of keys to values")
    runs = suite.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise bad("runs", "a list of mappings (one run's settings each)")
    seeds = suite.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise bad("seeds", "a non-empty list of distinct integers")
    if "seed" in (suite.get("grid") or {}) or any("seed" in flatten(r) for r in runs):
        raise ConfigError(f"bench: {path}: seeds go in the suite's seeds list, not in grid or runs")
    parents = suite.get("parents") or []
    if not isinstance(parents, list):
        raise bad("parents", "a list of {match: {key: value}, parent: {key: value}}")
    for key, values in (suite.get("grid") or {}).items():
        if not isinstance(values, list):
            raise ConfigError(f"bench: {path}: grid.{key} must be a list of values, got {json.dumps(values, default=str)}")
    for i, entry in enumerate(parents):
        if not (isinstance(entry, dict) and {"match", "parent"} <= set(entry) <= {"match", "parent", "label"}
                and all(isinstance(entry[k], dict) and entry[k] for k in ("match", "parent"))
                and isinstance(entry.get("label", ""), str)):
            raise ConfigError(f"bench: {path}: parents[{i}] must be {{match: {{key: value}}, parent: {{key: value}}}} "
                              f"and optionally label: TEXT, got {entry!r}")
    papers = suite.get("paper") or []
    if not isinstance(papers, list) or not all(
            isinstance(p, dict) and isinstance(p.get("match"), dict) and {"error", "source"} <= set(p)
            and isinstance(p["error"], (int, float)) and not isinstance(p["error"], bool) for p in papers):
        raise bad("paper", "a list of {match: {key: value}, error: NUMBER, source: ...}")
    if not runs and not suite.get("grid"):
        raise ConfigError(f"bench: {path}: defines no runs; give a grid or a list of runs")
    grid_runs = expand(suite)
    if not grid_runs:
        raise ConfigError(f"bench: {path}: its grid has an empty list of values, so it defines no runs")
    seen: set[str] = set()
    for run in grid_runs:
        if run_name(run) in seen:
            raise ConfigError(f"bench: {path}: two runs of its grid and runs have the same settings "
                              f"({run_name({k: v for k, v in run.items() if k != 'seed'}) or 'the base'}); "
                              "each run must differ in some setting, or it would count twice")
        seen.add(run_name(run))
    settings = [completed({**flatten(suite.get("base") or {}), **run}) for run in grid_runs]
    for i, entry in enumerate(parents):
        for part in ("match", "parent"):
            if not any(all(json.dumps(s.get(k)) == json.dumps(v) for k, v in entry[part].items()) for s in settings):
                raise ConfigError(f"bench: {path}: parents[{i}].{part} {json.dumps(entry[part])} matches none of "
                                  "the suite's runs")
    group_by = suite.get("group_by")
    if group_by is not None:
        if not isinstance(group_by, list) or not all(isinstance(k, str) for k in group_by):
            raise bad("group_by", "a list of keys")
        known = {k for run in grid_runs for k in run} | set(flatten(suite.get("base") or {}))
        for key in group_by:
            if key not in known:
                raise ConfigError(f"bench: {path}: group_by key {key!r} is set by neither base nor any run "
                                  f"(they set {', '.join(sorted(known - {'seed'}))})")
        rows: dict[tuple, dict] = {}
        for run in grid_runs:
            row = rows.setdefault(tuple(json.dumps(run.get(k)) for k in group_by), {})
            other = row.setdefault(run["seed"], run)
            if other is not run:
                differ = next(k for k in dict.fromkeys([*other, *run]) if other.get(k) != run.get(k))
                raise ConfigError(f"bench: {path}: group_by {group_by} puts runs that differ in {differ} "
                                  f"into one row; add {differ} (or a key that tells them apart) to group_by")


@functools.lru_cache(maxsize=None)
def _method_defaults(method: str) -> dict:
    try:
        return flatten(config_mod.dump(config_mod.resolve({"method": method})))
    except ConfigError:  # a method this version does not know: nothing to fill in
        return {}


def completed(setting: dict) -> dict:
    """A run's recorded settings with the keys it lacks at their defaults for its method. A run
    recorded before a key existed ran as that key's default does (a key is added with a default
    that keeps the old behaviour), so it makes one row, and pairs, with runs that record it."""
    method = setting.get("method")
    return {**_method_defaults(method), **setting} if isinstance(method, str) else setting


def row_setting(row: dict) -> dict:
    """The settings a table groups, pairs and matches a row by: its recorded config, completed."""
    return completed(row["config"]) if row.get("config") else row["overrides"]


def expand(suite: dict) -> list[dict]:
    """Flat override dicts, one per run, seeds included."""
    grid = suite.get("grid") or {}
    keys = list(grid)
    for key in keys:
        if not isinstance(grid[key], list):
            raise ConfigError(f"bench: grid.{key} must be a list of values")
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    extra = [flatten(r) for r in (suite.get("runs") or [{}])]
    seeds = suite.get("seeds") or [0]
    return [{**e, **c, "seed": seed} for e in extra for c in combos for seed in seeds]


def run_name(overrides: dict) -> str:
    parts = [f"{k}={v}" for k, v in overrides.items()]
    return ",".join(parts).replace("/", "_").replace(" ", "")


def group_keys(suite: dict, runs: list[dict]) -> list[str]:
    if suite.get("group_by"):
        return list(suite["group_by"])
    keys = [k for k in dict.fromkeys(k for r in runs for k in r) if k != "seed"]
    return [k for k in keys if len({json.dumps(r.get(k)) for r in runs}) > 1] or ["method"]


def machine(jobs: int = 1, threads: int | None = None) -> str:
    """The machine that trains (or tabulates) a suite, for its table's heading; ``threads``: the
    runs' own ``threads`` setting. Each run's own machines are in its final.json (``_trained_on``)."""
    here = machine_mod.fingerprint(torch.device("cuda") if torch.cuda.is_available() else None)
    if here["accelerator"]:
        dev = here["accelerator"]
    elif jobs > 1:
        each = threads or 1
        dev = f"CPU, {jobs} runs at once, {each} thread{'s' if each > 1 else ''} each"
    else:
        each = threads or torch.get_num_threads()
        dev = f"CPU, {each} thread{'s' if each > 1 else ''}"
    return f"{here['arch']} {dev}, {os.cpu_count()} cores, torch {here['torch']}"


class SuiteInterrupted(MetasslError):
    """A run of the suite stopped by SIGINT/SIGTERM after saving its checkpoint."""

    exit_code = 130


class SuiteRunFailed(MetasslError):
    """A run of the suite failed; carries that run's exit code (picklable across processes)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return type(self), (str(self), self.exit_code)


def _run_one(i: int, total: int, path: Path, cfg, threads: int | None, in_worker: bool = False) -> None:
    print(f"[{i + 1}/{total}] {path.name}", file=sys.stderr, flush=True)
    if threads and not cfg.threads:
        cfg.threads = threads
    path.mkdir(parents=True, exist_ok=True)
    try:
        # a second command on the same --out stops here rather than train the run again beside it
        lock = rundir.lock_run(path)
    except MetasslError as exc:
        raise SuiteRunFailed(f"bench: {exc}", exc.exit_code) from None
    with lock:
        if (path / "final.json").exists():  # finished by another command meanwhile
            return
        _train_locked(path, cfg, in_worker)


def _train_locked(path: Path, cfg, in_worker: bool) -> None:
    resume = (path / "checkpoint.pt").exists()
    if not resume:
        rundir.prepare_new(path, cfg, overwrite=True)
    try:
        Trainer(cfg, path, resume=resume).fit()
    except Interrupted:
        if in_worker:  # the checkpoint is saved: leave at once rather than wait for more work
            os._exit(130)
        raise SuiteInterrupted(f"bench: interrupted; run {path.name} saved a checkpoint. The same "
                               f"command continues the suite (finished runs are kept).") from None
    except MetasslError as exc:
        raise SuiteRunFailed(f"bench: run {path}: {exc}", exc.exit_code) from None


def _worker_init() -> None:
    """Pool workers die with the suite: on Linux the kernel sends SIGTERM when the parent exits,
    so a killed ``metassl bench`` leaves no orphan training on; each run checkpoints first."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() == 1:  # the parent died before prctl
            os.kill(os.getpid(), signal.SIGTERM)


def _run_parallel(todo: list, total: int, jobs: int) -> None:
    """One thread per run and several runs at once use small CPUs far better than one run on all
    cores. On an error or an interrupt the other workers are sent SIGTERM: they checkpoint and stop."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: as Ctrl-C
    try:
        futures = [pool.submit(_run_one, i, total, p, cfg, 1, True) for i, p, cfg in todo]
        for fut in futures:
            fut.result()
    except KeyboardInterrupt:
        _stop_workers(pool)
        raise SuiteInterrupted("bench: interrupted; every unfinished run saved a checkpoint. The same "
                               "command continues the suite (finished runs are kept).") from None
    except BrokenProcessPool:
        # A worker left without a result: interrupted (it checkpointed first) or killed from outside.
        _stop_workers(pool)
        raise SuiteRunFailed("bench: a worker process ended without finishing its run (interrupted, or "
                             "killed, e.g. out of memory); the same command resumes every run from its "
                             "last checkpoint (finished runs are kept)", 130) from None
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM each worker (its run checkpoints and the worker exits) and wait for them."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(timeout=120)


def parse_only(only: list[str] | None) -> dict[str, list]:
    """``["method=supervised,mixup", "seed=0"]`` -> {"method": ["supervised", "mixup"], "seed": [0]}."""
    wanted: dict[str, list] = {}
    for item in only or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"bench: --only {item!r}: expected key=value[,value...]")
        if key in wanted:
            raise ConfigError(f"bench: --only names {key} twice; give its values once, comma-separated "
                              f"({key}=a,b)")
        wanted[key] = [config_mod.parse_overrides([f"v={v}"])["v"] for v in values.split(",")]
    return wanted


def select_runs(runs: list[dict], only: list[str] | None, resolved: list[dict] | None = None) -> list[dict]:
    """The runs whose settings match every ``--only`` filter (all runs without filters). With
    ``resolved`` (each run's flat resolved config, in order), a value matches the run's resolved
    setting too: ``fixmatch.meta_gradient=false`` picks the runs that leave it at its default,
    as the table shows them, and ``labels_per_class=100`` a setting of the suite's base. A key of
    a method's section picks only runs of that method: the others have no such setting."""
    wanted = parse_only(only)
    settled = resolved or [{} for _ in runs]
    grid = {k for r in runs for k in r}
    keys = grid | {k for r in settled for k in r}

    def values(i: int, key: str) -> set[str]:
        if key in runs[i]:  # the grid's value, and the resolved one it stands for (null: the default)
            return {json.dumps(runs[i][key])} | ({json.dumps(settled[i][key])} if key in settled[i] else set())
        if key in settled[i]:  # a key other runs set left at its default: the table shows '-' (null)
            return {json.dumps(settled[i][key])} | ({"null"} if key in grid else set())
        return set() if resolved else {"null"}

    for key in wanted:
        if key not in keys:
            raise ConfigError(f"bench: --only {key}: not a key of this suite's runs{did_you_mean(key, keys)}; they vary "
                              f"{', '.join(sorted(grid))} (an override for every run goes before --only)")
        have = [v for i in range(len(runs)) for v in sorted(values(i, key))]
        for value in wanted[key]:
            if json.dumps(value) not in have:
                shown = ", ".join(_written(json.loads(v)) for v in dict.fromkeys(have))
                hint = did_you_mean(value, [json.loads(v) for v in have]) if isinstance(value, str) else ""
                raise ConfigError(f"bench: --only {key}={_written(value)}: no run of the suite "
                                  f"has it{hint} (its runs have {key}: {shown})")
    picked = [r for i, r in enumerate(runs)
              if all(values(i, k) & {json.dumps(v) for v in vals} for k, vals in wanted.items())]
    if not picked:
        raise ConfigError(f"bench: --only {' '.join(only or [])}: matches none of the suite's {len(runs)} runs")
    return picked


def _written(value) -> str:
    """A value as a command line writes it (null, true, 0.5, mixup)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def own_sections(base: dict, method: str) -> dict:
    """``base`` without the sections of methods other than ``method``: a suite's ``base`` may hold
    the sections of every method it trains, and a run takes only its own."""
    from metassl.methods import METHODS

    return {key: value for key, value in base.items() if key == method or key not in METHODS}


def check_base_sections(name: str, base: dict, runs: list[dict], overrides: dict | None = None) -> None:
    """A section of a method that no run of the suite trains, in its ``base`` or among the
    command's ``overrides``, is an error naming it and where it was set."""
    from metassl.methods import METHODS

    overrides = overrides or {}
    trained = {r.get("method", overrides.get("method", base.get("method", config_mod.TrainConfig.method)))
               for r in runs}
    for where, keys in (("base section", base), ("override", overrides)):
        for key in keys:
            if key in METHODS and key not in trained:
                shown = f"{next(iter(flatten({key: keys[key]})), key)}=..." if where == "override" else repr(key)
                raise ConfigError(f"bench: suite {name}: {where} {shown} is for method {key}, which no run "
                                  f"trains (they train {', '.join(sorted(trained))})")


def resolve_runs(name: str, suite: dict, overrides: list[str] | None = None) -> list[tuple[dict, config_mod.TrainConfig]]:
    """Each run of the suite (its grid settings) with its resolved config, under ``overrides``."""
    given = config_mod.parse_overrides(overrides or [])
    base = config_mod.merge(suite.get("base") or {}, given)
    runs = expand(suite)
    check_base_sections(name, suite.get("base") or {}, runs, given)
    resolved = []
    for flat in runs:
        raw = own_sections(base, flat.get("method", base.get("method", config_mod.TrainConfig.method)))
        for key, value in flat.items():
            raw = config_mod.merge(raw, config_mod.parse_overrides([f"{key}={json.dumps(value)}"]))
        try:
            resolved.append((flat, config_mod.anchored(_resolve_new(raw))))
        except ConfigError as exc:
            key = getattr(exc, "key", None)
            if (key and config_mod._holds(suite.get("base") or {}, key)
                    and not config_mod._holds(config_mod.parse_overrides(overrides or []), key)
                    and _fails_on(own_sections(suite.get("base") or {}, flat.get("method", base.get(
                        "method", config_mod.TrainConfig.method))), key)):
                # the suite's base section fails on its own: named as the file's key
                raise ConfigError(f"bench: suite {name}: base.{key}: {str(exc).removeprefix('config: ')}") from None
            raise ConfigError(f"bench: suite {name}, run {run_name(flat)}: {exc}") from None
    return resolved


def _resolve_new(raw: dict) -> config_mod.TrainConfig:
    cfg = config_mod.resolve(raw)
    config_mod.check_new(cfg, in_suite=True)
    return cfg


def _fails_on(raw: dict, key: str) -> bool:
    """Whether ``raw`` alone fails with an error about ``key``."""
    try:
        _resolve_new(raw)
    except ConfigError as exc:
        return getattr(exc, "key", None) == key
    return False


def run_suite(name_or_path: str, out: Path, *, dry_run: bool = False, overrides: list[str] | None = None,
              jobs: int = 1, only: list[str] | None = None, include: list[Path] | None = None) -> str:
    """Train the suite's unfinished runs (those matching ``only``, if given) and tabulate every
    finished run in ``out``, with the runs of the ``include`` results files that ``out`` lacks."""
    name, suite = load_suite(name_or_path)
    if out is not None:
        check_out_folder(out, f"bench: --out {out}")
        check_suite_files(out)
    check_overrides(name, expand(suite), overrides)
    resolved = resolve_runs(name, suite, overrides)
    runs = [flat for flat, _ in resolved]
    earlier = included_rows(include or [], resolved, name)
    chosen = {run_name(r) for r in select_runs(runs, only, [flatten(config_mod.dump(c)) for _, c in resolved])}
    if out is not None:
        check_finished(out, [(f, c) for f, c in resolved if run_name(f) in chosen], name)
    if dry_run:
        def state(name: str) -> str:  # what the command would do with the run
            if name in earlier:
                return f"{name} (included, not trained)"
            if out is not None and (out / name / "final.json").exists():
                return f"{name} (finished, not trained)"
            if out is not None and (out / name / "checkpoint.pt").exists():
                return f"{name} (resumed)"
            return name
        return "\n".join(state(run_name(f)) for f in runs if run_name(f) in chosen)
    out.mkdir(parents=True, exist_ok=True)
    # A run an included file holds is finished: it is tabulated from there, not trained again.
    pending = [(out / run_name(flat), cfg) for flat, cfg in resolved
               if run_name(flat) in chosen and not (out / run_name(flat) / "final.json").exists()
               and run_name(flat) not in earlier]
    todo = [(i, p, cfg) for i, (p, cfg) in enumerate(pending)]  # numbered among the runs trained here
    if jobs > 1 and len(todo) > 1:
        _run_parallel(todo, len(todo), jobs)
    else:
        for i, p, cfg in todo:
            _run_one(i, len(todo), p, cfg, None)
    # the machine line says "runs at once" only of runs this command trained so
    return tabulate(name_or_path, out, jobs, include, overrides, at_once=min(jobs, len(todo)))


def check_overrides(name: str, runs: list[dict], overrides: list[str] | None) -> None:
    """A command-line override of a key the suite's grid or runs set (the seed among them) is a
    one-line error: it would change some runs and not others, or none, while the table named it."""
    set_by_runs = {k for r in runs for k in r}
    for key in flatten(config_mod.parse_overrides(overrides or [])):
        if key == "seed":
            raise ConfigError(f"bench: seed=...: suite {name} takes its seeds from its seeds list "
                              f"({', '.join(str(s) for s in dict.fromkeys(r['seed'] for r in runs))}); "
                              "pick some with --only seed=N[,M]")
        if key in set_by_runs:
            shown = ", ".join(dict.fromkeys(json.dumps(r.get(key)) for r in runs))
            raise ConfigError(f"bench: {key}=...: suite {name}'s runs set {key} themselves ({shown}), so an "
                              f"override would not apply to them all; pick runs with --only {key}=V, or "
                              f"write a suite file with the values you want")


# Keys that say how a run was executed, not what it computed: an included run may differ in them
# (the table names such a difference). channels_last is the memory layout of the same arithmetic.
EXECUTION_KEYS = ("data_root", "device", "threads", "tensorboard", "log_every", "checkpoint_every", "eval_batch_size",
                  "channels_last")


def included_rows(files: list[Path], resolved: list[tuple[dict, config_mod.TrainConfig]],
                  suite: str) -> dict[str, dict]:
    """The rows of earlier ``results.json`` files (another machine's, an earlier session's) that
    are runs of this suite, by run name; where files repeat a run, the first file's row. A row
    whose recorded config differs from the suite's for that run (beyond ``EXECUTION_KEYS``) is
    an error: it belongs to another experiment (another suite's run of the same name)."""
    expected = {run_name(flat): (flatten(config_mod.dump(cfg)), _inert(cfg)) for flat, cfg in resolved}
    rows: dict[str, dict] = {}
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
        except OSError as exc:
            raise ConfigError(f"bench: --include {f}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"bench: --include {f}: not JSON ({exc})") from None
        if not isinstance(data, list) or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and "test_error" in r
                and isinstance(r.get("overrides"), dict) for r in data):
            raise ConfigError(f"bench: --include {f}: not a suite's results.json (a list of runs, each with "
                              "name, overrides and test_error)")
        for r in data:
            _check_row(r, f)
        mine = [r for r in data if r["name"] in expected]
        if data and not mine:
            raise ConfigError(f"bench: --include {f}: none of its {len(data)} runs is a run of suite {suite}")
        for r in mine:
            want, inert = expected[r["name"]]
            _same_experiment(want, r["config"], f"--include {f}: run {r['name']}", suite, inert)
            rows.setdefault(r["name"], r)
    return rows


def _check_row(row: dict, source: Path) -> None:
    """Refuse an included row whose figures are not numbers, or that records no config (its
    settings could not be checked against the suite's, nor shown in the table)."""
    what = f"bench: --include {source}: run {row['name']}"
    if not isinstance(row.get("config"), dict):
        raise ConfigError(f"{what} records no config (a mapping of the settings it was trained with)")
    for key, value in row.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key.endswith(("_error", "_seconds")) and not (number or (value is None and key != "test_error")):
            raise ConfigError(f"{what}: {key}={json.dumps(value)} is not a number")


def _inert(cfg: config_mod.TrainConfig) -> set[str]:
    """The flat keys of ``cfg``'s method section that change nothing in its setting."""
    keys = getattr(cfg.method_cfg, "inert_keys", lambda: ())()
    return {f"{cfg.method}.{k}" for k in keys}


def _same_experiment(want: dict, got: dict, what: str, suite: str, inert: set[str] = frozenset()) -> None:
    """A one-line error unless the flat configs ``got`` (how a run was trained) and ``want`` (the
    suite's) agree on every key they share beyond ``EXECUTION_KEYS`` and the ``inert`` ones."""
    for key in sorted(set(want) & set(got) - set(EXECUTION_KEYS) - inert):
        if json.dumps(want[key]) != json.dumps(got[key]):
            raise ConfigError(f"bench: {what} was trained with {key}={json.dumps(got[key])}, "
                              f"suite {suite} has {key}={json.dumps(want[key])}")


def check_finished(out: Path, resolved: list[tuple[dict, config_mod.TrainConfig]], suite: str) -> None:
    """A run asked for (``resolved``: the suite's runs that ``--only`` picks) that ``out`` has
    finished counts as done only if it was trained with the suite's settings under this
    invocation's overrides (beyond ``EXECUTION_KEYS``): otherwise a one-line error, rather than
    a table that reports the old settings' run as the new one. (Runs not asked for may differ: a
    suite filled in parts under other overrides says so in its table.)"""
    for flat, cfg in resolved:
        path = out / run_name(flat)
        state = "finished" if (path / "final.json").exists() else "interrupted" if (
            path / "checkpoint.pt").exists() else None
        if state and (path / "config.yaml").is_file():
            # compared as results.json records it (tabulate), so a config of an older version never fails to load
            _same_experiment(flatten(config_mod.dump(cfg)), flatten(config_mod.load_yaml(path / "config.yaml")),
                             f"{path} ({state}; use another --out for other settings)", suite, _inert(cfg))


def tabulate(name_or_path: str, out: Path, jobs: int = 1, include: list[Path] | None = None,
             overrides: list[str] | None = None, at_once: int | None = None) -> str:
    """Write ``out/results.json`` and ``out/table.md`` from every finished run of the suite in
    ``out`` (trains nothing), and from the rows of the ``include`` results files for the runs that
    ``out`` has not finished (checked against the suite under ``overrides``), and return the table."""
    name, suite = load_suite(name_or_path)
    runs = expand(suite)
    paths = [out / run_name(flat) for flat in runs]
    earlier = included_rows(include or [], resolve_runs(name, suite, overrides), name) if include else {}
    # Each row records the configuration its run was trained with (its own config.yaml), which
    # differs from this invocation's when the suite was filled in parts with other overrides.
    rows = [{"name": p.name, "overrides": flat,
             "config": flatten(config_mod.load_yaml(p / "config.yaml")) if (p / "config.yaml").is_file() else None,
             "recent_test_errors": recent_test_errors(p),
             **rundir.read_final(p)} if (p / "final.json").exists() else earlier[p.name]
            for p, flat in zip(paths, runs) if (p / "final.json").exists() or p.name in earlier]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2) + "\n")
    # a suite file of the user's is named as it was given, so the command line can be run again
    command = name_or_path if Path(name_or_path).suffix in (".yaml", ".yml") else name
    table = make_table(name, suite, rows, group_keys(suite, runs), jobs, overrides, command,
                       jobs if at_once is None else at_once)
    atomic_write_text(out / "table.md", table)
    return table


def check_suite_files(out: Path) -> None:
    """Refuse an --out folder holding a results.json or table.md that no suite wrote: the suite
    writes its own there."""
    results, table = out / "results.json", out / "table.md"
    if results.is_file():
        try:
            rows = json.loads(results.read_text())
        except (OSError, ValueError):
            rows = None
        if not (isinstance(rows, list) and all(isinstance(r, dict) and "name" in r for r in rows)):
            raise ConfigError(f"bench: --out {out} holds a results.json that no suite wrote; the suite writes "
                              "its own there, so give another folder")
    elif table.is_file():
        raise ConfigError(f"bench: --out {out} holds a table.md but no suite's results.json; the suite writes "
                          "its own table.md there, so give another folder")


RECENT = 3  # evaluations a row's convergence is judged on (their span: the largest minus the smallest)


def recent_test_errors(run: Path, count: int = RECENT) -> list[float]:
    """The test errors of a run's last ``count`` evaluations, in step order. A resumed run logs
    again the steps after its checkpoint: the later record of a step is the one that counts."""
    by_step = {r["step"]: r["test_error"] for r in records.read_jsonl(run / "metrics.jsonl")
               if isinstance(r.get("step"), int) and r.get("test_error") is not None}
    return [by_step[step] for step in sorted(by_step)[-count:]]


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:  # one seed has no spread to show
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def _beyond_grid(rows: list[dict]) -> dict[str, list[str]]:
    """The settings, outside the suite's grid and seeds, in which the tabulated runs differ (a
    suite filled in parts with other overrides): key -> its values, as JSON."""
    configs = [r.get("config") or {} for r in rows]
    varied = {k for r in rows for k in r.get("overrides") or {}} | {"seed"}
    # data_root is where each machine keeps the data, not a setting of the experiment
    shared = set.intersection(*(set(c) for c in configs)) - varied - {"data_root"} if configs else set()
    found = {key: sorted({json.dumps(c[key]) for c in configs}) for key in sorted(shared)}
    return {key: values for key, values in found.items() if len(values) > 1}


def _differences(rows: list[dict]) -> str:
    """A sentence naming the settings beyond the grid in which the tabulated runs differ, or ''."""
    parts = [f"{key} ({', '.join(values)})" for key, values in _beyond_grid(rows).items()]
    return f" The runs differ beyond the grid in: {'; '.join(parts)}." if parts else ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text + "." if text and text[-1] not in ".!?" else text


def _overridden(overrides: list[str] | None) -> str:
    """A sentence saying that the command's overrides replace what the description says of the
    same settings (a budget given as ``steps=12000`` beside a description of the suite's own)."""
    # how the runs were executed (threads=1) replaces nothing the text describes
    shown = [o for o in overrides or [] if o.partition("=")[0].split(".")[0] not in EXECUTION_KEYS]
    if not shown:
        return ""
    return (f" Set on the command line, in place of the suite's own values where the text above "
            f"gives them: {', '.join(shown)}.")


def _trained_on(rows: list[dict]) -> str:
    """A sentence naming the machines the rows' runs trained on, as their final.json records them
    (runs repeat bit for bit on one machine, not across processors), or '' where no row records one.
    A run resumed on another machine counts for each."""
    if not any(isinstance(row.get("machines"), list) and row["machines"] for row in rows):
        return ""
    counts: dict[str, int] = {}
    for row in rows:
        machines = row.get("machines") if isinstance(row.get("machines"), list) else None
        # a run from before the record, or resumed from one, counts for "a machine not recorded"
        for entry in dict.fromkeys(machine_mod.describe(m) for m in machines or [None]):
            counts[entry] = counts.get(entry, 0) + 1
    named = "; ".join(f"{name} ({n} run{'s' if n > 1 else ''})" for name, n in counts.items())
    return f" Trained on: {named}."


def _selection(rows: list[dict]) -> str:
    chosen = {(r.get("config") or {}).get("select", "val") for r in rows}
    if chosen == {"last"}:
        return "the last checkpoint"
    if chosen == {"val"}:
        return "the checkpoint selected on validation"
    return "the checkpoint chosen by each run's `select` (validation or last)"


def make_table(name: str, suite: dict, rows: list[dict], keys: list[str], jobs: int = 1,
               overrides: list[str] | None = None, command: str | None = None, at_once: int | None = None) -> str:
    """The suite's table.md: its heading, the command, the machine (``at_once``: how many runs
    this command trained at once, 0 where it trained none; the command's ``--jobs`` where not
    given), then ``table_body``."""
    threads = {(row.get("config") or {}).get("threads") for row in rows}
    earlier = "; every run trained before this command, which only tabulated them" if at_once == 0 else ""
    lines = [f"# Suite `{name}`", "",
             f"Command: `metassl bench {command or name} --out DIR{f' --jobs {jobs}' if jobs > 1 else ''}"
             f"{''.join(' ' + o for o in overrides or [])}`; "
             f"{machine(jobs if at_once is None else max(at_once, 1), threads.pop() if len(threads) == 1 else None)}"
             f"{earlier}; "
             f"tabulated {dt.date.today().isoformat()}.",
             f"{_sentence(suite.get('description', ''))}{_overridden(overrides)}{_trained_on(rows)}", ""]
    return "\n".join(lines + table_body(suite, rows, keys)) + "\n"


def table_body(suite: dict, rows: list[dict], keys: list[str]) -> list[str]:
    """The markdown lines of a suite's tables under its heading and command line: one row per
    setting of ``keys`` over seeds, then the paired differences (``bench.paired``). Runs that
    differ beyond the grid in what they compute (``steps=20`` for some seeds) are rows of their
    own, keyed by those settings too, and are paired only with runs that share them; a difference
    in how they ran (``EXECUTION_KEYS``) is named, not split on."""
    keys = keys + [k for k in _beyond_grid(rows) if k not in keys and k not in EXECUTION_KEYS]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        setting = row_setting(row)
        groups.setdefault(tuple(json.dumps(setting.get(k)) for k in keys), []).append(row)
    papers = suite.get("paper") or []
    has_paper = bool(papers)
    head = keys + ["test error % (mean ± std)", "per seed", "selected step", "last step %",
                   f"last {RECENT} evaluations' span", "val error %", "runs", "wall min/run", "CPU min/run"]
    if has_paper:
        head.append("paper")
    lines = [f"Test error of {_selection(rows)}; mean ± sample std over seeds, each seed's (in seed "
             f"order) with the step it was selected at, and the error at the last step beside it; the "
             f"span of each seed's last {RECENT} evaluations (test error, largest minus smallest: within "
             f"0.3 points counts as converged).{_differences(rows)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, group in groups.items():
        cells = _cells(keys, key)
        tests = [r["test_error"] for r in group if r.get("test_error") is not None]
        last = [r["last_test_error"] for r in group if r.get("last_test_error") is not None]
        vals = [r["val_error"] for r in group if r.get("val_error") is not None]
        minutes = statistics.fmean(r["wall_seconds"] for r in group) / 60
        cpu = statistics.fmean(r.get("cpu_seconds", float("nan")) for r in group) / 60
        cells += [_fmt(tests), _per_seed(group, "test_error", "{:.2f}"), _per_seed(group, "selected_step", "{}"),
                  _fmt(last), _per_seed(group, "recent_test_errors", "{:.2f}", _span), _fmt(vals), _runs(group),
                  f"{minutes:.2f}", f"{cpu:.2f}"]
        if has_paper:
            setting = row_setting(group[0])
            match = [p for p in papers if all(setting.get(k) == v for k, v in p["match"].items())]
            cells.append(f"{match[0]['error']} ({match[0]['source']})" if match else "-")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    comps = paired.comparisons(groups, keys, suite.get("parents") or [], row_setting)
    return lines + paired.table_lines(comps, lambda key: _cells(keys, key), keys)


def _runs(group: list[dict]) -> str:
    """How many runs the row's mean is over, and how many more it leaves out for want of a test
    error (a run on data without a test split)."""
    missing = sum(r.get("test_error") is None for r in group)
    return f"{len(group) - missing} (+{missing} without a test error)" if missing else str(len(group))


def _span(values: list[float]) -> Optional[float]:
    """The largest minus the smallest of a full set of recent evaluations (a run with fewer has none)."""
    return max(values) - min(values) if len(values) == RECENT else None


def _per_seed(group: list[dict], field: str, fmt: str, value=lambda v: v) -> str:
    """``field`` of each seed's run in seed order ('-' where a run has none: a row of an older
    results file); seeds named where they are not 0, 1, 2, ..."""
    done = sorted((paired.seed_of(r), r.get(field)) for r in group if r.get("test_error") is not None)
    named = [s for s, _ in done] != list(range(len(done)))
    shown = [(s, value(v) if v is not None else None) for s, v in done]
    return ", ".join(f"{f'seed {s}: ' if named else ''}{fmt.format(v) if v is not None else '-'}"
                     for s, v in shown) or "n/a"


def _cells(keys: list[str], key: tuple) -> list:
    return [json.loads(v) if v != "null" else "all" if k == "labels_per_class" else "-" for k, v in zip(keys, key)]
