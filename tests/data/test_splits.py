import pytest
import torch

from metassl.data.splits import load_split, make_split, save_split
from metassl.errors import DataError

Y = torch.arange(10).repeat_interleave(30)  # 10 classes x 30 examples
CLASSES = [str(c) for c in range(10)]


def test_balanced_disjoint_and_covering():
    s = make_split(Y, CLASSES, labels_per_class=4, val_per_class=3, seed=1)
    assert torch.bincount(Y[s.labeled], minlength=10).tolist() == [4] * 10
    assert torch.bincount(Y[s.val], minlength=10).tolist() == [3] * 10
    parts = [set(s.labeled.tolist()), set(s.val.tolist()), set(s.unlabeled.tolist())]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(len(Y)))


def test_seed_fixes_the_split():
    a = make_split(Y, CLASSES, 4, 3, seed=5)
    b = make_split(Y, CLASSES, 4, 3, seed=5)
    c = make_split(Y, CLASSES, 4, 3, seed=6)
    assert torch.equal(a.labeled, b.labeled) and torch.equal(a.val, b.val)
    assert not torch.equal(a.labeled, c.labeled)


def test_all_labels_leaves_nothing_unlabeled():
    s = make_split(Y, CLASSES, None, 3, seed=0)
    assert len(s.unlabeled) == 0 and len(s.labeled) == 270


def test_too_many_labels_is_an_error():
    with pytest.raises(DataError, match="class '0', which has only 30$"):
        make_split(Y, CLASSES, 28, 3, seed=0)
    # counted after a held-out test set, the message says so (the class folder holds more)
    with pytest.raises(DataError, match="class '0', which has only 30 once its share of the test set is held "
                                        r"out \(test_fraction\)$"):
        make_split(Y, CLASSES, 28, 3, seed=0, held_out=True)


def test_save_and_load(tmp_path):
    s = make_split(Y, CLASSES, 2, 2, seed=0)
    save_split(s, tmp_path / "split.json", seed=0)
    t = load_split(tmp_path / "split.json", len(Y))
    assert torch.equal(s.labeled, t.labeled) and torch.equal(s.unlabeled, t.unlabeled)
    with pytest.raises(DataError, match="outside the training set"):
        load_split(tmp_path / "split.json", 10)
