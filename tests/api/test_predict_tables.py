"""`metassl predict` on feature vectors: CSV tables of numbers and npz of N x D, read as training
read its table (the training header's column names, the training data's standardisation)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from metassl.api.inference import load_run
from metassl.api.predict import predict_to_csv
from metassl.data.csvfile import read_table_vectors
from metassl.errors import DataError
from tests.conftest import FAST, run_cli

CLASSES = ("cat", "dog", "eel")


def features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    # Columns of very different scales, so that reading one in another's place changes the output.
    x = rng.normal(size=(n, 3)) * [1.0, 50.0, 0.01] + y[:, None] * [2.0, 80.0, 0.03] + [0.0, 500.0, -3.0]
    return x, y


def table(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A `metassl train` run on a CSV table whose header puts the label between the features."""
    root = tmp_path_factory.mktemp("table")
    x, y = features(120, seed=0)
    rows = [[a, "" if i % 10 == 0 else CLASSES[c], b, d] for i, ((a, b, d), c) in enumerate(zip(x, y))]
    data = table(root / "train.csv", ["f1", "label", "f2", "f3"], rows)
    out = root / "run"
    run_cli("train", "--out", str(out), *FAST, "dataset=csv", f"data_root={data}", "labels_per_class=null",
            "val_per_class=3", "steps=10", "eval_every=10", check=True)
    return out


def predicted(path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [r[0] for r in rows], np.array([[float(v) for v in r[2:]] for r in rows])


def expected(run, x: np.ndarray) -> np.ndarray:
    """The run's own classifier on raw N x D rows: its encoder holds the training mean and std."""
    return load_run(run).classifier.predict(torch.from_numpy(x).float(), 64).numpy()


def test_the_run_keeps_its_training_headers_feature_names(table_run):
    info = json.loads((table_run / "data_info.json").read_text())
    assert info["vectors"]["columns"] == ["f1", "f2", "f3"] and info["classes"] == list(CLASSES)


def test_tables_of_any_column_order_and_npz_rows_predict_as_the_classifier_does(table_run, tmp_path):
    x, _ = features(7, seed=1)
    new = x[:5]
    same = table(tmp_path / "same.csv", ["f1", "label", "f2", "f3"], [[a, "", b, c] for a, b, c in new])
    moved = table(tmp_path / "moved.csv", ["f3", "id", "f2", "f1"],
                  [[c, i, b, a] for i, (a, b, c) in enumerate(new)])
    plain = table(tmp_path / "plain.csv", None, new.tolist())
    labeled = table(tmp_path / "labeled.csv", None, [[*row, "dog"] for row in new.tolist()])
    np.savez(tmp_path / "rows.npz", x=new)
    out = tmp_path / "p.csv"
    inputs = [same, moved, plain, labeled, tmp_path / "rows.npz"]
    message = predict_to_csv(table_run, inputs, out, batch_size=3)
    assert message == f"metassl: wrote 25 predictions (3 classes) to {out}"
    names, probs = predicted(out)
    assert names == [f"{path}:{i}" for path in inputs for i in range(5)]
    want = expected(table_run, new)
    for k in range(len(inputs)):
        assert np.allclose(probs[5 * k:5 * k + 5], want, atol=1e-5), inputs[k]
    # The check has teeth: the same numbers in another column order, or standardised by the five rows
    # themselves instead of the training data, give other probabilities.
    assert not np.allclose(expected(table_run, new[:, ::-1].copy()), want, atol=1e-3)
    restandardised = (new - new.mean(0)) / new.std(0)
    info = json.loads((table_run / "data_info.json").read_text())["vectors"]
    assert not np.allclose(expected(table_run, restandardised * info["std"] + np.array(info["mean"])), want,
                           atol=1e-3)


@pytest.mark.parametrize("header, rows, fragment", [
    (["f1", "f2"], [[1, 2]], "has no column 'f3' (run {run} was trained on the columns f1, f2, f3)"),
    (["f2", "f3", "f1", "f1"], [[1, 2, 3, 4]], "names the column 'f1' twice"),
    (["f1", "f2", "f3"], [[1, 2, 3], [4, "nan", 6]], "line 3 column 'f2': 'nan' is not a finite number"),
    # the first data row too: the training header's names make the first line a header
    (["f3", "label", "f1", "f2"], [[1, "a", "x", 3]], "line 2 column 'f1': 'x' is not a finite number"),
    (None, [[1, 2, 3, 4, 5]], "has 5 columns, read as 4 features and a label; run {run} takes 3 features per row"),
    (None, [[1, 2]], "has 2 columns, read as 1 feature and a label; run {run} takes 3 features per row"),
    (["path", "label"], [["a.png", "cat"]], "is not a table of numbers"),
    (["f1", "f2", "f3"], [], "has no data rows below its header"),
])
def test_bad_tables_are_one_line_naming_the_file_and_write_nothing(table_run, tmp_path, header, rows, fragment):
    bad = table(tmp_path / "bad.csv", header, rows)
    out = tmp_path / "p.csv"
    with pytest.raises(DataError) as info:
        predict_to_csv(table_run, [bad], out)
    message = str(info.value)
    assert message.startswith(f"data: {bad} ") and fragment.format(run=table_run) in message, message
    assert "\n" not in message and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_npz_vectors_that_are_not_finite_are_refused_as_training_refuses_them(table_run, tmp_path):
    x, _ = features(4, seed=2)
    x[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(DataError, match=r"^data: .*nan\.npz x\[2, 1\] = nan is not a finite number$"):
        predict_to_csv(table_run, [tmp_path / "nan.npz"], tmp_path / "p.csv")


def test_an_npz_without_rows_is_refused_rather_than_predicting_nothing(table_run, tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3)))
    with pytest.raises(DataError, match=r"^data: .*empty\.npz x holds no rows \(shape \(0, 3\)\)$"):
        predict_to_csv(table_run, [tmp_path / "empty.npz"], tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_cli_predicts_a_table_and_names_a_bad_one_on_one_line(table_run, tmp_path, cli):
    x, _ = features(4, seed=3)
    good = table(tmp_path / "new.csv", ["f2", "f1", "f3"], [[b, a, c] for a, b, c in x])
    proc = cli("predict", str(table_run), str(good), "--out", str(tmp_path / "p.csv"), check=True)
    assert "wrote 4 predictions" in proc.stdout
    assert np.allclose(predicted(tmp_path / "p.csv")[1], expected(table_run, x), atol=1e-5)
    bad = table(tmp_path / "bad.csv", ["f1", "f2", "f3"], [[1, 2, "x"]])
    proc = cli("predict", str(table_run), str(bad), "--out", str(tmp_path / "q.csv"))
    assert proc.returncode == 1 and not (tmp_path / "q.csv").exists()
    assert proc.stderr.strip().splitlines() == [
        f"metassl: error: data: {bad} line 2 column 'f3': 'x' is not a finite number (every column but the "
        "label holds a feature)"]


def test_an_image_run_refuses_a_table_on_one_line(photo_run, tmp_path):
    bad = table(tmp_path / "v.csv", None, [[1, 2, 3]])
    with pytest.raises(DataError) as info:
        predict_to_csv(photo_run, [bad], tmp_path / "p.csv")
    assert str(info.value) == (f"data: {bad} is a CSV table; run {photo_run} was trained on images (pass "
                               "image files, folders or an .npz of images)")


def test_a_header_of_numbers_that_the_training_header_named_reads_by_name(tmp_path):
    x, _ = features(4, seed=3)
    path = table(tmp_path / "new.csv", ["2", "0", "1"], [[c, a, b] for a, b, c in x])
    assert np.array_equal(read_table_vectors(path, 3, ["0", "1", "2"]), x)
    # without the training names, pandas' default header is refused rather than read as a data row
    plain = table(tmp_path / "plain.csv", ["0", "1", "2"], x.tolist())
    with pytest.raises(DataError, match="pandas' default column names"):
        read_table_vectors(plain, 3)
