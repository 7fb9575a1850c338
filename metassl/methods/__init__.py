"""Training methods, one file each, registered by name."""
from metassl.methods.base import METHODS, Batch, Method, TrainContext

# Importing the modules registers their methods.
from metassl.methods import supervised, mixup  # noqa: E402,F401

__all__ = ["METHODS", "Batch", "Method", "TrainContext"]
