"""`metassl predict`: rows, columns, the selected weights, and bad inputs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metassl import config
from metassl.api.predict import predict_to_csv
from metassl.data.augment import Augmenter
from metassl.data.images import images_under, read_images
from metassl.engine import checkpoint as ckpt
from metassl.engine import rundir
from metassl.engine.trainer import Trainer
from metassl.errors import DataError
from metassl.models import create_model
from tests.conftest import FAST


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def reference_probabilities(run, images: torch.Tensor) -> torch.Tensor:
    """What the run's selected weights say, computed the way the engine evaluates."""
    info = json.loads((run / "data_info.json").read_text())
    model = create_model("cnn3", info["in_channels"], len(info["classes"]), info["image_hw"][0])
    model.load_state_dict(ckpt.load(run / "best.pt", ckpt.WEIGHTS_FORMAT)["model"])
    norm = Augmenter(info["mean"], info["std"], flip=False, translate=0, noise=0.0, device="cpu").normalize
    with torch.no_grad():
        return torch.softmax(model.eval()(norm(images)), dim=1)


def test_predict_writes_one_row_per_input_from_the_selected_weights(photos, photo_run, tmp_path):
    final = json.loads((photo_run / "final.json").read_text())
    assert final["test_held_out"] is True
    assert json.loads((photo_run / "data_info.json").read_text())["classes"] == ["blue", "green", "red"]
    folder = photos / "unlabeled"
    single = photos / "labeled" / "blue" / "3.png"
    arrays = read_images(images_under(photos / "labeled" / "red")[:3], (12, 12), 3)
    bigger = read_images(images_under(photos / "labeled" / "red")[:2], (20, 20), 3)
    np.savez(tmp_path / "a.npz", x=arrays)
    np.savez(tmp_path / "b.npz", images=bigger.astype(np.float32) / 255)  # the only array, other size
    out = tmp_path / "preds" / "p.csv"
    message = predict_to_csv(photo_run, [folder, single, tmp_path / "a.npz", tmp_path / "b.npz"], out,
                             batch_size=5)
    assert str(out) in message
    rows = read_rows(out)
    assert rows[0] == ["path", "prediction", "p_blue", "p_green", "p_red"]
    names = [r[0] for r in rows[1:]]
    assert names == [str(p) for p in images_under(folder)] + [str(single)] + \
        [f"{tmp_path / 'a.npz'}:{i}" for i in range(3)] + [f"{tmp_path / 'b.npz'}:{i}" for i in range(2)]
    probs = torch.tensor([[float(v) for v in r[2:]] for r in rows[1:]])
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-4)
    assert [r[1] for r in rows[1:]] == [["blue", "green", "red"][i] for i in probs.argmax(1).tolist()]
    images = torch.from_numpy(read_images(images_under(folder) + [single], (12, 12), 3))
    expected = reference_probabilities(photo_run, torch.cat([images, torch.from_numpy(arrays)]))
    assert torch.allclose(probs[:len(expected)], expected, atol=1e-5)
    # the colours are easy: the model gets the labeled red images right
    assert [r[1] for r in rows[14:17]] == ["red"] * 3


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gray")
    cfg = config.load_config(None, FAST + ["steps=4", "eval_every=4"])
    rundir.prepare_new(run, cfg, overwrite=False)
    Trainer(cfg, run).fit()
    return run


def test_bad_inputs_name_the_file_and_keep_the_old_output(photo_run, gray_run, photos, tmp_path):
    out = tmp_path / "preds.csv"
    out.write_text("earlier results\n")
    truncated = tmp_path / "cut.png"
    data = (photos / "unlabeled" / "u00.png").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    np.savez(tmp_path / "gray.npz", x=np.zeros((2, 1, 12, 12), np.uint8))
    np.savez(tmp_path / "none.npz", a=np.zeros(2), b=np.zeros(2))
    (tmp_path / "empty").mkdir()
    color = photos / "labeled" / "red" / "1.png"
    cases = [
        (photo_run, truncated, "is not a readable image"),
        (photo_run, tmp_path / "gray.npz", "has 1-channel images but run"),
        (photo_run, tmp_path / "none.npz", "has no array 'x'"),
        (photo_run, tmp_path / "missing.png", "does not exist"),
        (photo_run, tmp_path / "missing.npz", "does not exist"),
        (photo_run, tmp_path / "empty", "holds no images"),
        (gray_run, color, "is a colour image but run"),
    ]
    for run, bad, fragment in cases:
        # good inputs come first, so some rows were already written when the bad one is met
        good = [photos / "unlabeled"] if run == photo_run else []
        with pytest.raises(DataError) as info:
            predict_to_csv(run, [*good, bad], out, batch_size=4)
        assert str(bad) in str(info.value) and fragment in str(info.value) and "\n" not in str(info.value)
        assert out.read_text() == "earlier results\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["cut.png", "empty", "gray.npz", "none.npz", "preds.csv"]  # no temporary files


def test_gray_images_predict_on_a_gray_run_and_cli_errors_are_one_line(gray_run, tmp_path, cli):
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(tmp_path / "g.png")
    Image.new("RGB", (8, 8), (70, 70, 70)).save(tmp_path / "rgb-but-gray.png")
    out = tmp_path / "p.csv"
    proc = cli("predict", str(gray_run), str(tmp_path / "g.png"), str(tmp_path / "rgb-but-gray.png"),
               "--out", str(out), check=True)
    assert "wrote 2 predictions" in proc.stdout
    assert len(read_rows(out)) == 3 and read_rows(out)[0][2:] == [f"p_{d}" for d in range(10)]
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "red.png")
    proc = cli("predict", str(gray_run), str(tmp_path / "red.png"), "--out", str(tmp_path / "q.csv"))
    assert proc.returncode == 1 and not (tmp_path / "q.csv").exists()
    assert proc.stderr.strip().splitlines() == [
        f"metassl: error: data: {tmp_path / 'red.png'} is a colour image but run {gray_run} was trained on "
        "grayscale images"]


def test_an_out_that_would_destroy_an_input_or_the_run_is_refused(cli, photos, photo_run, tmp_path):
    image = next(iter(images_under(photos / "labeled")))
    before = image.read_bytes()
    config_before = (photo_run / "config.yaml").read_bytes()
    for out, words in [(str(image), "one of the inputs"), (str(photo_run / "config.yaml"), "one of the run's own files"),
                       (str(photo_run / "report.md"), "one of the run's own files"),
                       (str(tmp_path), "is a directory"), ("", "is a directory")]:
        for command in (["predict", str(photo_run), str(image)], ["export", str(photo_run), "--format", "torchscript"]):
            if command[0] == "export" and words == "one of the inputs":
                continue
            proc = cli(*command, "--out", out)
            assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
    # an image inside an input folder is an input too, or would become one
    for out in (image, image.parent / "new.png"):
        proc = cli("predict", str(photo_run), str(photos / "labeled"), "--out", str(out))
        assert proc.returncode == 2 and "one of the inputs" in proc.stderr
    assert not (image.parent / "new.png").exists()
    assert image.read_bytes() == before and (photo_run / "config.yaml").read_bytes() == config_before
    ok = cli("predict", str(photo_run), str(image), "--out", str(photo_run / "preds.csv"))
    assert ok.returncode == 0 and len(read_rows(photo_run / "preds.csv")) == 2


def test_an_out_that_would_replace_or_join_the_runs_training_data_is_refused(cli, photos, photo_run, tmp_path):
    image = next(iter(images_under(photos / "labeled")))
    before = image.read_bytes()
    query = tmp_path / "q.png"
    query.write_bytes(before)
    for out in (image, photos / "labeled" / "red" / "new.png", photos / "unlabeled" / "more.jpg"):
        for command in (["predict", str(photo_run), str(query)], ["export", str(photo_run), "--format", "torchscript"]):
            proc = cli(*command, "--out", str(out))
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert proc.stderr.strip() == (f"metassl: error: {command[0]}: --out {out} is (or would join) the run's "
                                           f"training data (data_root {photos}); write it elsewhere")
    assert image.read_bytes() == before and not (photos / "labeled" / "red" / "new.png").exists()
    # a table of predictions beside the data is no image the run reads
    ok = cli("predict", str(photo_run), str(query), "--out", str(tmp_path / "preds.csv"))
    assert ok.returncode == 0


def test_predict_on_a_folder_names_the_files_it_does_not_read(cli, photo_run, photos, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    image = next(iter(images_under(photos / "labeled")))
    (folder / "a.png").write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("x")
    (folder / "sub" / "photo.png.bak").write_bytes(image.read_bytes())
    proc = cli("predict", str(photo_run), str(folder), "--out", str(tmp_path / "p.csv"), check=True)
    assert "wrote 1 predictions" in proc.stdout
    assert f"metassl: 2 files under {folder} not read, not images by their suffix (notes.txt, sub/photo.png.bak)" \
        in proc.stderr


def test_predict_on_a_folder_reads_past_an_unreadable_subfolder_and_names_it(photo_run, photos, tmp_path,
                                                                             monkeypatch, capsys):
    from tests.data.test_files import refuse_listing

    folder = tmp_path / "disk"
    (folder / "lost+found").mkdir(parents=True)
    image = next(iter(images_under(photos / "labeled")))
    (folder / "a.png").write_bytes(image.read_bytes())
    refuse_listing(monkeypatch, folder / "lost+found")
    out = tmp_path / "p.csv"
    assert "wrote 1 predictions" in predict_to_csv(photo_run, [folder], out)
    assert [r[0] for r in read_rows(out)[1:]] == [str(folder / "a.png")]
    assert capsys.readouterr().err == (f"metassl: 1 folder under {folder} could not be read, their images not "
                                       f"predicted (lost+found)\n")
    refuse_listing(monkeypatch, folder)  # the folder asked for itself is an error
    with pytest.raises(DataError, match=f"cannot read {folder}: Permission denied"):
        predict_to_csv(photo_run, [folder], out)


def test_a_full_disk_while_predicting_names_the_output_and_leaves_no_file(photo_run, photos, tmp_path,
                                                                          monkeypatch):
    from metassl.api import predict as predict_mod
    from metassl.errors import StorageError

    monkeypatch.setattr(predict_mod, "open", lambda *a, **k: open("/dev/full", "wb", buffering=0), raising=False)
    out = tmp_path / "p.csv"
    with pytest.raises(StorageError) as info:
        predict_to_csv(photo_run, [photos / "unlabeled"], out)
    assert str(info.value) == f"predict: cannot write {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_one_line_naming_it_before_any_work(photo_run, photos, tmp_path,
                                                                                  monkeypatch):
    from metassl.api.export import export_run
    from metassl.errors import MetasslError

    blocker = tmp_path / "model.pt"
    blocker.write_text("a file, not a folder")
    for command, write in (("predict", lambda out: predict_to_csv(photo_run, [photos / "unlabeled"], out)),
                           ("export", lambda out: export_run(photo_run, "torchscript", out))):
        out = blocker / "sub" / "x.out"
        with pytest.raises(MetasslError) as info:
            write(out)
        assert str(info.value) == f"{command}: cannot write {out}: {blocker} is a file, not a folder"
        assert blocker.read_text() == "a file, not a folder"
        # a folder the command may not write in (simulated: the tests may run as root)
        denied = tmp_path / "ro" / "y.out"

        def refuse(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        with monkeypatch.context() as m:
            m.setattr(Path, "touch", refuse)
            with pytest.raises(MetasslError) as info:
                write(denied)
        assert str(info.value) == f"{command}: cannot write {denied}: Permission denied"
        assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.parametrize("channels", [2, 4])
def test_arrays_of_two_or_four_channels_are_resized_channel_by_channel(channels, tmp_path):
    rng = np.random.default_rng(channels)
    y = np.repeat(np.arange(3), 6)
    x = rng.integers(0, 256, (len(y), channels, 10, 10), dtype=np.uint8)
    x[np.arange(len(y)), y % channels] //= 4  # each class darker in one channel
    np.savez(tmp_path / "train.npz", x=x, y=y, x_test=x[:6], y_test=y[:6])
    run = tmp_path / "run"
    cfg = config.load_config(None, ["dataset=npz", f"data_root={tmp_path / 'train.npz'}", "model=mlp",
                                    "labels_per_class=4", "val_per_class=2", "steps=4", "eval_every=4",
                                    "tensorboard=false", "batch_size=8"])
    rundir.prepare_new(run, cfg, overwrite=False)
    Trainer(cfg, run).fit()
    big = rng.integers(0, 256, (3, channels, 17, 23), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", x=big)
    # each channel resized on its own, as a grayscale image, is what the run's 10 x 10 inputs are
    small = np.stack([np.stack([np.asarray(Image.fromarray(c).resize((10, 10), Image.Resampling.BILINEAR))
                                for c in image]) for image in big])
    np.savez(tmp_path / "small.npz", x=small)
    predict_to_csv(run, [tmp_path / "big.npz"], tmp_path / "big.csv")
    predict_to_csv(run, [tmp_path / "small.npz"], tmp_path / "small.csv")
    assert [r[1:] for r in read_rows(tmp_path / "big.csv")] == [r[1:] for r in read_rows(tmp_path / "small.csv")]
    # an image file holds 1 or 3 channels: named as such, with what the run takes
    Image.new("L", (10, 10), 90).save(tmp_path / "g.png")
    with pytest.raises(DataError, match=rf"g.png is an image file, read as 1 channel, but run .* was trained on "
                                        rf"{channels}-channel arrays; pass them as an .npz with x of N x {channels} x H x W"):
        predict_to_csv(run, [tmp_path / "g.png"], tmp_path / "g.csv")


def test_resizing_channel_by_channel_is_pillows_resize_of_a_colour_image():
    from metassl.api.predict import _resize
    from metassl.data.images import to_array

    a = np.random.default_rng(0).integers(0, 256, (3, 17, 23), dtype=np.uint8)
    for hw in ((10, 10), (31, 7)):
        assert np.array_equal(_resize(a, hw), to_array(Image.fromarray(a.transpose(1, 2, 0)), hw, 3))
