"""`metassl export`: the exported files give the same probabilities as PyTorch on real images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metassl.api.export import export_run
from metassl.api.inference import load_run
from metassl.data.images import images_under, read_images
from metassl.errors import CheckpointError


def real_images(photos, n: int) -> torch.Tensor:
    paths = (images_under(photos / "labeled") + images_under(photos / "unlabeled"))[:n]
    return torch.from_numpy(read_images(paths, (12, 12), 3))


def test_onnx_export_matches_pytorch(photos, photo_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    message = export_run(photo_run, "onnx", out)
    assert "uint8 N x 3 x 12 x 12 images" in message and "N x 3" in message
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary or weight files
    session = ort.InferenceSession(str(out))
    x = real_images(photos, 7)  # a batch size other than the one traced
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = load_run(photo_run).classifier(x).numpy()
    assert got.shape == (7, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == ["blue", "green", "red"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_export_matches_pytorch_and_the_cli_writes_it(photos, photo_run, tmp_path, cli):
    out = tmp_path / "model.pt"
    proc = cli("export", str(photo_run), "--format", "torchscript", "--out", str(out), check=True)
    assert "wrote torchscript model" in proc.stdout and proc.stderr == ""
    extra = {"classes.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["classes.json"]) == ["blue", "green", "red"]
    x = real_images(photos, 5)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), load_run(photo_run).classifier(x), atol=1e-6, rtol=1e-5)


def test_export_of_a_broken_run_is_a_one_line_error(photo_run, tmp_path):
    with pytest.raises(CheckpointError, match="holds no config.yaml"):
        export_run(tmp_path, "torchscript", tmp_path / "m.pt")
    broken = tmp_path / "run"
    broken.mkdir()
    for name in ("config.yaml", "best.pt"):
        (broken / name).write_bytes((photo_run / name).read_bytes())
    with pytest.raises(CheckpointError, match="data_info.json does not exist"):
        export_run(broken, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.pt").exists()


def test_a_vector_run_exports_float64_inputs_that_keep_a_timestamps_levels(tmp_path):
    """Vector runs standardise in float64; the exported model takes float64 too, so a feature far
    from 0 with a small spread (1e9 plus a spread of 10) predicts as `SSLClassifier` does."""
    ort = pytest.importorskip("onnxruntime")
    from metassl.api.estimator import SSLClassifier
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 30)
    x = np.concatenate([1e9 + 10 * rng.normal(size=(60, 1)) + 12 * y[:, None], rng.normal(size=(60, 2))], 1)
    clf = SSLClassifier(method="supervised", steps=40, eval_every=20, batch_size=16, val_per_class=2).fit(x, y)
    saved = clf.save(tmp_path / "run")
    message = export_run(saved, "onnx", tmp_path / "m.onnx")
    assert "float64 N x 3 vectors" in message
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert session.get_inputs()[0].type == "tensor(double)"
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, clf.predict_proba(x), atol=1e-5)
    # the check has teeth: the same rows rounded to float32 (steps of 64 at 1e9) predict otherwise
    assert not np.allclose(clf.predict_proba(x.astype(np.float32).astype(np.float64)), got, atol=1e-3)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_onto_a_full_disk_names_the_file_and_keeps_an_earlier_one(photo_run, tmp_path, monkeypatch, fmt):
    import errno
    from pathlib import Path

    if fmt == "onnx":
        pytest.importorskip("onnx")
    out = tmp_path / "model.bin"
    out.write_bytes(b"earlier")
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and Path(file).name.startswith(".model.bin"):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    monkeypatch.setattr("io.open", full_disk_open)  # Path.write_bytes opens through io
    from metassl.errors import StorageError

    with pytest.raises(StorageError) as info:
        export_run(photo_run, fmt, out)
    assert str(info.value) == f"export: cannot write {out}: No space left on device"
    assert out.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]
