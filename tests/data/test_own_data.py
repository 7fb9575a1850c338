"""The user's own data: feature vectors from disk (npz of N x D, CSV tables of numbers), arrays
that are not square, and labels that cannot train a classifier."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metassl.api.inference import VectorEncoder, load_run
from metassl.data.holdout import holdout
from metassl.data.sources import OPTIONS, load_dataset
from metassl.data.splits import make_split
from metassl.errors import DataError
from tests.conftest import FAST

DEFAULTS = {"image_size": 8, "channels": None, "test_fraction": 0.2, "imagenet_fraction": 1.0}


def load(name, root, **options):
    return load_dataset(name, root, **{k: options.get(k, DEFAULTS[k]) for k in OPTIONS[name]})


def one_line(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def vectors(n=60, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(size=(n, d)) * 3.0 + 10.0 * y[:, None], y


def encoded(x_train: np.ndarray, x: np.ndarray) -> torch.Tensor:
    """What SSLClassifier stores for `x` when fit on `x_train`."""
    return VectorEncoder.fit(x_train)(torch.from_numpy(x)).to(torch.uint8)


# --------------------------------------------------------------------------- npz of vectors


def test_npz_of_vectors_is_encoded_as_sslclassifier_encodes_them(tmp_path):
    x, y = vectors()
    y[::5] = -1
    x_test, y_test = vectors(12, seed=1)
    path = tmp_path / "v.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    ds = load("npz", path)
    assert ds.vector_features == 5 and ds.classes == ["0", "1", "2"] and not ds.test_held_out
    assert torch.equal(ds.x_train, encoded(x, x)) and torch.equal(ds.x_test, encoded(x, x_test))
    assert ds.y_train.tolist() == y.tolist()
    enc = VectorEncoder.fit(x)
    assert ds.vectors == enc.info()


def test_npz_of_vectors_without_a_test_set_holds_one_out_and_fits_the_encoder_without_it(tmp_path, capsys):
    x, y = vectors(100)
    path = tmp_path / "v.npz"
    np.savez(path, x=x, y=y)
    ds = load("npz", path, test_fraction=0.2)
    train_rows, test_rows = holdout(y, 0.2)
    assert ds.test_held_out and len(ds.x_test) == len(test_rows) > 0
    assert f"has no test set; held out {len(test_rows)} labeled vectors" in capsys.readouterr().err
    write(tmp_path / "v.csv", "\n".join(",".join(map(str, [*row, label])) for row, label in zip(x, y)) + "\n")
    load("csv", tmp_path / "v.csv", test_fraction=0.2)
    assert f"has no test set; held out {len(test_rows)} labeled rows" in capsys.readouterr().err
    assert torch.equal(ds.x_train, encoded(x[train_rows], x[train_rows]))
    assert torch.equal(ds.x_test, encoded(x[train_rows], x[test_rows]))


def test_npz_class_names_stored_as_byte_strings_are_read_as_text(tmp_path):
    x, y = vectors(30, d=3)
    np.savez(tmp_path / "b.npz", x=x, y=y, classes=np.array([b"cat", b"dog", "\u00e9lan".encode()]))
    assert load("npz", tmp_path / "b.npz", test_fraction=0.0).classes == ["cat", "dog", "\u00e9lan"]


@pytest.mark.parametrize("arrays, fragment", [
    ({"x": np.array([[1.0, np.nan], [2.0, 3.0]]), "y": np.array([0, 1])}, "x[0, 1] = nan is not a finite number"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 4)), "y_test": np.array([0, 1])},
     "x_test has 4 features but x has 3"),
    ({"x": np.array([["a", "b"], ["c", "d"]]), "y": np.array([0, 1])}, "x holds <U1; expected real numbers"),
    ({"x": np.ones((2, 3)) + 1j, "y": np.array([0, 1])}, "x holds complex128; expected real numbers"),
    ({"x": np.zeros((2, 3)), "y": np.array([0, 1]), "classes": np.array(["cat", " "])},
     "classes[1] is ' '; every class needs a name"),
    ({"x": np.zeros((2, 3)), "y": np.array([0, 1]), "classes": np.array([b"cat", b"\xff"])},
     "classes[1] = b'\\xff' is not UTF-8 text"),
    ({"X": np.zeros((4, 3)), "Y": np.array([0, 1, 0, 1])}, "has no array 'x' (it has: X, Y; the names are lower case"),
])
def test_bad_npz_vectors_are_one_line_naming_the_file(tmp_path, arrays, fragment):
    path = tmp_path / "v.npz"
    np.savez(path, **arrays)
    message = one_line(load, "npz", path, test_fraction=0.0)
    assert str(path) in message and fragment in message, message


# --------------------------------------------------------------------------- CSV tables of numbers


def write(path, text):
    path.write_text(text)
    return path


def test_csv_table_with_a_named_label_column_anywhere_and_unlabeled_rows(tmp_path):
    x, y = vectors(30, d=3)
    names = np.array(["cat", "dog", "eel"])
    lines = ["f1,label,f2,f3"]
    for i in range(30):
        label = "" if i % 6 == 0 else names[y[i]]
        lines.append(f"{x[i, 0]},{label},{x[i, 1]},{x[i, 2]}")
    ds = load("csv", write(tmp_path / "t.csv", "\n".join(lines) + "\n"), test_fraction=0.0)
    assert ds.classes == ["cat", "dog", "eel"] and ds.vector_features == 3
    assert ds.vectors["columns"] == ["f1", "f2", "f3"]  # predict reads new tables by these names
    expect_y = np.where(np.arange(30) % 6 == 0, -1, y)
    assert ds.y_train.tolist() == expect_y.tolist()
    assert torch.equal(ds.x_train, encoded(x, x))


def test_csv_table_without_a_header_takes_the_last_column_and_a_split_column_by_name(tmp_path):
    x, y = vectors(20, d=2)
    plain = "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y))
    ds = load("csv", write(tmp_path / "plain.csv", plain), test_fraction=0.0)
    assert ds.classes == ["0", "1", "2"] and ds.y_train.tolist() == y.tolist()
    assert torch.equal(ds.x_train, encoded(x, x)) and "columns" not in ds.vectors
    # 'split' by name; numbers order the classes
    rows = "".join(f"{a},{'test' if i >= 15 else 'train'},{b},{c + 8}\n" for i, ((a, b), c) in enumerate(zip(x, y)))
    ds = load("csv", write(tmp_path / "split.csv", "a,split,b,label\n" + rows))
    assert ds.classes == ["8", "9", "10"] and len(ds.x_test) == 5 and not ds.test_held_out
    assert ds.vectors["columns"] == ["a", "b"]
    # names that cannot tell the columns apart are not kept: predict then reads by position
    ds = load("csv", write(tmp_path / "twice.csv", "a,split,a,label\n" + rows))
    assert "columns" not in ds.vectors
    assert torch.equal(ds.x_test, encoded(x[:15], x[15:]))


@pytest.mark.parametrize("text, fragment", [
    ("a,b,label\n1,2,x\n3,,y\n", "line 3 column 'b': '' is not a finite number"),
    ("a,b,label\n1,2,x\n3,inf,y\n", "line 3 column 'b': 'inf' is not a finite number"),
    ("1,2,x\n3,4\n", "line 2: expected 3 fields, got 2"),
    ("a,label\n1,x\n2,nan\n", "line 3: label 'nan' is a missing value, not a class; leave the label empty"),
    ("a,label\n1,\n2,\n", "has no labeled training rows"),
    ("a,label,split\n1,x,train\n2,y,test\n", "line 3: class 'y' has no labeled training rows"),
    ("a,label\n1,x\n2,-1\n", "line 3: label '-1': in a CSV an unlabeled row has an empty label"),
    ("a,label\n1,x\n2,NA\n", "line 3: label 'NA' is a missing value, not a class"),
    # a header must name its label column, and every column
    ("target,a,b,is_big\n0,1,2,0\n", ": the header names no 'label' column (columns: target, a, b, is_big); name"),
    (",a,b,label\n0,1,2,x\n", ": column 1 of the header has no name (a row index? pandas writes one unless "
                               "to_csv(index=False))"),
    # a bad cell in the first data row, under a header or without one, is named as on any other row
    ("a,b,c,label\n1,,3,x\n2,2,3,y\n", "line 2 column 'b': '' is not a finite number"),
    ("1,,3,x\n2,2,3,y\n", "line 1 column 2: '' is not a finite number"),
    ("id,a,b,label\ns0,1,2,x\n", "line 2 column 'id': 's0' is not a finite number"),
])
def test_bad_csv_tables_are_one_line_naming_file_and_line(tmp_path, text, fragment):
    path = write(tmp_path / "t.csv", text)
    message = one_line(load, "csv", path)
    assert message.startswith(f"data: {path}") and fragment in message, message


def test_a_header_of_numbers_is_a_header_when_it_names_its_label_column_and_refused_when_pandas_wrote_it(tmp_path):
    x, y = vectors(20, d=2)
    rows = "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y))
    # pd.DataFrame(x) with a 'label' column, to_csv(index=False)
    ds = load("csv", write(tmp_path / "named.csv", "0,1,label\n" + rows), test_fraction=0.0)
    assert ds.classes == ["0", "1", "2"] and len(ds.y_train) == 20 and ds.y_train.tolist() == y.tolist()
    assert ds.vectors["columns"] == ["0", "1"]
    # pd.DataFrame(np.c_[x, y]).to_csv(index=False): the first row is no data row, nor a usable header
    path = write(tmp_path / "default.csv", "0,1,2\n" + rows)
    message = one_line(load, "csv", path)
    assert message.startswith(f"data: {path}: its first row 0,1,2 holds pandas' default column names"), message


def test_a_csv_table_says_which_columns_it_read_as_label_and_features(tmp_path, capsys):
    x, y = vectors(12, d=2)
    lines = ["id,a,label,b"] + [f"{i},{a},{'' if i < 3 else c},{b}" for i, ((a, b), c) in enumerate(zip(x, y))]
    load("csv", write(tmp_path / "t.csv", "\n".join(lines) + "\n"), test_fraction=0.0)
    assert (f"metassl: {tmp_path / 't.csv'}: label column 'label', 3 feature columns: id, a, b; 9 labeled "
            "and 3 unlabeled training rows") in capsys.readouterr().err
    load("csv", write(tmp_path / "plain.csv", "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y))),
         test_fraction=0.0)
    assert "labels in the last column, 2 feature columns; 12 labeled and 0 unlabeled" in capsys.readouterr().err


def test_a_csv_list_of_images_says_how_a_table_of_numbers_would_look(tmp_path):
    path = write(tmp_path / "l.csv", "a.png\n")
    assert "a table of feature vectors has numbers in every column but its label column" in one_line(
        load, "csv", path)


def test_a_nan_label_in_a_list_of_images_is_an_error_naming_the_line(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name)
    path = write(tmp_path / "l.csv", "path,label\na.png,cat\nb.png,NaN\n")
    message = one_line(load, "csv", path)
    assert message == (f"data: {path} line 3: label 'NaN' is a missing value, not a class; "
                       "leave the label empty for an unlabeled image")


# --------------------------------------------------------------------------- training on them


def test_cli_trains_on_a_vector_csv_and_an_npz_of_vectors_and_predicts_npz_and_csv_rows(cli, tmp_path):
    x, y = vectors(150, d=6)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    write(tmp_path / "v.csv", "".join(",".join(map(str, row)) + f",{c}\n" for row, c in zip(x, y)))
    for name in ("npz", "csv"):
        out = tmp_path / f"run-{name}"
        proc = cli("train", "--out", str(out), *FAST, f"dataset={name}", f"data_root={tmp_path / f'v.{name}'}",
                   "steps=20", "eval_every=10", check=True)
        final = json.loads(proc.stdout)
        assert final["test_held_out"] and final["test_error"] is not None
        info = json.loads((out / "data_info.json").read_text())
        assert len(info["vectors"]["mean"]) == 6 and info["classes"] == ["0", "1", "2"]
    np.savez(tmp_path / "new.npz", x=x[:4])
    # the run's own table layout (headerless, label last) and bare rows of numbers
    write(tmp_path / "new.csv", "".join(",".join(map(str, row)) + ",\n" for row in x[4:8]))
    write(tmp_path / "bare.csv", "".join(",".join(map(str, row)) + "\n" for row in x[8:12]))
    inputs = [str(tmp_path / name) for name in ("new.npz", "new.csv", "bare.csv")]
    proc = cli("predict", str(out), *inputs, "--out", str(tmp_path / "p.csv"), check=True)
    assert "wrote 12 predictions" in proc.stdout
    loaded = load_run(out)
    probs = loaded.classifier.predict(torch.from_numpy(x[:12]).float(), 4)
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [f"{name}:{i}" for name in inputs for i in range(4)]
    assert np.allclose([[float(v) for v in r.split(",")[2:]] for r in rows], probs.numpy(), atol=1e-5)


def test_mlp_trains_on_arrays_that_are_not_square(cli, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "wide.npz", x=rng.integers(0, 255, (60, 8, 12)).astype(np.uint8), y=np.arange(60) % 2)
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, "dataset=npz", f"data_root={tmp_path / 'wide.npz'}", "steps=4",
               "eval_every=4", "val_per_class=2", "labels_per_class=null")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads((out / "data_info.json").read_text())["image_hw"] == [8, 12]
    np.savez(tmp_path / "in.npz", x=np.zeros((3, 8, 12), np.uint8))
    assert cli("predict", str(out), str(tmp_path / "in.npz"), "--out", str(tmp_path / "p.csv")).returncode == 0


# --------------------------------------------------------------------------- a single class


def test_one_class_cannot_train_a_classifier():
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(DataError, match=r"^split: the labeled data has only one class, 'a'; a classifier "
                                        r"needs two or more$"):
        make_split(y, ["a"], None, 2, 0)


def test_cli_on_a_single_class_exits_non_zero_with_one_line_and_leaves_nothing(cli, tmp_path):
    x, _ = vectors(30)
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(30, np.int64))
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), *FAST, "dataset=npz", f"data_root={tmp_path / 'one.npz'}", "steps=2",
               "test_fraction=0")
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        "metassl: error: split: the labeled data has only one class, '0'; a classifier needs two or more"]


def test_images_smaller_than_the_models_take_are_named_with_their_size_not_as_a_model_option(tmp_path, capsys):
    from metassl.cli import main

    y = np.repeat(np.arange(2), 8)
    np.savez(tmp_path / "small.npz", x=np.zeros((len(y), 1, 4, 6), np.uint8), y=y)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "dataset=npz", f"data_root={tmp_path / 'small.npz'}", "model=mlp",
                 "labels_per_class=4", "val_per_class=2", "steps=2", "tensorboard=false"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"metassl: error: data: {tmp_path / 'small.npz'} holds 4 x 6 images; the models take images of at "
        "least 8 x 8 (pad or upscale them)")
    assert not out.exists()
