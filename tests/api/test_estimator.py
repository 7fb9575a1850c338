"""SSLClassifier: the README example, labeled/unlabeled handling, vectors, persistence, errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metassl import SSLClassifier
from metassl.api.estimator import ParamError
from metassl.api.export import export_run
from metassl.api.predict import predict_to_csv
from metassl.data.arrays import from_arrays
from metassl.errors import ConfigError, DataError
from tests.conftest import REPO

FAST = dict(steps=12, eval_every=6, batch_size=16, val_per_class=2)


def test_readme_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own data"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["clf"].score(scope["X"][scope["test"]], scope["y"][scope["test"]]) > 0.5
    assert (tmp_path / "runs" / "digits-api" / "best.pt").is_file()


def blobs(n: int, rng, d: int = 3, side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class (0, 1, 2) is which channel is bright (how bright, in grayscale)."""
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.3, (n, d, side, side)).astype(np.float32)
    if d == 1:
        x += 0.3 * y[:, None, None, None]
    else:
        x[np.arange(n), y] += 0.6
    return x, y


def test_fit_keeps_unlabeled_out_of_labeled_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    x, y = blobs(30, rng)
    xu, _ = blobs(20, rng)
    names = np.array(["cat", "dog", "eel"])[y]
    clf = SSLClassifier(method="mixup", model="cnn3", run_dir=tmp_path / "run", **FAST)
    assert clf.fit(torch.from_numpy(x), names, X_unlabeled=xu) is clf
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert max(split["labeled"] + split["val"]) < 30 and set(range(30, 50)) <= set(split["unlabeled"])
    assert len(split["val"]) == 6 and len(split["labeled"]) == 24  # labels_per_class=None: every label used
    assert list(clf.classes_) == ["cat", "dog", "eel"] and clf.final_["val_error"] is not None
    proba = clf.predict_proba(x)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(x)) <= {"cat", "dog", "eel"} and 0 <= clf.score(x, names) <= 1
    # the estimator's run directory is an ordinary run: predict reads it the same way
    np.savez(tmp_path / "x.npz", x=x[:4])
    predict_to_csv(tmp_path / "run", [tmp_path / "x.npz"], tmp_path / "p.csv")
    rows = [line.split(",") for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert np.allclose([[float(v) for v in r[2:]] for r in rows], proba[:4], atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_vectors_of_any_scale_fit_save_load_and_export(tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 1, (2, 5)) * [1, 10, 100, 1000, 1e4]

    def sample(n):
        y = rng.integers(0, 2, n)
        return centers[y] + rng.normal(0, 0.2, (n, 5)) * [1, 10, 100, 1000, 1e4], y

    x, y = sample(60)
    xu, _ = sample(40)
    xt, yt = sample(40)
    clf = SSLClassifier(method="mixup", lr=0.1, **{**FAST, "steps": 60, "eval_every": 30}).fit(x, y + 5, xu)
    assert clf.cfg_.model == "mlp" and clf.cfg_.augment.translate == 0 and clf.cfg_.augment.flip == "off"
    assert clf.score(xt, yt + 5) > 0.9 and list(clf.classes_) == [5, 6]
    saved = clf.save(tmp_path / "vec")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ParamError, match="afile exists and is not a directory"):
        clf.save(tmp_path / "afile")
    before = (saved / "best.pt").read_bytes()
    with pytest.raises(ParamError, match="already holds a run; pass overwrite=True"):
        clf.save(saved)
    assert (saved / "best.pt").read_bytes() == before
    (saved / "metrics.jsonl").write_text("{}\n")  # a file of the run the new one replaces
    assert clf.save(saved, overwrite=True) == saved and not (saved / "metrics.jsonl").exists()
    from metassl.engine.rundir import evaluate_run
    from metassl.errors import CheckpointError
    with pytest.raises(CheckpointError, match=r"vec was trained from arrays in Python .*SSLClassifier.score"):
        evaluate_run(saved)
    again = SSLClassifier.load(saved)
    assert again.predict(xt).dtype == clf.predict(xt).dtype  # integer labels stay integers
    np.testing.assert_array_equal(again.predict_proba(xt), clf.predict_proba(xt))
    export_run(saved, "torchscript", tmp_path / "vec.pt")
    scripted = torch.jit.load(str(tmp_path / "vec.pt"))
    torch.testing.assert_close(scripted(torch.from_numpy(xt).float()).numpy(), clf.predict_proba(xt))
    with pytest.raises(DataError, match="N x 5"):
        clf.predict(xt[:, :4])


def test_array_dataset_with_unlabeled_rows_and_sklearn_clone(tmp_path):
    from sklearn.base import clone

    rng = np.random.default_rng(2)
    x, y = blobs(24, rng, d=1)
    y[::4] = -1
    ds = from_arrays("mine", x, y, classes=["a", "b", "c"], allow_unlabeled=True)
    clf = SSLClassifier(method="mixup", model="mlp", **FAST)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    clf.fit(ds)
    assert list(clf.classes_) == ["a", "b", "c"] and clf.run_dir_ is None
    assert clf.predict_proba(x[:, 0]).shape == (24, 3)  # N x H x W is grayscale
    assert clf.set_params(lr=0.01).get_params()["lr"] == 0.01


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="'stpes'"):
        SSLClassifier(stpes=10)
    with pytest.raises(ConfigError, match="mixup.alpha"):
        SSLClassifier(method="mixup", mixup={"alpha": -1})
    with pytest.raises(ConfigError, match="sets 'dataset' itself"):
        SSLClassifier(dataset="digits")
    clf = SSLClassifier(method="mixup", model="mlp", **FAST)
    with pytest.raises(ConfigError, match="call fit"):
        clf.predict(np.zeros((1, 8, 8)))
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(DataError, match="one label per example"):
        clf.fit(x, [0, 1, 0])
    with pytest.raises(DataError, match="X_unlabeled examples have shape 3 x 8 x 8"):
        clf.fit(x, [0, 1, 0, 1], X_unlabeled=np.zeros((2, 3, 8, 8)))
    with pytest.raises(DataError, match="float values from 0.0 to 2.0"):
        clf.fit(x + 2 * (np.arange(4) == 3)[:, None, None, None], [0, 1, 0, 1])


def test_predict_rejects_images_of_another_shape(tmp_path):
    rng = np.random.default_rng(3)
    x, y = blobs(24, rng)
    clf = SSLClassifier(method="mixup", model="cnn3", **FAST).fit(x, y)
    with pytest.raises(DataError, match="1 x 8 x 8 images .* fit on 3 x 8 x 8"):
        clf.predict(x[:, :1])
    assert Path(clf.save(tmp_path / "r") / "data_info.json").is_file()


def test_a_refit_that_fails_to_start_leaves_the_run_in_run_dir(tmp_path):
    rng = np.random.default_rng(3)
    x, y = blobs(30, rng, d=1)
    run = tmp_path / "run"
    SSLClassifier(method="supervised", model="mlp", run_dir=run, **FAST).fit(x, y)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert "final.json" in before and "checkpoint.pt" in before
    # 10 examples a class cannot give 20 validation images a class: the split fails in the
    # trainer, after the data was read and before anything was trained.
    bad = SSLClassifier(method="supervised", model="mlp", run_dir=run, **{**FAST, "val_per_class": 20})
    with pytest.raises(Exception) as info:
        bad.fit(x, y)
    assert "val" in str(info.value)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before
    # into an empty folder of the user's, a fit that fails to start leaves it empty
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="val"):
        SSLClassifier(method="supervised", model="mlp", run_dir=empty, **{**FAST, "val_per_class": 20}).fit(x, y)
    assert list(empty.iterdir()) == []


def test_fit_leaves_the_callers_random_generators_where_they_were():
    import random

    rng = np.random.default_rng(4)
    x, y = blobs(24, rng, d=1)
    random.seed(42), np.random.seed(42), torch.manual_seed(42)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(42), np.random.seed(42), torch.manual_seed(42)
    SSLClassifier(method="supervised", model="mlp", **FAST).fit(x, y)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_class_names_become_integers_only_where_each_is_its_integers_spelling(tmp_path):
    from metassl.data.runinfo import write_data_info

    rng = np.random.default_rng(5)
    x, y = blobs(30, rng, d=1)
    clf = SSLClassifier(method="supervised", model="mlp", **FAST).fit(x, y)
    run = clf.save(tmp_path / "run")
    for names, expected in ((["01", "1", "10"], ["01", "1", "10"]), (["0", "1", "10"], [0, 1, 10]),
                            (["-1", "00", "7"], ["-1", "00", "7"])):
        info = {k: v for k, v in clf.info_.items() if k != "labels"}  # as `metassl train` writes it
        write_data_info(run, {**info, "classes": names})
        loaded = SSLClassifier.load(run)
        assert loaded.classes_.tolist() == expected
        assert set(loaded.predict(x[:6, 0]).tolist()) <= set(expected)


def test_labels_that_are_not_class_labels_are_input_errors_naming_the_problem():
    from metassl.api.estimator import InputError

    x = np.zeros((4, 1, 8, 8), np.float32)
    clf = SSLClassifier(method="supervised", model="mlp", **FAST)
    with pytest.raises(InputError, match=r"y\[2\] = nan is not a class label"):
        clf.fit(x, [0.0, 1.0, np.nan, 1.0])
    with pytest.raises(InputError, match=r"y\[1\] = 0.5 is not a class label"):
        clf.fit(x, [0.0, 0.5, 1.0, 1.0])
    with pytest.raises(InputError, match="mixes labels of types int, str"):
        clf.fit(x, np.array(["a", -1, "b", "a"], dtype=object))
    # a plain list, which numpy would read as the strings 'a', '-1', 'b': not a class named '-1'
    with pytest.raises(InputError, match="mixes labels of types int, str"):
        clf.fit(x, ["a", -1, "b", "a"])
    with pytest.raises(InputError, match="mixes labels of types float, str"):
        clf.fit(x, ("a", -1.0, "b", "a"))
    with pytest.raises(InputError, match="mixes labels of types int, str"):  # a column of labels
        clf.fit(x, [["a"], [-1], ["b"], ["a"]])
    with pytest.raises(InputError, match=r"^fit: y\[3\] = nan is not a class label"):
        clf.fit(x, ["a", "b", "a", np.nan])
    with pytest.raises(InputError, match=r"^fit: y\[1\] = None is not a class label \(labels are whole numbers"):
        clf.fit(x, np.array(["a", None, "b", "a"], dtype=object))
    with pytest.raises(InputError, match=r"^fit: y\[3\] = nan is not a class label"):
        clf.fit(x, np.array(["a", "b", "a", np.nan], dtype=object))
    # numpy's and scikit-learn's messages on one line, without the arrays they print
    with pytest.raises(InputError) as info:
        clf.fit(x, np.arange(4) + 1j)
    assert str(info.value) == "fit: y does not hold class labels (Complex data not supported)"
    with pytest.raises(InputError) as info:
        clf.fit(np.arange(40.0), np.arange(40) % 2)
    assert str(info.value).startswith("X: Expected 2D array, got 1D array instead: Reshape your data")
    assert "39." not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ParamError, match="run_dir=123 is not a path"):
        SSLClassifier(run_dir=123)
    with pytest.raises(ParamError, match="image_size=16 does not apply to dataset=arrays"):
        SSLClassifier(image_size=16)


def test_vectors_of_any_scale_or_offset_keep_their_levels():
    """Features are standardised in float64: 1e160, 1e-160 and a timestamp-like feature (1e9 plus a
    spread of 10) train and keep their quantisation levels, which float32 would lose."""
    from metassl.data.vectors import VectorEncoder

    rng = np.random.default_rng(6)
    stamp = 1e9 + 10 * rng.normal(size=(2000, 1))
    levels = VectorEncoder.fit(stamp)(torch.from_numpy(stamp))[:, 0, 0, 0]
    assert len(torch.unique(levels)) > 100
    x = rng.normal(size=(40, 4)) + np.repeat([[0.0], [3.0]], 20, axis=0)
    y = np.repeat([0, 1], 20)
    for scale in (1e160, 1e-160):
        clf = SSLClassifier(method="supervised", **{**FAST, "steps": 30}).fit(x * scale, y)
        assert clf.score(x * scale, y) > 0.8


def test_one_rule_for_integer_class_names():
    from metassl.data.arrays import integer_names
    from metassl.data.images import _natural

    assert integer_names(["0", "7", "10", "-1"]) and not integer_names(["1", "01"]) and not integer_names(["a"])
    assert _natural(["10", "2", "1"]) == ["1", "2", "10"]  # ordered as numbers
    assert _natural(["10", "02", "1"]) == ["02", "1", "10"]  # '02' is a name: ordered as text, as loaded
