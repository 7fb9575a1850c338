"""Atomic checkpoints that ``torch.load(weights_only=True)`` can read, with every RNG state."""
from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from metassl.errors import CheckpointError
from metassl.files import atomic_write

FORMAT = "metassl-checkpoint"
WEIGHTS_FORMAT = "metassl-weights"


def atomic_save(obj: dict, path: Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load(path: Path, expected: str = FORMAT) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"checkpoint: {path} is not a readable checkpoint "
                              f"({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != expected:
        raise CheckpointError(f"checkpoint: {path} is not a metassl {expected} file")
    return obj


def _tensors(tree: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _tensors(value, f"{prefix}.{i}" if prefix else str(i))


def first_nonfinite(tree: Any) -> Optional[str]:
    """The dotted name of the first floating-point tensor in ``tree`` (nested dicts, lists) that holds
    a NaN or an infinity, or None when all are finite."""
    found = [(name, t) for name, t in _tensors(tree, "") if t.is_floating_point()]
    if not found:
        return None
    finite = torch.stack([torch.isfinite(t).all().cpu() for _, t in found])
    if bool(finite.all()):
        return None
    return found[int((~finite).nonzero()[0, 0])][0]


def digest(tensors: list[torch.Tensor]) -> str:
    """A SHA-256 of integer tensors' values (a split's index lists), the same on every machine."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().numpy().astype("<i8").tobytes())
        h.update(b"/")
    return h.hexdigest()


def rng_state(cuda: bool = True) -> dict:
    """The global generators' states; ``cuda`` False leaves CUDA's out (reading them starts CUDA)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run the body with the global random generators (Python, numpy, torch, CUDA) restored after
    it to where they were, however it ends."""
    saved = rng_state(cuda=torch.cuda.is_initialized())
    try:
        yield
    finally:
        set_rng_state(saved)


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
