"""Class-balanced labeled / validation / unlabeled splits of a training set, fixed by a seed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metassl.errors import DataError
from metassl.files import atomic_write_text


@dataclass
class Split:
    labeled: torch.Tensor    # indices into the training set
    val: torch.Tensor
    unlabeled: torch.Tensor

    def to_json(self, **info) -> dict:
        return {**info, "labeled": self.labeled.tolist(), "val": self.val.tolist(),
                "unlabeled": self.unlabeled.tolist()}


def make_split(y: torch.Tensor, classes: list[str], labels_per_class: int | None,
               val_per_class: int, seed: int, held_out: bool = False) -> Split:
    """Per class: the first ``val_per_class`` of a seeded permutation are validation, the next
    ``labels_per_class`` labeled, the rest unlabeled (``labels_per_class=None``: all labeled).

    Examples whose label is -1 have none: they are always unlabeled, never labeled or validation.
    ``held_out``: the data's test set was held out of its labeled examples, which a class too small
    for the split is then told.
    """
    if len(classes) < 2:
        which = f"only one class, {classes[0]!r}" if classes else "no classes"
        raise DataError(f"split: the labeled data has {which}; a classifier needs two or more")
    rng = np.random.RandomState(seed)
    y_np = y.numpy()
    labeled, val, unlabeled = [], [], []
    for c, name in enumerate(classes):
        idx = np.flatnonzero(y_np == c)
        idx = idx[rng.permutation(len(idx))]
        need = val_per_class + (labels_per_class or 1)
        if len(idx) < need:
            what = f"labels_per_class={labels_per_class}" if labels_per_class else "the labeled set"
            raise DataError(
                f"split: {what} with val_per_class={val_per_class} needs {need} training examples of "
                f"class {name!r}, which has only {len(idx)}"
                + (" once its share of the test set is held out (test_fraction)" if held_out else ""))
        val.append(idx[:val_per_class])
        rest = idx[val_per_class:]
        if labels_per_class is None:
            labeled.append(rest)
        else:
            labeled.append(rest[:labels_per_class])
            unlabeled.append(rest[labels_per_class:])
    unlabeled.append(np.flatnonzero(y_np < 0))

    def cat(parts: list) -> torch.Tensor:
        return torch.from_numpy(np.sort(np.concatenate(parts))) if parts else torch.zeros(0, dtype=torch.long)

    return Split(cat(labeled), cat(val), cat(unlabeled))


def save_split(split: Split, path: Path, **info) -> None:
    atomic_write_text(path, json.dumps(split.to_json(**info)))


def _labels_hash(y: torch.Tensor) -> str:
    return hashlib.sha256(y.cpu().numpy().astype("<i8").tobytes()).hexdigest()[:16]


def labels_digest(split: Split, y: torch.Tensor) -> str:
    """A digest of the labels at the split's labeled and validation indices: what ties a split to
    the data it was drawn from."""
    return _labels_hash(torch.cat([y[split.labeled], y[split.val]]))


def data_identity(y: torch.Tensor, n_test: int) -> dict:
    """What a split records of the data as a whole: the number of training examples, a digest of
    all their labels in order (-1: unlabeled), and the test set's size."""
    return {"n_train": len(y), "train_labels_digest": _labels_hash(y), "n_test": n_test}


def check_data_size(path: Path, recorded: dict, n_train: int, n_test: int | None) -> None:
    """Refuse data of ``n_train`` training examples (and a test set of ``n_test``, where given) where
    the split in ``path`` (``recorded``, its contents) was drawn from data of other sizes. A split
    written without them passes."""
    changes = []
    if recorded.get("n_train", n_train) != n_train:
        changes.append(f"it now holds {n_train} training examples, the run was trained on {recorded['n_train']}")
    if n_test is not None and recorded.get("n_test", n_test) != n_test:
        changes.append(f"its test set now holds {n_test} examples, the run's held {recorded['n_test']}")
    if changes:
        raise DataError(f"split: the data changed since the run was trained ({path} records the run's): "
                        f"{'; '.join(changes)}")


def load_split(path: Path, n_train: int, y: torch.Tensor | None = None, n_test: int | None = None) -> Split:
    """The split saved in ``path``; with the training labels ``y``, checked against them (the data
    must be the data the split was drawn from, as far as the split records it: its size, the
    labels of the split's labeled and validation examples, all its labels in order). ``n_test``:
    the size of the test set now, checked where given."""
    try:
        data = json.loads(path.read_text())
        parts = [torch.tensor(data[k], dtype=torch.long) for k in ("labeled", "val", "unlabeled")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"split: cannot read {path}: {exc}") from None
    if y is not None:
        check_data_size(path, data, len(y), n_test)
    for part in parts:
        if len(part) and (part.min() < 0 or part.max() >= n_train):
            raise DataError(f"split: {path} names indices outside the training set of {n_train}")
    split = Split(*parts)
    if y is not None:
        unlabeled = int((torch.cat([y[split.labeled], y[split.val]]) < 0).sum())
        digest = labels_digest(split, y)
        if unlabeled or data.get("labels_digest", digest) != digest:
            what = (f"{unlabeled} of the run's labeled and validation examples have no label in it"
                    if unlabeled else "the run's labeled and validation examples have other labels in it")
            raise DataError(f"split: the data read now does not match {path}: {what}; it is not the "
                            "run's data, or not in the same order")
        if data.get("train_labels_digest") not in (None, _labels_hash(y)):
            raise DataError(f"split: the data read now does not match {path}: its {len(y)} training examples "
                            "have other labels, or are in another order; the data changed since the run was trained")
    return split
