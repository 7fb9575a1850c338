"""The ``metassl`` command line."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from PIL import Image

from metassl.errors import ConfigError, MetasslError, storage_message
from metassl.files import check_out_folder


def cmd_train(args) -> int:
    from metassl import config as config_mod
    from metassl.engine import rundir
    from metassl.engine.trainer import Trainer

    # Under torchrun only rank 0 touches the run directory. Its lock is held until the run ends.
    rank0 = os.environ.get("RANK", "0") == "0"
    if args.resume:
        if "=" in args.resume and not Path(args.resume).exists():  # `--out RUN --resume steps=N`
            raise ConfigError(f"train: --resume takes the run's folder, not {args.resume!r}: metassl train "
                              f"--resume RUN {args.resume}")
        if args.config:
            raise ConfigError("train: --resume takes its config from the run; drop --config")
        if args.out or args.overwrite:
            raise ConfigError(f"train: --resume continues the run in {args.resume} where it is; drop "
                               f"{'--out' if args.out else '--overwrite'}")
        path = Path(args.resume)
        overrides = config_mod.parse_overrides(args.overrides)
        lock = rundir.lock_run(path) if rank0 and (path / "config.yaml").is_file() else None
        try:
            if lock is not None:
                rundir.remove_stale_files(path)
            cfg = rundir.load_run_config(path, overrides)
            if cfg.dataset == "arrays":
                raise MetasslError(f"train: {path} was fit in Python (SSLClassifier) on arrays that are not on "
                                   "disk; it cannot be resumed from the command line: fit it again in Python")
            done = rundir.read_final(path)
            if done is not None:
                if done.get("steps", 0) > cfg.steps:
                    raise rundir.shorter_run(path, done["steps"], cfg.steps)
                if done.get("steps", 0) == cfg.steps:
                    print(json.dumps(done, indent=2))
                    print(f"metassl: {path} had already finished its {cfg.steps} steps", file=sys.stderr)
                    print(summary(done, path), file=sys.stderr)
                    return 0
            if not (path / "checkpoint.pt").exists():
                raise MetasslError(f"train: {path} holds no checkpoint.pt to resume from; start it again "
                                   f"with metassl train --out {path} --overwrite")
            trainer = Trainer(cfg, path, resume=True)
            final = _fit(trainer, cfg, path)
        finally:
            if lock is not None:
                lock.close()
    else:
        if args.out is not None and not args.out.strip():
            raise ConfigError(f"train: --out {args.out!r} names no folder; give one, or leave --out out for "
                              "runs/<dataset>-<method>-...")
        cfg = config_mod.anchored(config_mod.load_config(args.config, args.overrides))
        path = Path(args.out) if args.out else rundir.default_run_dir(cfg)
        rundir.check_outside_data(path, cfg)
        claim = rundir.claim_new(path, overwrite=args.overwrite) if rank0 else None
        try:
            # A run already in the directory is removed only once this one has read its data, built
            # its model and started fitting, when an interrupt leaves a checkpoint of it.
            trainer = Trainer(cfg, path, overwrite=args.overwrite)
        except BaseException:
            if claim is not None:  # nothing of a run that never started is left behind
                claim.abandon()
            raise
        try:
            final = _fit(trainer, cfg, path)
        finally:
            if claim is not None:
                claim.release()
    if trainer.rank == 0:
        print(json.dumps(final, indent=2))
        sys.stdout.flush()
        print(summary(final, path), file=sys.stderr)
    return 0


def _fit(trainer, cfg, path: Path) -> dict:
    print(f"metassl: training {cfg.method} on {cfg.dataset} with {cfg.model} -> {path}", file=sys.stderr)
    return trainer.fit()


def summary(final: dict, path: Path) -> str:
    """The last line of a run, for a person: its test error, the step it comes from, where the run is."""
    from metassl.engine.logger import duration

    test, val, step = final.get("test_error"), final.get("val_error"), final.get("selected_step")
    chosen = ("the last step" if final.get("select") == "last"
              else f"lowest validation error, {val:.2f}%" if val is not None else "no validation set")
    result = f"test error {test:.2f}%" if test is not None else "no test set"
    return (f"metassl: done in {duration(final.get('wall_seconds', 0))}: {result} with the weights of "
            f"step {step} of {final.get('steps')} ({chosen}); run directory {path}")


def cmd_eval(args) -> int:
    from metassl.engine.rundir import evaluate_run

    print(json.dumps(evaluate_run(Path(args.run), args.weights, args.device, args.data_root, args.batch_size),
                     indent=2))
    return 0


def cmd_bench(args) -> int:
    from metassl.bench import speed, suites

    if args.suite == "speed":
        ignored = [f"{o}" for o in (args.overrides or []) + (args.include or [])]
        if ignored or args.only:
            what = ignored[0] if ignored else "--only"
            raise ConfigError(f"bench speed: {what} does not apply; speed takes its settings from its own options "
                              "(--model, --batch-size, ...), a row's keys from --methods METHOD:key=value, "
                              "and threads from OMP_NUM_THREADS")
        check_out_folder(Path(args.out), f"bench speed: --out {args.out}")
        if args.dry_run:
            print("\n".join(speed.check_rows(args.model, args.methods, (args.channels, args.image_size,
                                                                         args.image_size))))
            return 0
        rows = speed.run_speed(Path(args.out), model=args.model, methods=args.methods,
                               batch_size=args.batch_size, rounds=args.rounds, device=args.device,
                               channels_last=None if args.layout is None else args.layout == "nhwc",
                               shape=(args.channels, args.image_size, args.image_size),
                               profile_steps=args.profile)
        print(speed.to_markdown(rows))
        if args.profile:
            print(f"profiles of {args.profile} more steps a row: {Path(args.out) / 'profile.md'}")
        return 0
    # ``--include A.json threads=1``: argparse hands the trailing key=value to --include; it is an override
    include = [f for f in args.include or [] if "=" not in f or Path(f).exists()]
    overrides = list(args.overrides or []) + [f for f in args.include or [] if f not in include]
    table = suites.run_suite(args.suite, Path(args.out), dry_run=args.dry_run, overrides=overrides, only=args.only,
                             jobs=args.jobs, include=[Path(f) for f in include])
    print(table)
    return 0


def cmd_report(args) -> int:
    from metassl.report import write_report

    out, skipped = write_report(Path(args.dir))
    if skipped:
        names = "; ".join(item.what for item in skipped)
        print(f"metassl: report: {len(skipped)} figure{'s' if len(skipped) > 1 else ''} skipped, each with "
              f"its reason in the report: {names}", file=sys.stderr)
    print(out)
    return 0


def cmd_predict(args) -> int:
    from metassl.api.predict import predict_to_csv

    print(predict_to_csv(Path(args.run), [Path(p) for p in args.inputs], Path(args.out),
                         batch_size=args.batch_size, device=args.device))
    return 0


def cmd_export(args) -> int:
    from metassl.api.export import export_run

    print(export_run(Path(args.run), args.format, Path(args.out)))
    return 0


def cmd_list(args) -> int:
    from metassl.bench.suites import suite_names
    from metassl.data.sources import DATASETS
    from metassl.methods import METHODS
    from metassl.models import MODELS

    print("methods: " + ", ".join(METHODS.names()))
    print("models: " + ", ".join(MODELS.names()))
    print("datasets: " + ", ".join(DATASETS))
    print("suites: " + ", ".join(suite_names() + ["speed"]))
    return 0


def cmd_config(args) -> int:
    from metassl.config_keys import format_keys

    sys.stdout.write(format_keys(args.method))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metassl", description="Semi-supervised image classification "
                                "with meta-gradient pseudo labels and MetaMixUp.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run",
                       epilog="`metassl config METHOD` lists every key of a run of METHOD, with its type, "
                              "default and meaning.")
    t.add_argument("--config", action="append", metavar="FILE",
                   help="YAML file of config keys; may be given more than once, a later file's keys over an earlier's")
    t.add_argument("--out", help="run directory (default runs/<dataset>-<method>-<model>-l<labels>-s<seed>)")
    t.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, dotted keys nest")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="recompute a run's errors from its saved weights")
    e.add_argument("run", help="run directory")
    e.add_argument("--weights", choices=["selected", "last"], default="selected",
                   help="the validation-selected weights (best.pt) or the last checkpoint's (EMA where the run used it)")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to evaluate (default: the run's device)")
    e.add_argument("--data-root", help="where the run's data lies now, if it has moved since training "
                                       "(default: the run's data_root)")
    e.add_argument("--batch-size", type=_positive_int, help="inputs per forward pass (default: the run's "
                                                              "eval_batch_size)")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="run a benchmark suite, or 'speed' to time every method's step")
    b.add_argument("suite", help="a shipped suite name, a suite YAML file, or 'speed'")
    b.add_argument("--out", required=True, help="output directory (finished runs are skipped)")
    b.add_argument("--dry-run", action="store_true", help="list the runs (speed: the rows) without training or timing")
    b.add_argument("--jobs", type=_positive_int, default=1, help="suite: runs trained at once, one thread each")
    b.add_argument("--only", nargs="+", action="extend", metavar="KEY=V1,V2", help="suite: train only the runs whose "
                   "settings match (e.g. method=supervised,mixup seed=0); the table covers every finished run")
    b.add_argument("--include", nargs="+", action="extend", metavar="RESULTS_JSON", help="suite: earlier results.json files of "
                   "this suite (another machine's, an earlier session's): their runs count as finished and join "
                   "the table wherever --out has not finished them")
    b.add_argument("--model", default="cnn3", help="speed: model to time")
    b.add_argument("--methods", nargs="*", help="speed: methods to time (default all, and "
                   "meta_pl_mixup_reference, the authors' iteration); name:key=value,... times a variant "
                   "setting the method's keys or amp, compile, lr, momentum, nesterov, weight_decay, steps, "
                   "e.g. metamixup:grad=first_order or supervised:compile=on")
    b.add_argument("--batch-size", type=_positive_int, default=64, help="speed: labeled and unlabeled batch size")
    b.add_argument("--rounds", type=_positive_int, default=20, help="speed: timed steps per method")
    b.add_argument("--profile", type=_non_negative_int, default=0, metavar="STEPS",
                   help="speed: after timing, profile STEPS more steps of each row (torch.profiler) and write "
                        "profile.md and profile.json: self time by operator family and the costliest operators")
    b.add_argument("--image-size", type=_positive_int, default=28, help="speed: side of the synthetic images (default 28)")
    b.add_argument("--channels", type=int, default=1, choices=[1, 3], help="speed: image channels (default 1)")
    b.add_argument("--layout", choices=["nhwc", "nchw"],
                   help="speed: memory layout of images and conv weights (default: as training lays them out, "
                        "nhwc on CUDA and nchw on a CPU unless channels_last is set)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("overrides", nargs="*", metavar="key=value", help="suite: overrides for every run")
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser("report", help="write figures, report.html and report.md for a run or suite")
    r.add_argument("dir", help="a run directory or a suite output directory")
    r.set_defaults(func=cmd_report)

    pr = sub.add_parser("predict", help="predict classes of images, folders, npz files or CSV tables with a run")
    pr.add_argument("run", help="run directory")
    pr.add_argument("inputs", nargs="+",
                    help="image files, folders of images, .npz files, or .csv tables of feature vectors")
    pr.add_argument("--out", default="preds.csv", help="CSV to write (default preds.csv)")
    pr.add_argument("--batch-size", type=_positive_int, default=256, help="inputs per forward pass (default 256)")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export a run's selected model to ONNX or TorchScript")
    ex.add_argument("run", help="run directory")
    ex.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    ex.add_argument("--out", required=True, help="file to write")
    ex.set_defaults(func=cmd_export)

    ls = sub.add_parser("list", help="list methods, models, datasets and suites")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("config", help="list every key of a run of a method: type, default, meaning")
    c.add_argument("method", help="a method name (metassl list names them)")
    c.set_defaults(func=cmd_config)
    return p


def _whole_number(text: str, least: int) -> int:
    """A whole number >= ``least``, or argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number >= {least}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole_number(text, 0)


def _subparser(p: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (``train``, ``bench``, ...), whose usage line an error should show."""
    for action in p._subparsers._group_actions if p._subparsers else ():
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    # key=value overrides may follow options (argparse alone only takes them before the first one).
    args, extra = p.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            _subparser(p, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    # SIGTERM stops a command as Ctrl-C does, from its first line: a run still reading its data
    # gives its folder back (training installs its own handler, which checkpoints first).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main_thread else None
    try:
        with warnings.catch_warnings():
            # Pillow warns of images of 89-179 megapixels on its own two lines, and reads them; larger
            # ones are its DecompressionBombError, which the reader names in one line.
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            code = args.func(args)
        sys.stdout.flush()
        return code
    except MetasslError as exc:
        print(f"metassl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("metassl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``metassl bench ... | head``): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, RuntimeError) as exc:
        # A full disk, a read-only file system, a file without permission: the machine's
        # storage, named in one line; anything else is a defect of ours and keeps its traceback.
        message = storage_message(exc)
        if message is None:
            raise
        print(f"metassl: error: {message}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            # None: a handler installed outside Python, which cannot be put back; the default then
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
