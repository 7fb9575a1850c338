"""Class-balanced labeled / validation / unlabeled splits of a training set, fixed by a seed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metassl.errors import DataError


@dataclass
class Split:
    labeled: torch.Tensor    # indices into the training set
    val: torch.Tensor
    unlabeled: torch.Tensor

    def to_json(self, **info) -> dict:
        return {**info, "labeled": self.labeled.tolist(), "val": self.val.tolist(),
                "unlabeled": self.unlabeled.tolist()}


def make_split(y: torch.Tensor, classes: list[str], labels_per_class: int | None,
               val_per_class: int, seed: int) -> Split:
    """Per class: the first ``val_per_class`` of a seeded permutation are validation, the next
    ``labels_per_class`` labeled, the rest unlabeled (``labels_per_class=None``: all labeled).

    Examples whose label is -1 have none: they are always unlabeled, never labeled or validation.
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
                f"class {name!r}, which has only {len(idx)}")
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
    path.write_text(json.dumps(split.to_json(**info)))


def labels_digest(split: Split, y: torch.Tensor) -> str:
    """A digest of the labels at the split's labeled and validation indices: what ties a split to
    the data it was drawn from."""
    return hashlib.sha256(torch.cat([y[split.labeled], y[split.val]]).cpu().numpy().astype("<i8").tobytes()).hexdigest()[:16]


def load_split(path: Path, n_train: int, y: torch.Tensor | None = None) -> Split:
    """The split saved in ``path``; with the training labels ``y``, checked against them (the
    split's labeled and validation examples must have the labels they were drawn with)."""
    try:
        data = json.loads(path.read_text())
        parts = [torch.tensor(data[k], dtype=torch.long) for k in ("labeled", "val", "unlabeled")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"split: cannot read {path}: {exc}") from None
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
    return split
