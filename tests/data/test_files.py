"""The user's files: image folders, CSV lists, .npz arrays and the ImageNet layout."""
from __future__ import annotations

import io
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metassl import config
from metassl.data.arrays import from_arrays
from metassl.data.imagenet import IMAGENET_MEAN
from metassl.data.images import IMAGE_SUFFIXES, read_image, read_images
from metassl.data.sources import DATASETS, OPTIONS, dataset_options, load_dataset
from metassl.data.splits import make_split
from metassl.errors import ConfigError, DataError

RED, GREEN, GRAY = (220, 20, 20), (20, 220, 20), (90, 90, 90)


def raises_one_line(exc_type, fn, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def save(path: Path, color, size=(12, 10), mode="RGB", fmt=None) -> Path:
    """A solid image of `color` (an RGB triple or a gray level), `size` given as (w, h)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def image_folder(root: Path, per_class: int = 5, unlabeled: int = 4, test: bool = False) -> Path:
    for i in range(per_class):
        save(root / "labeled" / "red" / f"{i}.png", RED, size=(10 + i, 7))
        save(root / "labeled" / "green" / f"{i}.jpg", GREEN)
    for i in range(unlabeled):
        save(root / "unlabeled" / "sub" / f"u{i}.png", RED if i % 2 else GREEN)
    if test:
        save(root / "test" / "green" / "t.png", GREEN)
    return root


DEFAULTS = {"image_size": 8, "channels": None, "test_fraction": 0.2, "imagenet_fraction": 1.0}


def load(name, root, **options):
    return load_dataset(name, root, **{k: options.get(k, DEFAULTS[k]) for k in OPTIONS[name]})


# --------------------------------------------------------------------------- image folders


def test_imagefolder_reads_labels_unlabeled_and_resizes(tmp_path, capsys):
    root = image_folder(tmp_path, per_class=5, unlabeled=4)
    ds = load("imagefolder", root, test_fraction=0.2)
    assert ds.classes == ["green", "red"] and ds.in_channels == 3 and ds.image_hw == (8, 8)
    # one of each class's five labeled images is held out; unlabeled ones never are
    assert ds.test_held_out and ds.y_test.tolist() == [0, 1]
    assert ds.y_train.tolist().count(-1) == 4 and len(ds.y_train) == 8 + 4
    assert "has no test set; held out 2 labeled images" in capsys.readouterr().err
    red = ds.x_train[(ds.y_train == 1).nonzero()[0, 0]]
    assert red[:, 3, 3].tolist() == list(RED)  # a solid image stays solid through the resize
    # JPEG is lossy: green only approximately
    green = ds.x_train[(ds.y_train == 0).nonzero()[0, 0]].float().mean((1, 2))
    assert torch.allclose(green, torch.tensor(GREEN, dtype=torch.float), atol=6)


def test_imagefolder_test_folder_and_no_holdout(tmp_path, capsys):
    root = image_folder(tmp_path, test=True)
    ds = load("imagefolder", root, test_fraction=0.2)
    assert not ds.test_held_out and ds.y_test.tolist() == [0] and len(ds.y_train) == 14
    assert "held out" not in capsys.readouterr().err
    ds = load("imagefolder", image_folder(tmp_path / "b"), test_fraction=0.0)
    assert ds.x_test is None and not ds.test_held_out


def test_channels_auto_gray_forced_and_mixed(tmp_path):
    gray = tmp_path / "gray"
    save(gray / "labeled" / "a" / "1.png", 40, mode="L")
    save(gray / "labeled" / "b" / "2.png", GRAY)  # RGB file, gray content
    ds = load("imagefolder", gray, test_fraction=0)
    assert ds.in_channels == 1 and ds.x_train[:, 0, 0, 0].tolist() == [40, 90]
    mixed = tmp_path / "mixed"
    save(mixed / "labeled" / "a" / "1.png", 40, mode="L")
    save(mixed / "labeled" / "b" / "2.png", RED)
    ds = load("imagefolder", mixed, test_fraction=0)
    assert ds.in_channels == 3 and ds.x_train[0, :, 0, 0].tolist() == [40, 40, 40]
    forced = load("imagefolder", mixed, test_fraction=0, channels=1)
    luma = round(0.299 * 220 + 0.587 * 20 + 0.114 * 20)
    assert forced.in_channels == 1 and forced.x_train[1, 0, 0, 0] == luma


def test_native_size_and_mismatch(tmp_path):
    root = tmp_path / "r"
    save(root / "labeled" / "a" / "1.png", RED, size=(9, 11))
    save(root / "labeled" / "b" / "2.png", RED, size=(9, 11))
    assert load("imagefolder", root, image_size=None, test_fraction=0).image_hw == (11, 9)
    save(root / "labeled" / "b" / "3.png", RED, size=(10, 11))
    message = raises_one_line(DataError, load, "imagefolder", root, image_size=None, test_fraction=0)
    assert "3.png is 10x11" in message and "image_size" in message


def test_exif_orientation_and_16_bit_images(tmp_path):
    img = Image.new("RGB", (4, 2), RED)
    img.putpixel((0, 0), GREEN)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: show it turned 90 degrees clockwise
    img.save(tmp_path / "turned.png", exif=exif)
    upright = np.asarray(img.transpose(Image.Transpose.ROTATE_270)).transpose(2, 0, 1)
    assert np.array_equal(read_image(tmp_path / "turned.png", None, 3), upright)
    assert upright.shape == (3, 4, 2) and upright[:, 0, 1].tolist() == list(GREEN)
    deep = np.full((3, 3), 0x8080, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png", None, None).tolist() == [[[0x80] * 3] * 3]


@pytest.mark.parametrize("values, dtype, levels", [
    ([0.0, 0.5, 1.0], np.float32, [0, 128, 255]),      # float in 0..1
    ([0.0, 100.0, 255.0], np.float32, [0, 100, 255]),  # float gray levels
    ([0, 32896, 65535], np.int32, [0, 128, 255]),      # 32-bit ints holding 16-bit levels
    ([0, 7, 255], np.int32, [0, 7, 255]),              # 32-bit ints holding 8-bit levels
])
def test_float_and_32_bit_tiffs_are_scaled_to_gray_levels_not_clipped(tmp_path, values, dtype, levels):
    Image.fromarray(np.array([values], dtype=dtype)).save(tmp_path / "deep.tif")
    assert read_image(tmp_path / "deep.tif", None, None).tolist() == [[levels]]


@pytest.mark.parametrize("values, dtype, fragment", [
    ([-20.0, 0.0, 280.0], np.float32, "a floating-point image with values -20..280"),
    ([0, 1, 70000], np.int32, "a 32-bit integer image with values 0..70000"),
])
def test_deep_images_without_a_gray_reading_are_refused_naming_the_file(tmp_path, values, dtype, fragment):
    Image.fromarray(np.array([values], dtype=dtype)).save(tmp_path / "odd.tif")
    message = raises_one_line(DataError, read_image, tmp_path / "odd.tif", None, None)
    assert message.startswith(f"data: {tmp_path / 'odd.tif'}: {fragment}"), message


def test_parallel_reading_matches_serial(tmp_path):
    paths = [save(tmp_path / f"{i}.png", (i * 20, 5, 9), size=(5 + i, 6)) for i in range(9)]
    torch.set_num_threads(1)
    serial = read_images(paths, (6, 6), None)
    torch.set_num_threads(2)
    try:
        assert np.array_equal(read_images(paths, (6, 6), None), serial)
    finally:
        torch.set_num_threads(1)


def truncated(path: Path, fmt: str) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def move(src: Path, dst: Path) -> Path:
    src.rename(dst)
    return src.parent


@pytest.mark.parametrize("damage, fragment", [
    ("truncated_png", "truncated"),
    ("truncated_jpg", "truncated"),
    ("not_an_image", "not a readable image"),
    ("empty_class", "holds no images"),
    ("stray_image", "lies directly in"),
    ("no_labeled", "has no labeled/ folder"),
    ("unknown_test_class", "has no labeled training images"),
])
def test_imagefolder_bad_input_names_the_file(tmp_path, damage, fragment):
    root = image_folder(tmp_path / "data")
    culprit = {
        "truncated_png": lambda: truncated(root / "labeled/red/9.png", "PNG"),
        "truncated_jpg": lambda: truncated(root / "unlabeled/cut.jpg", "JPEG"),
        "not_an_image": lambda: (root / "unlabeled/notes.png").write_text("not an image") and
        root / "unlabeled/notes.png",
        "empty_class": lambda: (root / "labeled/blue").mkdir() or root / "labeled/blue",
        "stray_image": lambda: save(root / "labeled/loose.png", RED),
        "no_labeled": lambda: move(root / "labeled", root / "train"),
        "unknown_test_class": lambda: save(root / "test/zebra/z.png", RED).parent,
    }[damage]()
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert str(culprit) in message and fragment in message


def claiming_size(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims ``width`` x ``height`` pixels (its data then runs short)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), RED).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:33] = ihdr + struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def test_an_image_pillow_calls_a_decompression_bomb_is_one_line_without_pillows_warning(tmp_path, capsys):
    """Between 89 and 179 megapixels Pillow reads an image but prints its own two-line warning
    first; the command line keeps to its one line."""
    from metassl.cli import main

    root = image_folder(tmp_path / "data")
    huge = claiming_size(root / "labeled" / "red" / "huge.png", 10000, 10000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["train", "dataset=imagefolder", f"data_root={root}", "image_size=8", "model=mlp",
                     "steps=2", "--out", str(tmp_path / "run")])
    assert code == 1
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if "has no test set; held out" not in ln]
    assert len(lines) == 1 and lines[0].startswith("metassl: error: data: ") and str(huge) in lines[0], lines
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert not (tmp_path / "run").exists()


def test_a_run_folder_inside_the_image_folder_it_trains_on_is_refused(cli, tmp_path):
    """Its report's figures would join the data (and a folder under labeled/ would be a class)."""
    root = image_folder(tmp_path / "data")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for inside in (root / "unlabeled" / "run", root / "labeled" / "run", root):
        proc = cli("train", "dataset=imagefolder", f"data_root={root}", "image_size=8", "model=mlp",
                   "steps=2", "--out", str(inside))
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"metassl: error: train: --out {inside} lies inside data_root {root}, whose "
                                       "images are the run's data (its report's figures would join them); give a "
                                       "folder outside it"), proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    from metassl.engine.rundir import check_outside_data

    cfg = config.load_config(None, ["dataset=imagefolder", f"data_root={root}"])
    check_outside_data(tmp_path / "data-run", cfg)  # beside it, though its name starts alike
    check_outside_data(root / "unlabeled" / "run", config.load_config(None, ["dataset=csv", f"data_root={root}"]))


def test_a_symbolic_link_back_to_a_folder_already_read_is_an_error_not_a_loop(tmp_path):
    root = image_folder(tmp_path / "data")
    (root / "labeled" / "red" / "loop").symlink_to(root / "labeled")
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert "which is already read (a symbolic link)" in message and str(root / "labeled" / "red") in message
    # a link to a folder read nowhere else is followed
    (root / "labeled" / "red" / "loop").unlink()
    save(tmp_path / "elsewhere" / "x.png", RED)
    (root / "labeled" / "red" / "more").symlink_to(tmp_path / "elsewhere")
    assert (load("imagefolder", root, test_fraction=0.0).y_train == 1).sum() == 6


def refuse_listing(monkeypatch, denied: Path) -> None:
    """Listing ``denied`` fails as a folder without read permission does (tests may run as root)."""
    real_scandir, real_iterdir = os.scandir, Path.iterdir

    def scandir(path="."):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(denied))
        return real_scandir(path)

    def iterdir(self):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(denied))
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "iterdir", iterdir)


@pytest.mark.parametrize("folder", ["unlabeled/sub", "labeled/red", "labeled"])
def test_an_unreadable_folder_is_an_error_not_images_left_out(tmp_path, monkeypatch, folder):
    root = image_folder(tmp_path / "data")
    refuse_listing(monkeypatch, root / folder)
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert message == f"data: cannot read {root / folder}: Permission denied"


def test_an_unlabeled_entry_that_is_a_file_is_named_not_read_as_no_images(tmp_path):
    root = image_folder(tmp_path / "data")
    shutil.rmtree(root / "unlabeled")
    (root / "unlabeled").write_text("not a folder")
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert message == f"data: {root / 'unlabeled'} is a file; a folder of images was expected"


@pytest.mark.parametrize("name, meant", [("unlabelled", "unlabeled"), ("Test", "test"), ("Labelled", "labeled")])
def test_a_misspelt_top_level_folder_is_an_error_not_silently_ignored(tmp_path, name, meant):
    root = image_folder(tmp_path / "data")
    save(root / name / "red" / "x.png", RED)
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert message == (f"data: {root / name} is not read: data_root's folders are labeled/, unlabeled/, test/ "
                       f"(did you mean {meant}/?)")


def test_an_unlabeled_folder_put_inside_labeled_is_an_error_not_a_class(tmp_path):
    root = image_folder(tmp_path / "data", unlabeled=0)
    save(root / "labeled" / "unlabeled" / "u.png", RED)
    message = raises_one_line(DataError, load, "imagefolder", root)
    assert message == (f"data: {root / 'labeled' / 'unlabeled'} would be read as a class named 'unlabeled'; "
                       f"unlabeled images go in {root / 'unlabeled'}/, beside labeled/")
    save(root / "unlabeled" / "v.png", GREEN)  # beside a real unlabeled/, a class of that name is the user's
    assert load("imagefolder", root, test_fraction=0.0).classes == ["green", "red", "unlabeled"]


def test_another_top_level_folder_of_images_is_named_on_stderr(tmp_path, capsys):
    root = image_folder(tmp_path / "data", unlabeled=2)
    save(root / "extra" / "x.png", RED)
    (root / "notes").mkdir()
    ds = load("imagefolder", root, test_fraction=0.0)
    assert ds.y_train.tolist().count(-1) == 2
    err = capsys.readouterr().err
    assert f"metassl: {root / 'extra'} is not read (data_root's folders are labeled/, unlabeled/, test/)" in err
    assert "notes" not in err


def test_files_that_are_not_images_by_their_suffix_are_named_on_stderr(tmp_path, capsys):
    root = image_folder(tmp_path / "data", unlabeled=2)
    save(root / "labeled" / "red" / "noext.png", RED)
    (root / "labeled" / "red" / "noext.png").rename(root / "labeled" / "red" / "noext")  # an image without a suffix
    (root / "unlabeled" / "notes.txt").write_text("scanned on Monday")
    (root / "unlabeled" / ".DS_Store").write_text("hidden")
    save(root / "test" / "red" / "t.png", RED)
    (root / "test" / "red" / "t.csv").write_text("x")
    ds = load("imagefolder", root)
    assert ds.y_train.tolist().count(-1) == 2
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if "not read, not images" in l)
    assert line.startswith(f"metassl: 3 files under {root} not read, not images by their suffix (")
    assert all(name in line for name in ("labeled/red/noext", "test/red/t.csv", "unlabeled/notes.txt"))
    assert ".DS_Store" not in err and "images end in .png, .jpg" in line
    # a folder of images alone says nothing
    clean = image_folder(tmp_path / "clean", unlabeled=2)
    load("imagefolder", clean)
    assert "not read" not in capsys.readouterr().err


def test_jpeg_files_named_jfif_or_jpe_are_images(tmp_path):
    root = image_folder(tmp_path / "data", unlabeled=0)
    save(root / "unlabeled" / "a.jfif", RED, fmt="JPEG")
    save(root / "unlabeled" / "b.JPE", GREEN, fmt="JPEG")
    assert load("imagefolder", root, test_fraction=0.0).y_train.tolist().count(-1) == 2


# --------------------------------------------------------------------------- CSV


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_header_unlabeled_rows_and_test_split(tmp_path):
    for i in range(3):
        save(tmp_path / "img" / f"r{i}.png", RED)
        save(tmp_path / "img" / f"g{i}.png", GREEN)
    csv_path = write_csv(tmp_path / "list.csv", "note,path,label,split\n"
                         "x,img/r0.png,10,\nx,img/r1.png,10,train\nx,img/g0.png,2,\n"
                         "x,img/g1.png,,\nx,img/r2.png,,\n\nx,img/g2.png,2,test\n")
    ds = load("csv", csv_path)
    assert ds.classes == ["2", "10"]  # integer labels order numerically
    assert ds.y_train.tolist() == [1, 1, 0, -1, -1] and ds.y_test.tolist() == [0]
    assert not ds.test_held_out and ds.x_train[0, :, 0, 0].tolist() == list(RED)


def test_csv_without_header_holds_out_a_test_set(tmp_path):
    for i in range(5):
        save(tmp_path / f"c{i}.png", RED)
        save(tmp_path / f"d{i}.png", GREEN)
    save(tmp_path / "u.png", GREEN)
    rows = "".join(f"c{i}.png,cat\n{tmp_path}/d{i}.png,dog\n" for i in range(5))
    ds = load("csv", write_csv(tmp_path / "l.csv", rows + "u.png,\n"), test_fraction=0.4)
    assert ds.classes == ["cat", "dog"] and ds.test_held_out
    assert sorted(ds.y_test.tolist()) == [0, 0, 1, 1] and ds.y_train.tolist().count(-1) == 1


@pytest.mark.parametrize("rows, fragment", [
    ("a.png,cat\nmissing.png,cat\n", "line 2: image 'missing.png' does not exist"),
    ("a.png,cat\nb.png,dog,test\n", "line 2: class 'dog' has no labeled training rows"),
    ("a.png,cat\nb.png,cat,holdout\n", "line 2: split 'holdout' is not train or test"),
    ("a.png,cat\nb.png,,test\n", "line 2: a test image needs a label"),
    ("a.png,cat,train,extra\n", "line 1: expected path,label[,split], got 4 fields"),
    ("path,name\na.png,cat\n", "line 1: the header has no 'label' column"),
    ("a.png,\n", "has no labeled training rows"),
    ("a.png,cat\nb.png,-1\n", "line 2: label '-1': in a CSV an unlabeled image has an empty label (-1 marks"),
    ("a.png,cat\nb.png,NA\n", "line 2: label 'NA' is a missing value, not a class"),
    ("path,label\na.png,cat\nb.png,None\n", "line 3: label 'None' is a missing value, not a class"),
    ("a.png,cat\nb.png,dog\n./a.png,dog\n", "line 3: image './a.png' is listed again (first on line 1)"),
    ("path;label\na.png;cat\n", "line 1: expected path,label[,split], got 1 field; fields are separated by "
                                  "commas, and this line holds ';'"),
    ("filename,label\na.png,cat\n", "line 1: image 'filename' does not exist (looked for "),
    ("filename,label\na.png,cat\n", "; if line 1 is a header, it names its columns path,label[,split]"),
    ("a.png,0\nb.png,0.0\n", "line 2: labels '0' and '0.0' are one number written two ways; write each "
                             "class's label one way"),
    ("a.png,cat\nsub,cat\n", "line 2: 'sub' is a folder ("),
])
def test_csv_bad_rows_name_the_line(tmp_path, rows, fragment):
    save(tmp_path / "a.png", RED)
    save(tmp_path / "b.png", GREEN)
    (tmp_path / "sub").mkdir()
    path = write_csv(tmp_path / "l.csv", rows)
    message = raises_one_line(DataError, load, "csv", path)
    assert str(path) in message and fragment in message


# --------------------------------------------------------------------------- npz


def test_npz_with_unlabeled_test_and_class_names(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 5, 5), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([0, 1, -1, 1, -1, 0]), x_test=x[:2].astype(np.float32) / 255,
             y_test=np.array([1, 0]), classes=np.array(["cat", "dog"]))
    ds = load("npz", path, test_fraction=0.5)
    assert ds.classes == ["cat", "dog"] and ds.y_train.tolist() == [0, 1, -1, 1, -1, 0]
    assert torch.equal(ds.x_train, torch.from_numpy(x)) and torch.equal(ds.x_test, ds.x_train[:2])
    assert not ds.test_held_out


def test_npz_without_test_holds_one_out(tmp_path, capsys):
    path = tmp_path / "d.npz"
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    np.savez(path, x=np.arange(10, dtype=np.uint8).repeat(16).reshape(10, 4, 4), y=y)
    ds = load("npz", path, test_fraction=0.25)
    assert ds.test_held_out and ds.y_test.tolist() == [0, 1] and len(ds.y_train) == 8
    assert ds.classes == ["0", "1"] and ds.in_channels == 1
    # each held-out image moved with its label
    assert all(int(ds.x_test[i, 0, 0, 0]) < 4 if c == 0 else 4 <= int(ds.x_test[i, 0, 0, 0]) < 8
               for i, c in enumerate(ds.y_test.tolist()))
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("arrays, fragment", [
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, int)}, "3 images in x but 2 labels in y"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 2]), "classes": np.array(["a", "b"])},
     "y[1] = 2 is outside [-1, 2)"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, -3])}, "y[1] = -3 is outside [-1"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1]), "x_test": np.zeros((1, 4, 4), np.uint8),
      "y_test": np.array([-1])}, "y_test[0] = -1 is outside [0"),
    ({"x": np.zeros((2, 4, 4), np.uint8)}, "no array 'y'"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2, int), "x_test": np.zeros((1, 4, 4))},
     "x_test and y_test together"),
    ({"x": np.zeros((2, 8, 8, 3), np.uint8), "y": np.zeros(2, int)}, "channels-last"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 1, 1]), "x_test": np.zeros((1, 4, 4), np.uint8),
      "y_test": np.array([2])}, "y_test[0] = 2 is a class that no label in y has (y holds 0, 1)"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 20, 10])},
     "y has no labeled example of class 1; labels are class indices 0..20"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 2, -1]), "classes": np.array(["a", "b", "c"])},
     "no labeled example of class 1 ('b' in 'classes')"),
])
def test_npz_bad_arrays_name_the_file(tmp_path, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    message = raises_one_line(DataError, load, "npz", path)
    assert str(path) in message and fragment in message


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04 broken")
    assert str(path) in raises_one_line(DataError, load, "npz", path)


# --------------------------------------------------------------------------- ImageNet


def test_imagenet_layout_fraction_and_val(tmp_path, capsys):
    for c, wnid in enumerate(["n01440764", "n01443537"]):
        for i in range(10):
            save(tmp_path / "train" / wnid / f"{wnid}_{i}.JPEG", (c * 200, 10 * i, 50), size=(20, 16))
        save(tmp_path / "val" / wnid / f"ILSVRC2012_val_{c}.JPEG", (c * 200, 0, 50))
    ds = load("imagenet", tmp_path, imagenet_fraction=0.3)
    assert ds.classes == ["n01440764", "n01443537"] and ds.image_hw == (8, 8)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert ds.mean == IMAGENET_MEAN and ds.hflip and not ds.test_held_out
    again = load("imagenet", tmp_path, imagenet_fraction=0.3)
    assert torch.equal(ds.x_train, again.x_train)  # the kept subset does not depend on the run
    assert "GiB of memory" in capsys.readouterr().err
    (tmp_path / "val" / "n01440764" / "ILSVRC2012_val_0.JPEG").rename(tmp_path / "val" / "flat.JPEG")
    message = raises_one_line(DataError, load, "imagenet", tmp_path)
    assert "flat.JPEG lies directly in" in message


# --------------------------------------------------------------------------- config and split


def test_config_keys_reach_the_loader(tmp_path):
    cfg = config.load_config(None, ["dataset=imagefolder", f"data_root={tmp_path}", "image_size=16",
                                    "channels=1", "test_fraction=0.5"])
    assert dataset_options(cfg) == {"image_size": 16, "channels": 1, "test_fraction": 0.5}
    with pytest.raises(ConfigError, match="svhn_extra=true does not apply to dataset=npz; it applies to svhn"):
        config.load_config(None, ["dataset=npz", "svhn_extra=true"])
    # a saved config is read without that check; the loader still refuses the option
    cfg = config.resolve({"dataset": "npz", "svhn_extra": True})
    assert dataset_options(cfg) == {"svhn_extra": True, "test_fraction": 0.2}
    assert "'svhn_extra'" in raises_one_line(ConfigError, load_dataset, "npz", "x.npz", **dataset_options(cfg))
    for bad, key in (("channels=2", "channels=2"), ("image_size=4", "image_size=4"),
                     ("imagenet_fraction=0", "imagenet_fraction=0")):
        with pytest.raises(ConfigError, match=key):
            config.load_config(None, [bad])
    assert {"imagefolder", "csv", "npz", "imagenet"} <= set(DATASETS)
    message = raises_one_line(ConfigError, load, "imagefolder", None)
    assert "data_root" in message
    # a run re-read without its settings must fail, not silently get other pixels or splits
    message = raises_one_line(ConfigError, load_dataset, "imagefolder", tmp_path, image_size=16)
    assert "needs the options channels, test_fraction" in message
    assert "'coarse'" in raises_one_line(ConfigError, load_dataset, "npz", "x.npz", coarse=True)


def test_unlabeled_examples_stay_out_of_labeled_and_val():
    y = torch.tensor([0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 1] * 3)
    for labels_per_class in (None, 3):
        s = make_split(y, ["a", "b"], labels_per_class, val_per_class=2, seed=0)
        assert (y[s.labeled] >= 0).all() and (y[s.val] >= 0).all()
        assert set((y < 0).nonzero().flatten().tolist()) <= set(s.unlabeled.tolist())
        assert len(s.labeled) + len(s.val) + len(s.unlabeled) == len(y)
    assert len(make_split(y, ["a", "b"], None, 2, 0).unlabeled) == 9


def test_from_arrays_takes_unlabeled_only_when_asked():
    x = np.zeros((3, 4, 4), np.uint8)
    assert from_arrays("t", x, [0, -1, 1], allow_unlabeled=True).y_train.tolist() == [0, -1, 1]
    message = raises_one_line(DataError, from_arrays, "t", x, [0, -2, 1], allow_unlabeled=True)
    assert "outside [-1, 2)" in message
    assert "outside [0, 2)" in raises_one_line(DataError, from_arrays, "t", x, [0, -1, 1], classes=["a", "b"])


def test_png_bytes_round_trip_through_read_image(tmp_path):
    buf = io.BytesIO()
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(a).save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    assert np.array_equal(read_image(tmp_path / "a.png", None, 3), a.transpose(2, 0, 1))


def test_cli_train_on_a_bad_folder_is_one_line_and_leaves_nothing(tmp_path, cli):
    root = image_folder(tmp_path / "data")
    (root / "labeled" / "blue").mkdir()
    out = tmp_path / "run"
    proc = cli("train", "--out", str(out), "dataset=imagefolder", f"data_root={root}", "steps=2")
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        f"metassl: error: data: class folder {root / 'labeled' / 'blue'} holds no images "
        f"({', '.join(IMAGE_SUFFIXES)})"]


@pytest.mark.parametrize("test_fraction", [0.2, 0.0])
def test_npz_without_any_label_says_there_is_no_labeled_data(tmp_path, test_fraction):
    path = tmp_path / "u.npz"
    np.savez(path, x=np.zeros((6, 4, 4), np.uint8), y=np.full(6, -1))
    message = raises_one_line(DataError, load, "npz", path, test_fraction=test_fraction)
    assert message.startswith(f"data: {path} has no labeled data: every label in y is -1")


def test_cli_train_on_an_unlabeled_npz_is_one_line_and_leaves_nothing(tmp_path, cli):
    path = tmp_path / "u.npz"
    np.savez(path, x=np.zeros((6, 4, 4), np.uint8), y=np.full(6, -1))
    out = tmp_path / "run"
    for fraction in ("0.2", "0"):
        proc = cli("train", "--out", str(out), "dataset=npz", f"data_root={path}", f"test_fraction={fraction}",
                   "steps=2")
        assert proc.returncode == 1 and not out.exists(), proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "has no labeled data" in lines[0], lines
