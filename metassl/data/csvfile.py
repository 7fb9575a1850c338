"""The `csv` dataset: one CSV file (`data_root`), a list of images or a table of vectors.

  * rows of `path,label[,split]`: an empty label marks an unlabeled image, split is `train`
    (the default) or `test`; paths are relative to the CSV's folder; an optional header row
    names the columns (others are ignored);
  * a table of feature vectors: numbers in every column but the label (the column a header
    names `label`, else the last) and an optional `split` column; encoded as
    `metassl.data.vectors` encodes N x D arrays. A header's feature names are kept with the
    encoder, and `read_table_vectors` reads a table of new rows for a trained run by them.

Without a test split, a share (`test_fraction`) of each class's labeled rows is held out as
the test set (`metassl.data.holdout`).
"""
from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Container, Optional, Sequence

import numpy as np

from metassl.data.arrays import ArrayDataset
from metassl.data.holdout import _hold_out_arrays
from metassl.data.images import IMAGE_SUFFIXES, _from_paths, _listing, _natural
from metassl.data.vectors import from_vectors
from metassl.errors import DataError

def _row_classes(path: Path, rows: list) -> tuple[list[str], dict[str, int]]:
    """The class names of a table's labeled training rows (line, x, label, split), naturally sorted,
    and each name's index."""
    classes = _natural(sorted({label for _, _, label, split in rows if split == "train" and label}))
    if not classes:
        raise DataError(f"data: {path} has no labeled training rows")
    by_value: dict[float, str] = {}
    for line, _, label, _ in rows:
        if label and _is_number(label):
            first = by_value.setdefault(float(label), label)
            if first != label:  # '0' and '0.0' would be two classes
                raise DataError(f"data: {path} line {line}: labels {first!r} and {label!r} are one number written "
                                f"two ways; write each class's label one way (as text they would be two classes)")
    return classes, {name: c for c, name in enumerate(classes)}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except OSError as exc:
        raise DataError(f"data: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"data: {path} is not a UTF-8 text file") from None


def load_csv(path: Path, image_size: Optional[int] = 32, channels: Optional[int] = None,
             test_fraction: float = 0.2) -> ArrayDataset:
    text = _read_text(path)
    layout = _table_layout(path, text)
    if layout is not None:
        return _load_table(path, text, *layout, test_fraction=test_fraction)
    reader = csv.reader(io.StringIO(text))
    header: Optional[dict[str, int]] = None
    rows: list[tuple[int, Path, str, str]] = []  # line, file, label, split
    seen: dict[Path, int] = {}  # each image's first line
    try:
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if not rows and header is None and "path" in [c.lower() for c in cells]:
                names = [c.lower() for c in cells]
                if "label" not in names:
                    raise DataError(f"data: {path} line {line}: the header has no 'label' column")
                header = {k: names.index(k) for k in ("path", "label", "split") if k in names}
                continue
            if header is None and len(cells) not in (2, 3):
                other = next((sep for sep in ";\t|" if sep in cells[0]), None) if len(cells) == 1 else None
                hint = (f"; fields are separated by commas, and this line holds {other!r}" if other else
                        " (a table of feature vectors has numbers in every column but its label column)")
                raise DataError(f"data: {path} line {line}: expected path,label[,split], "
                                f"got {len(cells)} field{'s' if len(cells) != 1 else ''}{hint}")
            columns = header or dict(zip(("path", "label", "split"), range(len(cells))))
            if len(cells) <= max(columns.values()):
                raise DataError(f"data: {path} line {line}: expected {max(columns.values()) + 1} "
                                f"fields, got {len(cells)}")
            name, label = cells[columns["path"]], cells[columns["label"]]
            split = _row_split(path, line, cells[columns["split"]] if "split" in columns else "", label)
            file = path.parent / name
            if name and file.is_dir():
                raise DataError(f"data: {path} line {line}: {name!r} is a folder ({file}); each line names "
                                "one image file")
            if not name or not file.is_file():
                header_like = (not rows and header is None
                               and not any(Path(c).suffix.lower() in IMAGE_SUFFIXES for c in cells))
                hint = (f"; if line {line} is a header, it names its columns path,label[,split]"
                        if header_like else "")
                raise DataError(f"data: {path} line {line}: image {name!r} does not exist "
                                f"(looked for {file}){hint}")
            same = seen.setdefault(file.resolve(), line)
            if same != line:
                raise DataError(f"data: {path} line {line}: image {name!r} is listed again (first on line "
                                f"{same}); list each image once")
            rows.append((line, file, label, split))
    except csv.Error as exc:
        raise DataError(f"data: {path} line {reader.line_num}: {exc}") from None
    classes, index = _row_classes(path, rows)
    paths, y, test_paths, test_y = [], [], [], []
    for line, file, label, split in rows:
        if split == "test":
            if label not in index:
                raise DataError(f"data: {path} line {line}: class {label!r} has no labeled training "
                                f"rows (known classes: {_listing(classes)})")
            test_paths.append(file)
            test_y.append(index[label])
        else:
            paths.append(file)
            y.append(index[label] if label else -1)
    return _from_paths(str(path), classes, paths, y, test_paths, test_y, image_size, channels,
                       test_fraction)


def _row_split(path: Path, line: int, split: str, label: str, what: str = "image") -> str:
    """A CSV row's split (train by default), checked with its label ('' marks an unlabeled `what`)."""
    split = split.lower() or "train"
    if split not in ("train", "test"):
        raise DataError(f"data: {path} line {line}: split {split!r} is not train or test")
    if split == "test" and not label:
        raise DataError(f"data: {path} line {line}: a test {what} needs a label")
    if label.lower() in MISSING:
        raise DataError(f"data: {path} line {line}: label {label!r} is a missing value, not a class; "
                        f"leave the label empty for an unlabeled {what}")
    if label in ("-1", "-1.0"):
        raise DataError(f"data: {path} line {line}: label {label!r}: in a CSV an unlabeled {what} has an "
                        "empty label (-1 marks unlabeled examples in npz files and the Python API); "
                        "a class named -1 needs another name")
    return split


# How spreadsheets, R and pandas write a missing value: never a class name.
MISSING = ("nan", "na", "n/a", "<na>", "none", "null")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _table_layout(path: Path, text: str) -> Optional[tuple[Optional[list[str]], int, Optional[int]]]:
    """(header, label column, split column) of a CSV table of feature vectors, or None for a list
    of image paths. A table's first data row holds numbers in every column but the label and split
    columns; the label column is the one a header names `label`, else the last column. A first row
    0,1,...,n-1 (pandas' default column names) is refused: as numbers it would be a data row."""
    first: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text)):
            cells = [c.strip() for c in row]
            if any(cells):
                first.append(cells)
                if len(first) == 2:
                    break
    except csv.Error:
        return None  # load_csv names the line
    if not first or "path" in [c.lower() for c in first[0]]:
        return None
    head = first[0]
    named = {"label", "split"} & {c.lower() for c in head}
    if len(head) >= 2 and head == [str(j) for j in range(len(head))]:
        raise DataError(f"data: {path}: its first row {','.join(head)} holds pandas' default column names, "
                        "not a data row; name the columns (the class labels' column 'label') or write the "
                        "table without a header (to_csv(header=False))")
    if not named and len(head) >= 2 and all(_is_number(c) for c in head[:-1]):
        return None, len(head) - 1, None
    if not named and len(head) > 3 and _mostly_numbers(head[:-1]):
        # too wide for path,label[,split] and mostly numbers: a table whose first row has a bad
        # cell, which _table_rows names
        return None, len(head) - 1, None
    names = [c.lower() for c in head]
    label = names.index("label") if "label" in names else len(names) - 1
    split = names.index("split") if "split" in names else None
    if len(first) == 2 and len(head) >= 2 and len(first[1]) == len(head):
        cells = [c for j, c in enumerate(first[1]) if j not in (label, split)]
        if all(_is_number(c) for c in cells) or (len(head) > 3 and _mostly_numbers(cells)):
            # a header over numbers (a wide table's first data row may have a bad cell, which
            # _table_rows names)
            return head, label, split
    return None


def _mostly_numbers(cells: Sequence[str]) -> bool:
    return sum(_is_number(c) for c in cells) * 2 >= len(cells) > 0


def _table_rows(path: Path, text: str, header: Optional[list[str]], label_col: Optional[int],
                split_col: Optional[int],
                ignore: Container[int] = ()) -> list[tuple[int, list[float], str, str]]:
    """(line, features, label, split) of each row of a table of feature vectors: numbers in every
    column but the label, split and `ignore` columns. Without a label column every row is
    unlabeled; without a split column every row is a training row."""
    width = len(header) if header is not None else None
    names = header or []
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[float], str, str]] = []  # line, features, label, split
    skip_header = header is not None
    try:
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if skip_header:
                skip_header = False
                continue
            width = width or len(cells)
            if len(cells) != width:
                raise DataError(f"data: {path} line {line}: expected {width} fields, got {len(cells)}")
            label = cells[label_col] if label_col is not None else ""
            split = _row_split(path, line, cells[split_col] if split_col is not None else "", label, "row")
            features = []
            for j, cell in enumerate(cells):
                if j in (label_col, split_col) or j in ignore:
                    continue
                value = float(cell) if _is_number(cell) else None
                if value is None or not np.isfinite(value):
                    column = f"{names[j]!r}" if names else str(j + 1)
                    kind = ("; a list of images names its columns path,label[,split]"
                            if Path(cell).suffix.lower() in IMAGE_SUFFIXES else "")
                    raise DataError(f"data: {path} line {line} column {column}: {cell!r} is not a finite "
                                    f"number (every column but the label holds a feature){kind}")
                features.append(value)
            rows.append((line, features, label, split))
    except csv.Error as exc:
        raise DataError(f"data: {path} line {reader.line_num}: {exc}") from None
    return rows


def _check_label_column(path: Path, rows: list, header: Optional[list[str]], label_col: int) -> None:
    """Refuse a headerless table's last column of fractional numbers as labels: a table without
    labels whose last feature was taken for them. A column a header names `label` holds class
    names, whatever they look like."""
    if header is not None:
        return
    fractional = next((label for _, _, label, _ in rows if label and _is_number(label)
                       and math.isfinite(float(label)) and not float(label).is_integer()), None)
    if fractional is None:
        return
    raise DataError(f"data: {path}: the labels are read from the last column, as there is no header naming a "
                    f"'label' column: column {label_col + 1} (the last), which holds fractional numbers such as "
                    f"{fractional}; add a header with a 'label' column (its cells empty for unlabeled rows)")


def _load_table(path: Path, text: str, header: Optional[list[str]], label_col: int,
                split_col: Optional[int], test_fraction: float) -> ArrayDataset:
    """A CSV table of feature vectors: one row per example, numbers in every column but the label
    (empty: unlabeled) and the optional split column. A header's names for the feature columns are
    kept with the encoder (``vectors["columns"]``), so that predictions read them by name."""
    if header is not None:
        unnamed = next((j for j, name in enumerate(header) if not name), None)
        if unnamed is not None:
            raise DataError(f"data: {path}: column {unnamed + 1} of the header has no name (a row index? "
                            "pandas writes one unless to_csv(index=False)); name it or drop it")
        if "label" not in [h.lower() for h in header]:
            raise DataError(f"data: {path}: the header names no 'label' column (columns: {_listing(header)}); "
                            "name the column of class labels 'label' (its cells empty for unlabeled rows)")
    rows = _table_rows(path, text, header, label_col, split_col)
    _check_label_column(path, rows, header, label_col)
    classes, index = _row_classes(path, rows)
    for line, _, label, split in rows:
        if split == "test" and label not in index:
            raise DataError(f"data: {path} line {line}: class {label!r} has no labeled training "
                            f"rows (known classes: {_listing(classes)})")
    train = [r for r in rows if r[3] == "train"]
    test = [r for r in rows if r[3] == "test"]
    x = np.array([r[1] for r in train], dtype=np.float64)
    y = np.array([index[r[2]] if r[2] else -1 for r in train], dtype=np.int64)
    x_test = np.array([r[1] for r in test], dtype=np.float64) if test else None
    y_test = np.array([index[r[2]] for r in test], dtype=np.int64) if test else None
    x, y, x_test, y_test, held_out = _hold_out_arrays(str(path), x, y, x_test, y_test, test_fraction, "rows")
    ds = from_vectors(str(path), x, y, x_test, y_test, classes=classes)
    ds.test_held_out = held_out
    names = [name for j, name in enumerate(header or []) if j not in (label_col, split_col)]
    if names and all(names) and len(set(names)) == len(names):
        ds.vectors["columns"] = names
    read = (f"label column {header[label_col]!r}, {len(names)} feature columns: {_listing(names)}" if header
            else f"labels in the last column, {x.shape[1]} feature columns")
    print(f"metassl: {path}: {read}; {int((y >= 0).sum())} labeled and {int((y < 0).sum())} unlabeled "
          "training rows", file=sys.stderr)
    return ds


def read_table_vectors(path: Path, features: int, columns: Optional[Sequence[str]] = None,
                       what: str = "the model") -> np.ndarray:
    """The rows of a CSV table of feature vectors as float64 N x `features`, for a model trained on
    `features` features; labels and splits in it are ignored.

    The table is read as `load_csv` reads one. With `columns` (the names the training table's
    header gave its features) and a header here, the features are those columns, in that order,
    wherever they stand; otherwise they are the columns but the label and split ones, in order,
    and a headerless table's rows are `features` numbers, optionally followed by a label.
    """
    text = _read_text(path)
    try:
        first = next((row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)), [])
    except csv.Error:
        first = []  # _table_rows names the line
    cells = [c.strip() for c in first]
    if columns and set(columns) <= set(cells):
        # the training header's names (numbers too): a header, whatever its next row holds
        # (_table_rows names a bad cell)
        lower = [c.lower() for c in cells]
        layout = (cells, lower.index("label") if "label" in lower else None,
                  lower.index("split") if "split" in lower else None)
    else:
        layout = _table_layout(path, text)
    if layout is None:
        if features == 1 and len(first) == 1 and _is_number(first[0].strip()):
            layout = (None, 0, None)  # a lone column of numbers: the feature
        else:
            raise DataError(f"data: {path} is not a table of numbers (its first data row must hold numbers "
                            f"in every column but the label); {what} takes feature vectors N x {features}")
    header, label_col, split_col = layout
    width = len(header) if header is not None else len(first)
    if header is not None and columns:
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"data: {path} has no column {missing[0]!r} ({what} was trained on the columns "
                            f"{_listing(list(columns))})")
        twice = [c for c in columns if header.count(c) > 1]
        if twice:
            raise DataError(f"data: {path} names the column {twice[0]!r} twice")
        wanted = [header.index(c) for c in columns]
    else:
        named_label = header is not None and "label" in [c.lower() for c in header]
        others = [j for j in range(width) if j != split_col]
        if not named_label and len(others) == features:
            label_col = None  # no label column: every other column is a feature
        wanted = [j for j in others if j != label_col]
        if len(wanted) != features:
            parts = [f"{len(wanted)} feature{'s' if len(wanted) != 1 else ''}"]
            parts += ["a label"] * (label_col is not None) + ["a split"] * (split_col is not None)
            read = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
            raise DataError(f"data: {path} has {width} columns, read as {read}; {what} takes "
                            f"{features} features per row")
    ignore = {j for j in range(width) if j not in wanted}
    rows = _table_rows(path, text, header, None, None, ignore)
    if not rows:
        raise DataError(f"data: {path} has no data rows{' below its header' if header is not None else ''}")
    x = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), features)
    order = sorted(wanted)
    return x[:, [order.index(j) for j in wanted]]
