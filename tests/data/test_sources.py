"""Dataset readers: tiny files written in each real on-disk format, read back."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from metassl.data import cifar, idx, locate, svhn
from metassl.data.arrays import channel_stats, from_arrays
from metassl.data.cifar import read_cifar_pickle
from metassl.data.holdout import stratified_split
from metassl.data.idx import load_mnist_like, read_idx
from metassl.data.sources import DATASETS, load_dataset
from metassl.data.svhn import read_svhn_mat
from metassl.errors import ConfigError, DataError
from tests.conftest import idx_bytes, write_idx

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def no_system_datasets(tmp_path_factory, monkeypatch):
    # Keep installed datasets out of the search so tests see only the files they write.
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path_factory.mktemp("no-system"))


def raises_one_line(exc_type, fn, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- IDX


def mnist_arrays(seed: int, h: int = 6, w: int = 5):
    # Non-square images, so a swapped H/W would show.
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (7, h, w), dtype=np.uint8),
        rng.integers(0, 10, 7).astype(np.uint8),
        rng.integers(0, 256, (3, h, w), dtype=np.uint8),
        rng.integers(0, 10, 3).astype(np.uint8),
    )


def write_mnist_dir(d: Path, arrays, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    for name, a in zip(idx.MNIST_FILES, arrays):
        write_idx(d / (name + suffix), a, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_through_load_dataset(tmp_path, gz):
    arrays = mnist_arrays(1)
    write_mnist_dir(tmp_path / "mnist", arrays, gz)
    ds = load_dataset("mnist", data_root=tmp_path)
    xtr, ytr, xte, yte = arrays
    assert ds.x_train.shape == (7, 1, 6, 5) and ds.x_train.dtype == torch.uint8
    assert ds.x_train.is_contiguous()
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(xtr))
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(xte))
    assert ds.y_train.dtype == torch.int64
    assert ds.y_train.tolist() == ytr.tolist() and ds.y_test.tolist() == yte.tolist()
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.mean == idx.MNIST_MEAN and ds.std == idx.MNIST_STD
    assert not ds.hflip and ds.in_channels == 1 and ds.image_hw == (6, 5)


def test_idx_gzip_is_detected_by_content_not_name(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz_without_suffix = write_idx(tmp_path / "images-idx3-ubyte", a, gz=True)
    raw_with_suffix = write_idx(tmp_path / "other-idx3-ubyte.gz", a, gz=False)
    assert np.array_equal(read_idx(gz_without_suffix), a)
    assert np.array_equal(read_idx(raw_with_suffix), a)


def test_idx_multibyte_types_are_big_endian(tmp_path):
    a = np.array([[1, -2, 300], [-32768, 32767, 256]], dtype=np.int16)
    path = write_idx(tmp_path / "x.idx", a, gz=False)
    out = read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative
    assert np.array_equal(out, a)
    assert out.flags.writeable


def test_idx_truncated(tmp_path):
    a = np.zeros((10, 28, 28), dtype=np.uint8)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(a)[:-100]))
    message = raises_one_line(DataError, read_idx, path)
    assert str(path) in message and "truncated" in message
    assert "10 images of 28x28 (7840 bytes)" in message and "file has 7740" in message


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\0\0")
    message = raises_one_line(DataError, read_idx, path)
    assert "too long" in message and "file has 7" in message


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    message = raises_one_line(DataError, read_idx, path)
    assert str(path) in message and "not an IDX file" in message and "08 03 00 00" in message


def test_idx_damaged_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 4, 4), np.uint8)))[:-12])
    message = raises_one_line(DataError, read_idx, path)
    assert str(path) in message and "gzip" in message


def test_mnist_like_search_order(tmp_path):
    # fashion-mnist/ comes before the bare data_root; an incomplete dir is skipped.
    first, second = mnist_arrays(2), mnist_arrays(3)
    write_mnist_dir(tmp_path / "fashion-mnist", first, gz=True)
    write_mnist_dir(tmp_path, second, gz=False)
    ds = load_dataset("fashion_mnist", data_root=tmp_path)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(first[0]))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.mean == (0.2860,) and ds.std == (0.3530,)

    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    ds = load_dataset("fashion_mnist", data_root=tmp_path)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(second[0]))


def test_mnist_like_torchvision_layout(tmp_path):
    arrays = mnist_arrays(4)
    write_mnist_dir(tmp_path / "FashionMNIST" / "raw", arrays, gz=False)
    ds = load_dataset("fashion_mnist", data_root=tmp_path)
    assert ds.y_test.tolist() == arrays[3].tolist()


def test_mnist_like_bad_label_names_file(tmp_path):
    xtr, ytr, xte, yte = mnist_arrays(5)
    ytr[4] = 12
    write_mnist_dir(tmp_path, (xtr, ytr, xte, yte), gz=False)
    message = raises_one_line(DataError, load_dataset, "mnist", data_root=tmp_path)
    assert "train-labels-idx1-ubyte" in message and "12" in message and "index 4" in message


def test_mnist_like_count_mismatch(tmp_path):
    xtr, ytr, xte, yte = mnist_arrays(6)
    write_mnist_dir(tmp_path, (xtr, ytr[:-1], xte, yte), gz=False)
    message = raises_one_line(DataError, load_dataset, "mnist", data_root=tmp_path)
    assert "7 images" in message and "6 labels" in message


def test_mnist_like_unknown_name_gets_data_stats(tmp_path):
    x = np.full((2, 3, 3), 255, np.uint8)
    arrays = (x, np.array([0, 2], np.uint8), x[:1], np.array([1], np.uint8))
    write_mnist_dir(tmp_path, arrays, gz=True)
    ds = load_mnist_like([tmp_path], "kmnist")
    assert ds.classes == ["0", "1", "2"] and ds.mean == (1.0,) and ds.std == (0.0,)


def test_missing_mnist_lists_every_place(tmp_path):
    images = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    write_idx(images, np.zeros((1, 2, 2), np.uint8), gz=True)
    message = raises_one_line(DataError, load_dataset, "mnist", data_root=tmp_path)
    system = locate.SYSTEM_DATA_DIR / "mnist"
    for d in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path, system):
        assert str(d) + "," in message or str(d) + " " in message
    assert f"{tmp_path / 'mnist'} lacks train-labels-idx1-ubyte" in message


def test_missing_fashion_says_how_to_get_it(tmp_path):
    message = raises_one_line(DataError, load_dataset, "fashion_mnist", data_root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "fashion-mnist") in message
    assert str(locate.SYSTEM_DATA_DIR / "fashion-mnist") in message


def test_partial_data_root_is_an_error_not_a_fallback_to_the_system_copy(tmp_path):
    write_mnist_dir(locate.SYSTEM_DATA_DIR / "fashion-mnist", mnist_arrays(7), gz=True)
    mine = tmp_path / "mine"
    write_mnist_dir(mine, mnist_arrays(8), gz=False)
    (mine / "t10k-labels-idx1-ubyte").unlink()
    message = raises_one_line(DataError, load_dataset, "fashion_mnist", data_root=mine)
    assert f"{mine} lacks t10k-labels-idx1-ubyte" in message
    assert str(locate.SYSTEM_DATA_DIR) in message
    # without data_root, or with one holding none of the files, the system copy is still found
    assert len(load_dataset("fashion_mnist").x_train) == 7
    (tmp_path / "empty").mkdir()
    assert len(load_dataset("fashion_mnist", data_root=tmp_path / "empty").x_train) == 7


def test_a_data_root_holding_none_of_the_files_says_it_reads_the_system_copy(tmp_path, capsys):
    write_mnist_dir(locate.SYSTEM_DATA_DIR / "fashion-mnist", mnist_arrays(7), gz=True)
    load_dataset("fashion_mnist")
    assert capsys.readouterr().err == ""
    load_dataset("fashion_mnist", data_root=tmp_path)
    err = capsys.readouterr().err
    assert err.startswith(f"metassl: fashion_mnist: data_root {tmp_path} holds none of its files")
    assert str(locate.SYSTEM_DATA_DIR / "fashion-mnist") in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "cifar10", "cifar100", "svhn"])
def test_a_data_root_that_does_not_exist_or_is_a_file_is_an_error_not_a_fallback(tmp_path, name):
    write_mnist_dir(locate.SYSTEM_DATA_DIR / "fashion-mnist", mnist_arrays(7), gz=True)
    message = raises_one_line(DataError, load_dataset, name, data_root=tmp_path / "nope")
    assert message == (f"data: data_root {tmp_path / 'nope'} does not exist (dataset {name}); if the data has "
                       "moved, give its new place: data_root=PATH (also with train --resume), --data-root PATH "
                       "with eval")
    (tmp_path / "afile").write_text("x")
    message = raises_one_line(DataError, load_dataset, name, data_root=tmp_path / "afile")
    assert f"data_root {tmp_path / 'afile'} is a file" in message


@pytest.mark.parametrize("name, reads", [("imagefolder", "folder"), ("imagenet", "folder"), ("csv", ".csv"),
                                         ("npz", ".npz")])
def test_a_file_datasets_data_root_that_moved_or_is_the_wrong_kind_says_so(tmp_path, name, reads):
    from metassl.data.sources import OPTIONS

    options = {"image_size": 8, "channels": None, "test_fraction": 0.2, "imagenet_fraction": 1.0}
    load = lambda root: load_dataset(name, root, **{k: options[k] for k in OPTIONS[name]})  # noqa: E731
    message = raises_one_line(DataError, load, tmp_path / "moved")
    assert message == (f"data: data_root {tmp_path / 'moved'} does not exist (dataset {name}); if the data has "
                       "moved, give its new place: data_root=PATH (also with train --resume), --data-root PATH "
                       "with eval")
    (tmp_path / "afile").write_text("x")
    message = raises_one_line(DataError, load, tmp_path if reads != "folder" else tmp_path / "afile")
    assert message == (f"data: data_root {tmp_path / 'afile'} is a file; dataset {name} reads a folder"
                       if reads == "folder" else f"data: data_root {tmp_path} is a folder; dataset {name} reads a "
                       f"{reads} file")


def test_an_idx_header_of_huge_dimensions_counts_its_bytes_without_overflow(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 8, 3]) + (2**32 - 1).to_bytes(4, "big") * 3)
    message = raises_one_line(DataError, read_idx, path)
    assert f"({(2**32 - 1) ** 3} bytes)" in message


# --------------------------------------------------------------------------- CIFAR


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Protocol 2 and bytes keys, like the real (Python 2) files.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(d: Path, per_batch: int = 3) -> list[np.ndarray]:
    batches = []
    for i in range(1, 6):
        rows = cifar_rows(per_batch, i)
        batches.append(rows)
        labels = [(i + j) % 10 for j in range(per_batch)]
        batch = {b"batch_label": b"x", b"data": rows, b"labels": labels, b"filenames": []}
        dump(d / f"data_batch_{i}", batch)
    test = cifar_rows(2, 9)
    test[1, 1 * 1024 + 5 * 32 + 7] = 201  # green, row 5, column 7
    dump(d / "test_batch", {b"data": test, b"labels": [4, 9]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(d / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return batches


def test_cifar10_layout_and_order(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    assert ds.x_test[1, 1, 5, 7] == 201
    # Row layout: 1024 red, then green, then blue values, each 32x32 row-major.
    row = batches[2][1]
    x = ds.x_train[2 * 3 + 1]
    assert x[0, 0, 0] == row[0] and x[0, 0, 31] == row[31] and x[0, 1, 0] == row[32]
    assert x[2, 31, 31] == row[3071] and x[1, 0, 0] == row[1024]
    assert torch.equal(ds.x_train.reshape(15, -1), torch.from_numpy(np.concatenate(batches)))
    assert ds.y_train.tolist() == [(i + j) % 10 for i in range(1, 6) for j in range(3)]
    assert ds.y_test.tolist() == [4, 9]
    assert ds.classes[1] == "automobile" and ds.num_classes == 10
    assert ds.hflip and ds.mean == cifar.CIFAR10_MEAN


def test_cifar10_in_named_subdir(tmp_path):
    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", per_batch=1)
    assert len(load_dataset("cifar10", data_root=tmp_path).x_train) == 5


def test_cifar10_files_directly_in_data_root(tmp_path):
    write_cifar10(tmp_path, per_batch=1)
    assert len(load_dataset("cifar10", data_root=tmp_path).x_train) == 5


@pytest.mark.parametrize("damage, fragment", [
    ({b"data": [[1, 2], [3]], b"labels": [1, 2]}, "key b'data' holds a list that is not one array"),
    ({b"data": cifar_rows(2, 0), b"labels": [[1], [2]]}, "key b'labels' holds an array of shape 2x1"),
    ({b"data": cifar_rows(2, 0), b"labels": ["a", "b"]}, "not integer labels"),
])
def test_cifar_batch_of_the_wrong_structure_names_file_and_key(tmp_path, damage, fragment):
    write_cifar10(tmp_path, per_batch=2)
    dump(tmp_path / "data_batch_2", damage)
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(tmp_path / "data_batch_2") in message and fragment in message


@pytest.mark.parametrize("names", [5, [b"a", 3]])
def test_cifar_class_names_that_are_not_names_are_an_error(tmp_path, names):
    write_cifar10(tmp_path, per_batch=1)
    dump(tmp_path / "batches.meta", {b"label_names": names})
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(tmp_path / "batches.meta") in message and "expected a list of class names" in message


def test_cifar_missing_key(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar10(d, per_batch=1)
    dump(d / "data_batch_3", {b"data": cifar_rows(1, 0), b"fine_labels": [1]})
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(d / "data_batch_3") in message and "b'labels'" in message


def test_cifar_corrupt_pickle(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar10(d, per_batch=1)
    good = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(good[: len(good) // 2])
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(d / "test_batch") in message and "pickle" in message


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "data_batch_1"
    dump(path, {b"data": Evil()})
    message = raises_one_line(DataError, read_cifar_pickle, path)
    assert "refusing to load" in message and ".print" in message


def test_cifar_numpy1_pickles_load(tmp_path):
    # The real files name numpy.core.multiarray, which numpy 2 moved to numpy._core.
    path = tmp_path / "batch"
    dump(path, {b"data": np.arange(6, dtype=np.uint8)})
    raw = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)
    assert read_cifar_pickle(path)[b"data"].tolist() == list(range(6))


def test_cifar_label_out_of_range(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar10(d, per_batch=1)
    dump(d / "test_batch", {b"data": cifar_rows(2, 0), b"labels": [3, 10]})
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(d / "test_batch") in message and "label 10 at index 1" in message


def write_cifar100(d: Path) -> None:
    train = cifar_rows(4, 1)
    train[3, 2 * 1024 + 31 * 32 + 0] = 77  # blue, last row, first column
    labels = {b"fine_labels": [0, 55, 99, 7], b"coarse_labels": [4, 19, 0, 1]}
    dump(d / "train", {b"data": train, **labels})
    dump(d / "test", {b"data": cifar_rows(2, 2), b"fine_labels": [98, 1], b"coarse_labels": [2, 3]})
    dump(d / "meta", {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    })


def test_cifar100_fine_and_coarse(tmp_path):
    write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    fine = load_dataset("cifar100", data_root=tmp_path)
    assert fine.num_classes == 100 and fine.y_train.tolist() == [0, 55, 99, 7]
    assert fine.classes[99] == "fine99" and fine.y_test.tolist() == [98, 1]
    assert fine.x_train[3, 2, 31, 0] == 77
    assert fine.hflip and fine.mean == cifar.CIFAR100_MEAN
    coarse = load_dataset("cifar100", data_root=tmp_path, coarse=True)
    assert coarse.num_classes == 20 and coarse.y_train.tolist() == [4, 19, 0, 1]
    assert coarse.classes[19] == "coarse19"
    assert torch.equal(coarse.x_train, fine.x_train)


def test_cifar100_coarse_is_a_config_key_and_only_cifar100_s(tmp_path):
    from metassl import config
    from metassl.data.sources import dataset_options

    write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    cfg = config.load_config(None, ["dataset=cifar100", f"data_root={tmp_path}", "cifar100_coarse=true"])
    coarse = load_dataset("cifar100", data_root=cfg.data_root, **dataset_options(cfg))
    assert coarse.num_classes == 20 and coarse.y_train.tolist() == [4, 19, 0, 1]
    fine = config.load_config(None, ["dataset=cifar100", f"data_root={tmp_path}"])
    assert load_dataset("cifar100", data_root=tmp_path, **dataset_options(fine)).num_classes == 100
    with pytest.raises(ConfigError, match="cifar100_coarse=true does not apply to dataset=cifar10; it applies to "
                                          "cifar100"):
        config.load_config(None, ["dataset=cifar10", "cifar100_coarse=true"])


def test_missing_cifar_lists_places_and_how(tmp_path):
    message = raises_one_line(DataError, load_dataset, "cifar10", data_root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message
    assert "cifar-10-python.tar.gz" in message
    message = raises_one_line(DataError, load_dataset, "cifar100")
    assert "no data_root given" in message


# --------------------------------------------------------------------------- SVHN


def write_svhn(path: Path, labels: list[int], seed: int) -> np.ndarray:
    # Real shapes: X is 32x32x3xN (rows, columns, channels, image), y is Nx1 uint8.
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    y = np.array(labels, dtype=np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x


def test_svhn_layout_labels_and_extra(tmp_path):
    d = tmp_path / "svhn"
    x = write_svhn(d / "train_32x32.mat", [10, 1, 9], seed=1)
    write_svhn(d / "test_32x32.mat", [3, 10], seed=2)
    write_svhn(d / "extra_32x32.mat", [10, 5, 5, 2], seed=3)

    ds = load_dataset("svhn", data_root=tmp_path)
    assert ds.x_train.shape == (3, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    assert ds.y_train.tolist() == [0, 1, 9] and ds.y_test.tolist() == [3, 0]
    # X[h, w, c, n] lands at x[n, c, h, w].
    assert ds.x_train[2, 1, 4, 30] == x[4, 30, 1, 2] and ds.x_train[0, 2, 31, 0] == x[31, 0, 2, 0]
    assert torch.equal(ds.x_train, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert not ds.hflip and ds.classes == [str(i) for i in range(10)]
    assert ds.mean == svhn.SVHN_MEAN

    with_extra = load_dataset("svhn", data_root=tmp_path, svhn_extra=True)
    assert with_extra.y_train.tolist() == [0, 1, 9, 0, 5, 5, 2]
    assert torch.equal(with_extra.x_train[:3], ds.x_train)
    assert with_extra.y_test.tolist() == [3, 0]


def test_svhn_labels_that_are_not_numbers_are_named(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", [1, 2], seed=1)
    x = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = "a", "b"
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": cells})
    message = raises_one_line(DataError, load_dataset, "svhn", data_root=tmp_path)
    assert str(tmp_path / "test_32x32.mat") in message and "expected numeric labels 1..10" in message


def refuse(monkeypatch, owner, name: str, denied: Path) -> None:
    """``owner.name(path, ...)`` raises PermissionError for ``denied`` (tests may run as root,
    whom file modes do not stop)."""
    real = getattr(owner, name)

    def fake(first, *args, **kwargs):
        if Path(first) == denied:
            raise PermissionError(13, "Permission denied", str(denied))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, fake)


def test_an_unreadable_file_or_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    import builtins

    write_svhn(tmp_path / "train_32x32.mat", [1, 2], seed=1)
    write_svhn(tmp_path / "test_32x32.mat", [3], seed=2)
    with monkeypatch.context() as m:
        refuse(m, builtins, "open", tmp_path / "train_32x32.mat")
        message = raises_one_line(DataError, load_dataset, "svhn", data_root=tmp_path)
    assert message == f"data: cannot read {tmp_path / 'train_32x32.mat'}: Permission denied"
    with monkeypatch.context() as m:
        refuse(m, Path, "is_file", tmp_path / "svhn" / "train_32x32.mat")
        message = raises_one_line(DataError, load_dataset, "svhn", data_root=tmp_path)
    assert message == f"data: cannot read {tmp_path / 'svhn' / 'train_32x32.mat'}: Permission denied"


def test_svhn_extra_missing(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", [1], seed=1)
    write_svhn(tmp_path / "test_32x32.mat", [2], seed=2)
    assert load_dataset("svhn", data_root=tmp_path).y_train.tolist() == [1]
    message = raises_one_line(DataError, load_dataset, "svhn", data_root=tmp_path, svhn_extra=True)
    assert str(tmp_path / "extra_32x32.mat") in message


def test_svhn_bad_label_and_bad_file(tmp_path):
    path = tmp_path / "train_32x32.mat"
    write_svhn(path, [3, 0], seed=1)
    message = raises_one_line(DataError, read_svhn_mat, path)
    assert str(path) in message and "y[1] = 0" in message
    path.write_bytes(b"not a mat file" * 20)
    assert str(path) in raises_one_line(DataError, read_svhn_mat, path)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 1), np.uint8)})
    assert "'y'" in raises_one_line(DataError, read_svhn_mat, path)
    write_svhn(path, [3, 1], seed=1)
    path.write_bytes(path.read_bytes()[:-100])  # a download cut short
    assert raises_one_line(DataError, read_svhn_mat, path).startswith(
        f"data: {path} is truncated or damaged (")


# --------------------------------------------------------------------------- digits


def test_digits_shape_and_stable_split():
    from sklearn.datasets import load_digits as sk_load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.x_train) + len(a.x_test) == 1797
    assert a.x_train.shape[1:] == (1, 8, 8) and a.num_classes == 10
    assert int(a.x_train.max()) == 255 and a.x_train.dtype == torch.uint8
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    counts = torch.bincount(a.y_test, minlength=10)
    assert 355 <= len(a.y_test) <= 365 and int(counts.min()) >= 35 and int(counts.max()) <= 37

    bunch = sk_load_digits()
    train_idx, test_idx = stratified_split(bunch.target, 0.2, 0)
    assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 1797
    expected = np.rint(bunch.images[test_idx] * 255 / 16).astype(np.uint8)
    assert torch.equal(a.x_test[:, 0], torch.from_numpy(expected))
    assert a.y_train.tolist() == bunch.target[train_idx].tolist()


# --------------------------------------------------------------------------- from_arrays


def test_from_arrays_grayscale_float_and_stats():
    x = np.zeros((4, 2, 3), dtype=np.float32)
    x[:2] = 1.0
    ds = from_arrays("toy", x, np.array([0, 1, 2, 1]), torch.zeros(1, 2, 3), torch.tensor([2]))
    assert ds.x_train.shape == (4, 1, 2, 3) and ds.x_train.dtype == torch.uint8
    assert ds.x_train[0].max() == 255 and ds.x_train[3].max() == 0
    assert ds.classes == ["0", "1", "2"] and ds.mean == (0.5,) and ds.std == (0.5,)
    assert ds.image_size == 2 and ds.image_hw == (2, 3)


def test_channel_stats_matches_direct_computation():
    x = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert np.allclose(mean, f.mean(dim=(0, 2, 3)).numpy())
    assert np.allclose(std, f.std(dim=(0, 2, 3), unbiased=False).numpy())


@pytest.mark.parametrize(
    "x, y, fragment",
    [
        (np.zeros((4, 8), np.uint8), [0, 0, 0, 0], "shape 4x8"),
        (np.zeros((2, 1, 1, 4, 4), np.uint8), [0, 0], "shape 2x1x1x4x4"),
        (np.zeros((3, 8, 8, 3), np.uint8), [0, 0, 0], "channels-last"),
        (np.zeros((3, 4, 4), np.uint8), [0, 1], "3 images but y_train has 2 labels"),
        (np.full((2, 4, 4), 1.5), [0, 1], "from 1.5 to 1.5"),
        (np.full((2, 4, 4), np.nan), [0, 1], "NaN or infinite"),
        (np.zeros((2, 4, 4), np.int32), [0, 1], "dtype int32"),
        (np.zeros((2, 4, 4), np.uint8), [0.0, 0.5], "y_train[1] = 0.5"),
    ],
)
def test_from_arrays_rejects(x, y, fragment):
    message = raises_one_line(DataError, from_arrays, "toy", x, np.asarray(y))
    assert fragment in message


def test_from_arrays_label_range():
    x = np.zeros((3, 4, 4), np.uint8)
    message = raises_one_line(DataError, from_arrays, "toy", x, [0, 1, 5], classes=["a", "b", "c"])
    assert "y_train[2] = 5" in message and "[0, 3)" in message
    message = raises_one_line(DataError, from_arrays, "toy", x, [0, -1, 1])
    assert "y_train[1] = -1" in message
    message = raises_one_line(
        DataError, from_arrays, "toy", x, [0, 1, 1], x[:1], [2], classes=["a", "b"]
    )
    assert "y_test[0] = 2" in message
    rgb = np.zeros((1, 3, 4, 4), np.uint8)
    message = raises_one_line(DataError, from_arrays, "toy", x, [0, 1, 1], rgb, [0])
    assert "x_test images are 3x4x4" in message


# --------------------------------------------------------------------------- load_dataset


def test_load_dataset_rejects_unknown_name_and_option():
    message = raises_one_line(ConfigError, load_dataset, "imagenet21k")
    assert all(name in message for name in DATASETS)
    assert "coarse" in raises_one_line(ConfigError, load_dataset, "cifar10", coarse=True)
    assert "true or false" in raises_one_line(ConfigError, load_dataset, "cifar100", coarse="yes")


def test_real_fashion_mnist(monkeypatch):
    if not (REAL_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed at {REAL_FASHION}")
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", REAL_FASHION.parent)
    ds = load_dataset("fashion_mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top"
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    mean, std = channel_stats(ds.x_train)
    assert abs(mean[0] - 0.2860) < 1e-3 and abs(std[0] - 0.3530) < 1e-3


def test_arrays_that_disagree_across_a_dataset_s_files_name_their_folder(tmp_path):
    x_train, y_train, _, y_test = mnist_arrays(5)
    write_mnist_dir(tmp_path, (x_train, y_train, mnist_arrays(6, h=8)[2], y_test), gz=False)
    message = raises_one_line(DataError, load_dataset, "fashion_mnist", data_root=tmp_path)
    assert "x_test images are 1x8x5 but x_train images are 1x6x5" in message
    assert message.endswith(f"(the files in {tmp_path})")
