import base64
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from metassl import config
from metassl.bench.suites import run_suite
from metassl.engine.rundir import prepare_new
from metassl.engine.trainer import Trainer
from metassl.errors import CheckpointError, MetasslError
from metassl.report import write_report
from metassl.report import lambdas as lam_mod
from metassl.report.build import FILES, errors_by_labels, varying_keys
from metassl.report.features import features, load_selected
from metassl.report.tsne import share

# Few points keep the t-SNE of each report to a second or two on one core.
TSNE_POINTS = 300
RUN = ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "steps=40",
       "eval_every=10", "tensorboard=false"]
LAMBDA_FIGS = ("lambda_hist", "lambda_pairs", "mix_distance")


def train(path, overrides):
    cfg = config.load_config(None, overrides)
    prepare_new(path, cfg, overwrite=False)
    Trainer(cfg, path).fit()
    return path


def fabricate_lambdas(run, steps=(10, 20, 30, 40), classes=10, alpha=1.0, per_step=64, fixed_lam=None):
    """A lambdas.jsonl as a MetaMixUp run writes it, with λ piled up near 0 and 1."""
    split = json.loads((run / "split.json").read_text())
    pool = np.array(split["labeled"] + split["unlabeled"])
    rng = np.random.RandomState(0)
    edges = np.linspace(0, 1, 21)
    lines = []
    for step in steps:
        lam = rng.beta(0.2, 0.2, 500)
        mean = rng.uniform(size=(classes, classes)).round(3).tolist()
        count = rng.randint(0, 5, size=(classes, classes))
        for a, b in zip(*np.nonzero(count == 0)):
            mean[a][b] = None
        pairs = rng.choice(pool, size=(per_step, 2))
        sample_lam = rng.beta(0.2, 0.2, per_step) if fixed_lam is None else np.full(per_step, fixed_lam)
        lines.append({"step": step, "alpha": alpha, "hist_edges": edges.tolist(),
                      "hist_counts": np.histogram(lam, edges)[0].tolist(), "pair_mean": mean,
                      "pair_count": count.tolist(),
                      "samples": [[int(i), int(j), float(v)] for (i, j), v in zip(pairs, sample_lam)]})
    (run / "lambdas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return lines


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height, len(data)


def assert_figures(folder, keys):
    html = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    for key in keys:
        path = folder / FILES[key]
        width, height, size = png_size(path)
        assert width >= 300 and height >= 200 and 5_000 < size < 3_000_000, (key, width, height, size)
        assert "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() in html, key
        assert f"]({FILES[key]})" in md, key
    return html, md


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train(tmp_path_factory.mktemp("report") / "run", RUN)


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    suite = {"description": "two tiny digits runs", "seeds": [0],
             "base": {"dataset": "digits", "model": "mlp", "val_per_class": 5, "steps": 30, "eval_every": 10,
                      "batch_size": 32, "tensorboard": False},
             "grid": {"labels_per_class": [3, 5]},
             "paper": [{"match": {"labels_per_class": 5}, "error": 12.5, "source": "Reference Table 9"}]}
    (root / "tiny.yaml").write_text(yaml.safe_dump(suite))
    run_suite(str(root / "tiny.yaml"), root / "out")
    return root / "out"


def test_run_report_draws_curves_and_tsne_and_lists_what_it_skips(run_dir):
    out, skipped = write_report(run_dir, tsne_points=TSNE_POINTS)
    assert out == str(run_dir / "report.html")
    assert skipped[0].line == ("Skipped: test error vs number of labels (meta-gradient SSL Fig. 2): a run has a single "
                          "label count; report a suite that varies labels_per_class.") and len(skipped) == 4
    html, md = assert_figures(run_dir, ("errors", "losses", "tsne"))
    for key in ("labels", *LAMBDA_FIGS):
        assert not (run_dir / FILES[key]).exists()
    # every figure the run cannot have is named with its reason
    for text in (html, md):
        assert text.count("Skipped: ") == 4
        assert "single label count" in text
        assert text.count("no lambdas.jsonl: method 'supervised' learns no mixing coefficient") == 3
    final = json.loads((run_dir / "final.json").read_text())
    assert f"| test error of the selected checkpoint (%) | {final['test_error']:.2f} |" in md


def test_lambda_figures_from_a_lambdas_file(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "meta")
    lines = fabricate_lambdas(run)
    write_report(run, tsne_points=TSNE_POINTS)
    html, md = assert_figures(run, ("errors", "losses", "tsne", *LAMBDA_FIGS))
    assert "learns no mixing coefficient" not in html and html.count("Skipped: ") == 1
    log = lam_mod.read_lambdas(run / "lambdas.jsonl")
    assert log.steps == [10, 20, 30, 40] and log.alpha == 1.0
    assert log.counts.sum() == 4 * 500 and len(log.samples) == 4 * 64
    for k, line in enumerate(lines):
        assert np.array_equal(np.isnan(log.pair_mean[k]), np.array(line["pair_count"]) == 0)
    assert lam_mod.snapshots(log) == [0, 1, 2, 3]
    # A later report without the file drops the λ figures instead of leaving stale ones.
    (run / "lambdas.jsonl").unlink()
    write_report(run, tsne_points=TSNE_POINTS)
    assert not any((run / FILES[k]).exists() for k in LAMBDA_FIGS)
    assert (run / "report.html").read_text().count("learns no mixing coefficient") == 3


def test_mixing_distances_measure_the_mixed_image_against_other_classes(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "meta")
    fabricate_lambdas(run, steps=(40,), per_step=32, fixed_lam=1.0)
    log = lam_mod.read_lambdas(run / "lambdas.jsonl")
    s = load_selected(run)
    d = lam_mod.mixing_distances(s, log, run / "lambdas.jsonl")
    # λ = 1 keeps x_i whole: the distance is x_i's own distance to the nearest labeled example
    # whose class is neither y_i nor y_j.
    i, j = log.samples[:, 0].astype(int), log.samples[:, 1].astype(int)
    labeled = s.split.labeled
    real, real_y = features(s, s.x[labeled]), s.y[labeled].numpy()
    own = features(s, s.x[torch.as_tensor(i)])
    y = s.y.numpy()
    expected = [np.linalg.norm(real[(real_y != y[a]) & (real_y != y[b])] - f, axis=1).min()
                for f, a, b in zip(own, i, j)]
    np.testing.assert_allclose(d.metamixup, expected, rtol=1e-4, atol=1e-4)
    assert d.alpha == 1.0 and d.real == len(labeled) and len(d.mixup) == 32
    assert not np.allclose(d.mixup, d.metamixup)


def test_tsne_points_are_shared_between_subsets():
    assert share({"labeled": 50, "unlabeled": 1338, "test": 359}, 300) == {"labeled": 50, "test": 125,
                                                                          "unlabeled": 125}
    assert share({"labeled": 50, "unlabeled": 0, "test": 359}, 1500) == {"labeled": 50, "unlabeled": 0,
                                                                        "test": 359}


def test_run_without_unlabeled_examples_skips_that_panel(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "all-labeled")
    split = json.loads((run / "split.json").read_text())
    split["unlabeled"] = []
    (run / "split.json").write_text(json.dumps(split))
    # the weights stand for a run trained on that split: drop the split they record
    state = torch.load(run / "best.pt", weights_only=True)
    state.pop("split")
    torch.save(state, run / "best.pt")
    write_report(run, tsne_points=TSNE_POINTS)
    html, _ = assert_figures(run, ("errors", "losses", "tsne"))
    assert "Skipped: t-SNE of unlabeled examples: run all-labeled has no unlabeled examples" in html


def test_suite_report_has_the_table_with_paper_numbers_and_error_vs_labels(suite_dir, cli):
    proc = cli("report", str(suite_dir), check=True)
    assert proc.stdout.strip() == str(suite_dir / "report.html")
    html, md = assert_figures(suite_dir, ("errors", "losses", "labels", "tsne"))
    assert "<td>12.5 (Reference Table 9)</td>" in html and "12.5 (Reference Table 9)" in md
    assert "<th>labels_per_class</th>" in html
    rows = json.loads((suite_dir / "results.json").read_text())
    best = min(rows, key=lambda r: r["test_error"])
    assert f"run {best['name']}, the lowest test error" in html
    # error vs labels: one line for the method, one point per label count
    assert errors_by_labels(rows, varying_keys(rows)) == {
        "supervised": {r["labels_per_class"]: [r["test_error"]] for r in rows}}
    assert html.count("(only MetaMixUp learns λ)") == 3


def test_bad_directories_are_one_line_errors(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("method: mixup\nsteps: 5\n")
    (mine / "report.md").write_text("my notes\n")
    for target, message in ((tmp_path / "missing", "does not exist"),
                            (tmp_path, "neither a run directory"),
                            (mine, "holds a config.yaml that is not a metassl run's")):
        proc = cli("report", str(target))
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "report.md"]
    assert (mine / "report.md").read_text() == "my notes\n"


def test_malformed_run_files_name_the_file_and_line(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "broken")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(CheckpointError, match=r"metrics.jsonl line 2 is not JSON"):
        write_report(run, tsne_points=TSNE_POINTS)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = fabricate_lambdas(run)
    records[1]["hist_counts"] = records[1]["hist_counts"][:5]
    (run / "lambdas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(CheckpointError, match=r"lambdas.jsonl line 2: hist_edges must hold one more value"):
        lam_mod.read_lambdas(run / "lambdas.jsonl")


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_beta_density_matches_scipy(alpha):
    from scipy import stats

    from metassl.report.figures import beta_pdf

    x = np.linspace(0.005, 0.995, 199)
    np.testing.assert_allclose(beta_pdf(x, alpha), stats.beta.pdf(x, alpha, alpha), rtol=1e-9)


def test_pair_snapshots_spread_over_training_and_skip_empty_evaluations():
    counts = [np.ones((3, 3)) for _ in range(10)]
    counts[0] = np.zeros((3, 3))
    log = lam_mod.LambdaLog(list(range(10, 110, 10)), None, np.linspace(0, 1, 21), np.zeros((10, 20)),
                            [np.full((3, 3), 0.5)] * 10, counts, np.zeros((0, 3)))
    assert lam_mod.snapshots(log) == [1, 4, 6, 9]
    assert log.baseline_alpha == lam_mod.DEFAULT_ALPHA


def test_a_setting_is_labelled_with_the_value_its_runs_trained_with():
    from metassl.report.build import setting

    rows = [{"method": "fixmatch", "labels_per_class": 10, "overrides": {"method": "fixmatch"},
             "config": {"fixmatch.meta_gradient": False}},
            {"method": "fixmatch", "labels_per_class": 10,
             "overrides": {"method": "fixmatch", "fixmatch.meta_gradient": True}, "config": {"fixmatch.meta_gradient": True}},
            {"method": "supervised", "labels_per_class": 10, "overrides": {"method": "supervised"}, "config": {}}]
    varying = varying_keys(rows)
    assert varying == ["fixmatch.meta_gradient"]
    labels = [setting(r, varying, with_labels=False) for r in rows]
    assert labels == ["fixmatch, fixmatch.meta_gradient=false", "fixmatch, fixmatch.meta_gradient=true", "supervised"]


def test_a_report_that_fails_leaves_the_earlier_one_as_it_was(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "again")
    write_report(run, tsne_points=TSNE_POINTS)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith(("fig_", "report."))}
    assert {"fig_errors.png", "fig_tsne.png", "report.md", "report.html"} <= set(before)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(CheckpointError, match=r"metrics.jsonl line 2 is not JSON"):
        write_report(run, tsne_points=TSNE_POINTS)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith(("fig_", "report."))}
    assert after == before
    assert not [p for p in run.iterdir() if p.name.startswith(".report-")]


def test_a_report_that_cannot_replace_one_file_replaces_none(run_dir, tmp_path, monkeypatch):
    from metassl.report import build

    run = shutil.copytree(run_dir, tmp_path / "stuck")
    write_report(run, tsne_points=TSNE_POINTS)
    (run / "fig_tsne.png").unlink()  # a figure the next report adds
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith(("fig_", "report."))}
    real, failed = os.replace, []

    def replace(src, dst):
        if Path(dst) == run / "report.md" and not failed:  # the new report.md cannot go in, once
            failed.append(src)
            raise PermissionError(1, "Operation not permitted", str(dst))
        return real(src, dst)

    monkeypatch.setattr(build.os, "replace", replace)
    with pytest.raises(MetasslError, match=f"report: cannot write {re.escape(str(run / 'report.md'))}: "
                                           "Operation not permitted"):
        write_report(run, tsne_points=TSNE_POINTS)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith(("fig_", "report."))}
    assert after == before  # the earlier figures back in place, the new one not added
    assert not [p for p in run.iterdir() if p.name.startswith(".report-")]


def test_report_names_a_file_it_cannot_write_and_the_folder_it_was_given(run_dir, tmp_path, monkeypatch, capsys):
    from metassl.cli import main

    run = shutil.copytree(run_dir, tmp_path / "named")
    write_report(run, tsne_points=TSNE_POINTS)
    (run / "fig_errors.png").unlink()
    (run / "fig_errors.png").mkdir()
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"metassl: error: report: cannot write {run / 'fig_errors.png'}: Is a directory"
    assert (run / "report.md").read_bytes() and (run / "fig_tsne.png").exists()
    (run / "fig_errors.png").rmdir()
    # `metassl report .` names the folder; the figures it skips are named on the terminal too
    monkeypatch.chdir(run)
    assert main(["report", "."]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "report.html"
    assert out.err.strip() == ("metassl: report: 4 figures skipped, each with its reason in the report: test error "
                               "vs number of labels (meta-gradient SSL Fig. 2); Histogram of learned λ against "
                               "Beta(α, α) (MetaMixUp Fig. 6); Mean learned λ per class pair during training "
                               "(MetaMixUp Fig. 7); Distance from mixed samples to real samples of other classes "
                               "(MetaMixUp Fig. 5)")
    assert (run / "report.md").read_text().startswith("# Run named (")
    assert main(["report", "config.yaml"]) == 1
    assert "report: config.yaml is a file; give a run directory" in capsys.readouterr().err
