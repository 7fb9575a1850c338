"""Semi-supervised image classification from few labels: a library, a CLI and a Python API."""

__all__ = ["SSLClassifier"]


def __getattr__(name: str):
    # Lazy, so that `import metassl` (and the CLI's start-up) does not pull in torch.
    if name == "SSLClassifier":
        from metassl.api.estimator import SSLClassifier

        return SSLClassifier
    raise AttributeError(f"module 'metassl' has no attribute {name!r}")
