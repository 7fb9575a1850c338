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
