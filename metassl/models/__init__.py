"""Model registry and factory.

Every registered model exposes the same interface, which the SSL methods rely on:

* ``forward_features(x) -> (N, feature_dim)``: penultimate (globally pooled) features;
* ``head``: the final ``nn.Linear`` mapping features to logits;
* ``forward(x) == head(forward_features(x))``;
* ``feature_dim``: an ``int``.

Factories are called as ``factory(in_channels, num_classes, image_size, **kwargs)``; ``image_size``
is the side of square images or a (height, width) pair.
"""
from __future__ import annotations

import inspect

from torch import nn

from metassl.errors import ConfigError
from metassl.registry import Registry

MODELS: Registry = Registry("model")

_POSITIONAL = ("in_channels", "num_classes", "image_size")
MIN_IMAGE_SIZE = 8


def create_model(name: str, in_channels: int, num_classes: int, image_size: int | tuple[int, int],
                 **kwargs) -> nn.Module:
    factory = MODELS.get(name)
    sides = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size,)
    if len(sides) not in (1, 2):
        raise ConfigError(f"model {name}: image_size must be a side or a (height, width) pair, got {image_size!r}")
    for label, value, low in (
        ("in_channels", in_channels, 1),
        ("num_classes", num_classes, 1),
        *(("image_size", side, MIN_IMAGE_SIZE) for side in sides),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"model {name}: {label} must be an integer >= {low}, got {value!r}")
    # Checked here so a typo in a config becomes a ConfigError instead of a TypeError deep in a factory.
    options = [p for p in inspect.signature(factory).parameters if p not in _POSITIONAL]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        accepted = ", ".join(options) if options else "none"
        raise ConfigError(f"model {name}: unknown option(s) {', '.join(unknown)}; accepted: {accepted}")
    return factory(in_channels, num_classes, sides if len(sides) == 2 else sides[0], **kwargs)


# Imported after MODELS exists: each module registers its factories on import.
from metassl.models import cnn, mlp, preact_resnet, resnet, shakeshake, wrn  # noqa: E402,F401

__all__ = ["MODELS", "create_model"]
