"""``metassl report DIR``: the papers' figures for a run directory or a suite output.

A run gets its learning curves, a t-SNE of its features and, when it logged learned mixing
coefficients (``lambdas.jsonl``), MetaMixUp's λ figures. A suite gets its table (with the
papers' numbers), curves per setting averaged over seeds, error against the number of labels,
and the feature figures of one run. A figure a run cannot have is replaced by a line saying why.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Optional

from metassl.engine.rundir import load_run_config
from metassl.engine.setup import RunSetup
from metassl.errors import MetasslError
from metassl.report import figures
from metassl.report import lambdas as lam_mod
from metassl.report.features import load_selected
from metassl.report.html import (Document, Item, Plot, Section, Skipped, Text, shift_headings, table_cells,
                                 to_html, to_markdown)
from metassl.report.records import (Series, load_rows, loss_keys, mean_series, number, read_json, read_jsonl,
                                    series)
from metassl.report.tsne import TSNE_POINTS, embed_run

FILES = {  # each also in engine.rundir.REPORT_FILES, which --overwrite removes
    "errors": "fig_errors.png",
    "losses": "fig_losses.png",
    "labels": "fig_error_vs_labels.png",
    "tsne": "fig_tsne.png",
    "lambda_hist": "fig_lambda_hist.png",
    "lambda_pairs": "fig_lambda_pairs.png",
    "mix_distance": "fig_mix_distance.png",
}
SPLITS = ("train", "val", "test")
LAMBDA_FIGURES = (
    ("lambda_hist", "Histogram of learned λ against Beta(α, α) (MetaMixUp Fig. 6)"),
    ("lambda_pairs", "Mean learned λ per class pair during training (MetaMixUp Fig. 7)"),
    ("mix_distance", "Distance from mixed samples to real samples of other classes (MetaMixUp Fig. 5)"),
)


def labels_text(labels: Optional[int]) -> str:
    return "all labels" if labels is None else f"{labels} labels/class"


class ReportBuilder:
    def __init__(self, folder: Path, tsne_points: int):
        self.folder, self.tsne_points = folder, tsne_points
        self._setups: dict[Path, RunSetup] = {}

    def path(self, key: str) -> Path:
        return self.folder / FILES[key]

    def setup(self, run: Path) -> RunSetup:
        if run not in self._setups:
            self._setups[run] = load_selected(run)
        return self._setups[run]

    # -- curves ----------------------------------------------------------------------------
    def curves(self, errors: dict[str, dict[str, Series]], losses: dict[str, Series], what: str,
               selected_step: Optional[int] = None) -> Section:
        section = Section("Learning curves")
        if any(s.steps for splits in errors.values() for s in splits.values()):
            figures.error_curves(errors, self.path("errors"), f"Top-1 error during training ({what})",
                                 selected_step)
            section.items.append(Plot(FILES["errors"], "Train, validation and test error",
                                      "Top-1 error (%) at each evaluation on the labeled training examples "
                                      "(dotted), the validation set (dashed) and the test set (solid), as in "
                                      "Figure 1 of the meta-gradient SSL paper."))
        else:
            section.items.append(Skipped("error curves", "metrics.jsonl holds no evaluations"))
        if any(s.steps for s in losses.values()):
            figures.loss_curves(losses, self.path("losses"), f"Training loss ({what})")
            section.items.append(Plot(FILES["losses"], "Training loss",
                                      "Mean training loss over each evaluation interval, as in Figure 2 "
                                      "of MetaMixUp."))
        else:
            section.items.append(Skipped("training loss curves", "metrics.jsonl holds no train_* losses"))
        return section

    # -- features --------------------------------------------------------------------------
    def tsne(self, run: Optional[Path], which: str) -> Section:
        """``which`` names the run shown, or, without one, says why there is none."""
        section = Section("Feature visualization")
        what = "t-SNE of penultimate-layer features (meta-gradient SSL Fig. 3)"
        if run is None:
            section.items.append(Skipped(what, which))
            return section
        try:
            s = self.setup(run)
        except MetasslError as exc:
            section.items.append(Skipped(what, str(exc)))
            return section
        emb = embed_run(s, self.tsne_points)
        figures.tsne(emb, s.data.num_classes, self.path("tsne"), f"t-SNE of features ({which})")
        drawn = ", ".join(f"{emb.counts[k]} of {n} {k}" for k, n in emb.available.items() if n)
        section.items.append(Plot(FILES["tsne"], "t-SNE of penultimate-layer features",
                                  f"Features of the validation-selected model of {which}, projected to two "
                                  f"dimensions ({drawn} examples, a seeded sample). The last panel shows the "
                                  f"subsets together: labeled red, unlabeled blue, test gray."))
        for name, n in emb.available.items():
            if n == 0:
                section.items.append(Skipped(f"t-SNE of {name} examples", f"{which} has no {name} examples"))
        if "test" not in emb.available:
            section.items.append(Skipped("t-SNE of test examples", f"the dataset of {which} has no test set"))
        return section

    def lambdas(self, run: Optional[Path], why_none: str) -> Section:
        section = Section("Learned mixing coefficients (MetaMixUp)")
        if run is None:
            section.items += [Skipped(what, why_none) for _, what in LAMBDA_FIGURES]
            return section
        path = run / lam_mod.FILE
        log = lam_mod.read_lambdas(path)
        alpha, logged = log.baseline_alpha, log.alpha is not None
        alpha_note = f"α = {alpha:g}" + ("" if logged else " (the run logs no α; mixup's usual α = 1)")
        counts = log.counts.sum(axis=0)
        if counts.sum() > 0:
            figures.lambda_histogram(log.edges, counts, alpha, logged, self.path("lambda_hist"))
            section.items.append(Plot(FILES["lambda_hist"], LAMBDA_FIGURES[0][1],
                                      f"Density of the λ learned over all of training in {run.name} (bars) "
                                      f"against the Beta(α, α) density mixup samples from, {alpha_note}."))
        else:
            section.items.append(Skipped(LAMBDA_FIGURES[0][1], f"{path} counts no λ values"))
        picks = lam_mod.snapshots(log)
        if picks:
            figures.pair_heatmaps([(log.steps[k], log.pair_mean[k]) for k in picks], self.path("lambda_pairs"))
            section.items.append(Plot(FILES["lambda_pairs"], LAMBDA_FIGURES[1][1],
                                      "Mean λ learned for pairs (x_i of class row, x_j of class column) over "
                                      "the interval before each of the evaluations shown."))
        else:
            section.items.append(Skipped(LAMBDA_FIGURES[1][1], f"{path} counts no class pairs"))
        section.items.append(self.mix_distances(run, log, alpha_note))
        return section

    def mix_distances(self, run: Path, log: lam_mod.LambdaLog, alpha_note: str) -> Item:
        what = LAMBDA_FIGURES[2][1]
        if not len(log.samples):
            return Skipped(what, f"{run / lam_mod.FILE} holds no samples")
        try:
            s = self.setup(run)
        except MetasslError as exc:
            return Skipped(what, str(exc))
        d = lam_mod.mixing_distances(s, log, run / lam_mod.FILE)
        if not (d.mixup.size and d.metamixup.size):
            return Skipped(what, "no real labeled sample belongs to a class other than the mixed pair's")
        figures.mixing_distances(d.mixup, d.metamixup, d.alpha, self.path("mix_distance"))
        return Plot(FILES["mix_distance"], what,
                    f"For {len(d.metamixup)} logged pairs (x_i, x_j), the L2 distance in the selected model's "
                    f"feature space from the mixed image λ·x_i + (1-λ)·x_j to the nearest of {d.real} real "
                    f"labeled images whose class is neither of the pair's; MetaMixUp uses the learned λ, mixup "
                    f"a λ ~ Beta(α, α) for the same pairs, {alpha_note}.")

    # -- documents -------------------------------------------------------------------------
    def run_document(self, run: Path) -> Document:
        cfg = load_run_config(run)
        final = read_json(run / "final.json")
        records = read_jsonl(run / "metrics.jsonl")
        what = f"{cfg.method}, {cfg.model}, {cfg.dataset}, {labels_text(cfg.labels_per_class)}, seed {cfg.seed}"
        summary = Section("Summary", [run_summary(final)])
        errors = {what: {k: series(records, f"{k}_error") for k in SPLITS}}
        losses = {("loss (total)" if k == "train_loss" else k[len("train_"):]): series(records, k)
                  for k in loss_keys(records)}
        selected = final.get("selected_step") if isinstance(final, dict) else None
        labels = Section("Error vs number of labels", [Skipped(
            "test error vs number of labels (meta-gradient SSL Fig. 2)",
            "a run has a single label count; report a suite that varies labels_per_class")])
        has_lambdas = (run / lam_mod.FILE).is_file()
        name = run.resolve().name  # `metassl report .` names the folder, not "."
        return Document(f"Run {name} ({what})", [
            summary, self.curves(errors, losses, what, selected), labels, self.tsne(run, f"run {name}"),
            self.lambdas(run if has_lambdas else None,
                         f"no {lam_mod.FILE}: method {cfg.method!r} learns no mixing coefficient λ")])

    def suite_document(self, suite: Path) -> Document:
        rows = load_rows(suite)
        summary = Section("Results", results_table(suite))
        varying = varying_keys(rows)
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            groups[setting(row, varying)].append(row)
        runs, missing = {}, []
        for row in rows:
            records = read_jsonl(suite / row["name"] / "metrics.jsonl")
            runs[row["name"]] = records
            if not records:
                missing.append(row["name"])
        errors = {label: {k: mean_series([runs[r["name"]] for r in group], f"{k}_error") for k in SPLITS}
                  for label, group in groups.items()}
        losses = {label: mean_series([runs[r["name"]] for r in group], "train_loss")
                  for label, group in groups.items()}
        curves = self.curves(errors, losses, "mean over seeds")
        curves.items += [Skipped(f"curves of run {name}", "it holds no metrics.jsonl") for name in missing]

        best = ranked_runs(suite, rows)
        tsne = self.tsne(best[0] if best else None,
                         f"run {best[0].name}, the lowest test error" if best else
                         "no run of the suite holds selected weights (best.pt)")
        mixers = [suite / r["name"] for r in rows if (suite / r["name"] / lam_mod.FILE).is_file()]
        lam = self.lambdas(mixers[0] if mixers else None, f"no run of the suite holds {lam_mod.FILE} "
                           "(only MetaMixUp learns λ)")
        if len(mixers) > 1:
            lam.items.insert(0, Text(f"Shown for run `{mixers[0].name}`, the first of {len(mixers)} that "
                                     f"learned λ."))
        return Document(f"Suite {suite.resolve().name} ({len(rows)} runs)",
                        [summary, curves, self.labels_section(rows, varying), tsne, lam])

    def labels_section(self, rows: list[dict], varying: list[str]) -> Section:
        section = Section("Error vs number of labels")
        points = errors_by_labels(rows, varying)
        if not points:
            section.items.append(Skipped("test error vs number of labels", "no run reports a test error"))
            return section
        figures.error_vs_labels(points, self.path("labels"))
        section.items.append(Plot(FILES["labels"], "Test error vs number of labels",
                                  "Test error (%) of the validation-selected checkpoint per method and number "
                                  "of labeled examples per class, mean ± sample std over seeds, as in Figure 2 "
                                  "of the meta-gradient SSL paper."))
        if len({n for per in points.values() for n in per}) == 1:
            section.items.append(Text("This suite uses a single label count; a suite that varies "
                                      "`labels_per_class` draws a curve per method."))
        return section


def results_table(suite: Path) -> list[Item]:
    path = suite / "table.md"
    if not path.is_file():
        return [Skipped("results table", f"{suite} holds no table.md")]
    table = path.read_text()
    header = next((line for line in table.splitlines() if line.startswith("|")), "")
    note = ("The *paper* column holds the published error where one of the papers reports the same setting."
            if "paper" in table_cells(header) else
            "No published number is given beside ours: the suite names no `paper:` entries for its settings.")
    return [Text(shift_headings(table, 2)), Text(note)]


def run_summary(final: Optional[dict]) -> Item:
    if not isinstance(final, dict):
        return Text("The run has not finished (no final.json); the figures show its evaluations so far.")
    rows = [("test error of the selected checkpoint (%)", final.get("test_error")),
            ("validation error (%)", final.get("val_error")),
            ("selected step", final.get("selected_step")), ("steps", final.get("steps")),
            ("wall time (s)", final.get("wall_seconds")), ("images per second", final.get("images_per_second")),
            ("device", final.get("device"))]
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {f'{v:.2f}' if isinstance(v, float) else '-' if v is None else v} |" for k, v in rows]
    return Text("\n".join(lines))


def varying_keys(rows: list[dict]) -> list[str]:
    """Override keys besides seed, method and label count whose value differs between runs."""
    keys = dict.fromkeys(k for r in rows for k in (r.get("overrides") or {}))
    keys = [k for k in keys if k not in ("seed", "method", "labels_per_class")]
    return [k for k in keys if len({json.dumps((r.get("overrides") or {}).get(k)) for r in rows}) > 1]


def setting(row: dict, varying: list[str], *, with_labels: bool = True) -> str:
    parts = [str(row.get("method"))]
    if with_labels:
        parts.append(labels_text(row.get("labels_per_class")))
    # the value the run trained with (its config), not the grid's absent entry; a key the run's
    # method does not have is left out
    config, overrides = row.get("config") or {}, row.get("overrides") or {}
    for k in varying:
        if k in config or k in overrides:
            parts.append(f"{k}={json.dumps(config[k] if k in config else overrides[k])}")
    return ", ".join(parts)


def errors_by_labels(rows: list[dict], varying: list[str]) -> dict[str, dict[Optional[int], list[float]]]:
    """Test errors per setting (method and any other varying key) and per label count."""
    points: dict[str, dict[Optional[int], list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        error = number(row.get("test_error"))
        if error is not None:
            points[setting(row, varying, with_labels=False)][row.get("labels_per_class")].append(error)
    return {k: dict(v) for k, v in points.items()}


def ranked_runs(suite: Path, rows: list[dict]) -> list[Path]:
    """Runs that hold selected weights, lowest test error first."""
    done = [r for r in rows if (suite / r["name"] / "best.pt").is_file()]
    done.sort(key=lambda r: (number(r.get("test_error")) is None, number(r.get("test_error")) or 0.0))
    return [suite / r["name"] for r in done]


def build_report(path: Path, kind: str, tsne_points: Optional[int] = None) -> tuple[str, list[Skipped]]:
    """Write the figures, report.html and report.md of a 'run' or 'suite' ``path``; returns
    report.html's path and a line for each figure skipped. The figures are drawn in a staging
    folder and replace an earlier report's only once every one is drawn: a report that fails
    leaves the earlier one as it was."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".report-", dir=path))
    except OSError as exc:
        raise MetasslError(f"report: cannot write in {path}: {exc.strerror or exc}") from None
    try:
        builder = ReportBuilder(staging, TSNE_POINTS if tsne_points is None else tsne_points)
        doc = builder.suite_document(path) if kind == "suite" else builder.run_document(path)
        try:  # only the writing: an error reading the run is its own
            for name in ("report.md", "report.html"):
                (staging / name).write_text(to_markdown(doc) if name == "report.md" else to_html(doc, staging))
            # Figures of an earlier report that this one skips must not linger beside it.
            _swap_in(staging, path, [*FILES.values(), "report.md", "report.html"])
        except OSError as exc:
            named = str(exc.filename2 or exc.filename or "")
            where = named if named and not named.startswith(str(staging)) else path
            raise MetasslError(f"report: cannot write {where}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(path / "report.html"), skipped_items(doc)


def _swap_in(staging: Path, path: Path, names: list[str]) -> None:
    """Replace the files ``names`` of ``path`` by those of ``staging``, removing the ones staging
    lacks: all of them or, where a file cannot be moved, none (the earlier ones are put back)."""
    for name in names:
        if (path / name).is_dir() and not (path / name).is_symlink():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path / name))
    aside = Path(tempfile.mkdtemp(prefix=".report-old-", dir=path))
    moved, placed = [], []
    try:
        for name in names:
            if os.path.lexists(path / name):
                os.replace(path / name, aside / name)
                moved.append(name)
        for name in names:
            if (staging / name).exists():
                os.replace(staging / name, path / name)
                placed.append(name)
    except OSError:
        for name in placed:
            (path / name).unlink(missing_ok=True)
        for name in moved:
            os.replace(aside / name, path / name)
        aside.rmdir()
        raise
    shutil.rmtree(aside)


def skipped_items(doc: Document) -> list[Skipped]:
    """Every figure the document replaced by a line saying why."""
    return [item for section in doc.sections for item in section.items if isinstance(item, Skipped)]
