"""Training methods, one file each, registered by name; shared pieces live beside them."""
import importlib
import pkgutil

from metassl.methods.base import METHODS, Batch, Method, TrainContext

# Importing every module registers the methods defined in it.
for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Batch", "Method", "TrainContext"]
