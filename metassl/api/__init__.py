"""Using metassl on your own data: the SSLClassifier estimator, predicting and exporting runs."""
from metassl.api.estimator import SSLClassifier

__all__ = ["SSLClassifier"]
