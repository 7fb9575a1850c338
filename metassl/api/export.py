"""`metassl export`: a run's selected model, normalisation included, as ONNX or TorchScript.

The exported model is `metassl.api.inference.Classifier`:

* input ``input``: uint8 images N x C x H x W at the run's size (float64 N x D for runs fit
  on feature vectors, standardised in float64 as in training), any batch size N;
* output ``probabilities``: float32 N x K softmax probabilities, classes in the order of the
  run's data_info.json, which is also stored in the file (ONNX metadata ``classes``,
  TorchScript extra file ``classes.json``).
"""
from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch

from metassl.api.inference import Classifier, check_output_file, load_run, output_temp
from metassl.errors import ConfigError, MetasslError
from metassl.files import storage_errors

FORMATS = ("onnx", "torchscript")


def example_input(info: dict, n: int = 2) -> torch.Tensor:
    """A batch of the inputs the exported model takes (random, of the right dtype and shape)."""
    generator = torch.Generator().manual_seed(0)
    if info.get("vectors"):
        return torch.randn(n, len(info["vectors"]["mean"]), generator=generator, dtype=torch.float64)
    shape = (n, int(info["in_channels"]), *(int(d) for d in info["image_hw"]))
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def _onnx(classifier: Classifier, example: torch.Tensor, path: Path, classes: list[str]) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise MetasslError("export: ONNX export needs the onnx and onnxscript packages; "
                           "pip install 'metassl[export]'") from None
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about optional packages it does not need here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(classifier, (example,), str(path), input_names=["input"],
                              output_names=["probabilities"], dynamo=True, external_data=False,
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    finally:
        exporter_log.setLevel(level)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"classes": json.dumps(classes)})
    onnx.save(model, str(path))


def _torchscript(classifier: Classifier, example: torch.Tensor, path: Path, classes: list[str]) -> None:
    with warnings.catch_warnings():
        # torch marks TorchScript deprecated; it is still what many C++ and mobile runtimes load.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(classifier, example)
        # Saved to memory first: torch.jit.save aborts the process where the disk fills up.
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"classes.json": json.dumps(classes)})
    path.write_bytes(buffer.getvalue())


def export_run(run: Path, fmt: str, out: Path) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"export: format {fmt!r} is unknown; choose from {', '.join(FORMATS)}")
    check_output_file(out, "export", run)
    loaded = load_run(run, "cpu")
    classes = loaded.info["classes"]
    example = example_input(loaded.info)
    tmp = output_temp(out, "export")
    try:
        try:
            with storage_errors(out, "export"):
                (_onnx if fmt == "onnx" else _torchscript)(loaded.classifier, example, tmp, classes)
        except MetasslError:
            raise
        except Exception as exc:  # noqa: BLE001 - exporters fail with many exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MetasslError(f"export: {fmt} export of model {loaded.cfg.model!r} failed: "
                               f"{first}") from None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    dims = " x ".join(str(d) for d in example.shape[1:])
    kind = f"float64 N x {dims} vectors" if loaded.info.get("vectors") else f"uint8 N x {dims} images"
    return (f"metassl: wrote {fmt} model to {out}: input 'input' {kind}, output 'probabilities' "
            f"N x {len(classes)}")
