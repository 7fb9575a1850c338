"""`SSLClassifier`: scikit-learn style fit / predict on the same engine as `metassl train`."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from metassl import config as config_mod
from metassl.api.inference import Classifier, LoadedRun, load_run
from metassl.data.arrays import ArrayDataset, as_images, first_non_integer, from_arrays, integer_names
from metassl.data.runinfo import data_info, write_data_info
from metassl.data.sources import key_datasets
from metassl.data.vectors import from_vectors
from metassl.engine import checkpoint as ckpt
from metassl.engine import rundir
from metassl.engine.setup import pick_device
from metassl.engine.trainer import Interrupted, Trainer
from metassl.errors import ConfigError, DataError, NeedsUnlabeled, OutOfMemory
from metassl.files import atomic_write_text
from metassl.models import MIN_IMAGE_SIZE

# Keys fit() decides; the rest of TrainConfig can be passed as keywords.
_OWNED = ("dataset", "data_root", "method", "model", "steps")
# Where they differ from `metassl train`: use every label given, write no TensorBoard files.
_DEFAULTS = {"labels_per_class": None, "tensorboard": False}
# Shifting or flipping a feature vector laid out as an image would scramble its features.
_VECTOR_DEFAULTS = {"augment": {"translate": 0, "flip": "off"}}


class ParamError(ConfigError, ValueError):
    """A parameter of SSLClassifier that does not validate: a ConfigError, and the ValueError that
    scikit-learn's tools expect."""


class InputError(DataError, ValueError):
    """Arrays that SSLClassifier cannot take: a DataError, and the ValueError scikit-learn expects."""


class InputTypeError(DataError, TypeError):
    """Inputs of a type SSLClassifier cannot take (sparse matrices, objects that are not numbers)."""


class NotFitted(ConfigError, NotFittedError):
    """predict before fit: a ConfigError, and scikit-learn's NotFittedError."""


class SSLClassifier(ClassifierMixin, BaseEstimator):
    """A semi-supervised classifier trained from labeled and unlabeled arrays.

    ``SSLClassifier(method, model, steps, run_dir=None, **config)``: `config` is any
    TrainConfig key (``lr=0.03``, ``val_per_class=5``, ``ema_decay=0.999``, sections as dicts:
    ``augment={"translate": 4}``) or the method's section (``mixup={"alpha": 0.4}``); a bad
    key or value raises ConfigError at once. `model` defaults to ``cnn3`` for images and
    ``mlp`` for feature vectors.

    ``fit(X, y, X_unlabeled=None)`` takes images (N x C x H x W, or N x H x W grayscale;
    uint8 0..255 or float 0..1, numpy or torch) or feature vectors (N x D floats, any scale:
    see `VectorEncoder`), labels of any kind (their sorted unique values become `classes_`)
    and optional unlabeled examples of the same shape; a label of -1 (in numeric labels) marks an
    unlabeled example of X, as in scikit-learn's semi-supervised estimators. Or a single
    `ArrayDataset` whose ``y_train`` marks unlabeled examples with -1. The validation set that selects the
    weights (``val_per_class`` per class) comes from the labeled examples; there is no test
    set: score the model on held-back data of your own. Training writes a normal run
    directory (`run_dir`, replaced when it holds a run; a temporary one by default).

    It is a scikit-learn classifier (`clone`, `Pipeline`, `cross_val_score`, `GridSearchCV`):
    a bad parameter raises `ParamError`, bad arrays `InputError`, both also ValueErrors, and a
    failed `set_params` leaves every parameter as it was.
    """

    def __init__(self, method: str = "meta_pl_mixup", model: Optional[str] = None, steps: int = 1000, *,
                 run_dir: str | Path | None = None, **config: Any):
        self.method, self.model, self.steps, self.run_dir = method, model, steps, run_dir
        self._config = config
        self._validate()

    # -- scikit-learn protocol --------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {"method": self.method, "model": self.model, "steps": self.steps,
                "run_dir": self.run_dir, **self._config}

    def set_params(self, **params: Any) -> "SSLClassifier":
        """Change parameters; if the result does not validate, none of them changes."""
        before = (self.method, self.model, self.steps, self.run_dir, dict(self._config))
        for key, value in params.items():
            if key in ("method", "model", "steps", "run_dir"):
                setattr(self, key, value)
            else:
                self._config[key] = value
        try:
            self._validate()
        except ParamError:
            self.method, self.model, self.steps, self.run_dir, self._config = before
            raise
        return self

    def _validate(self) -> None:
        if self.run_dir is not None and not isinstance(self.run_dir, (str, os.PathLike)):
            raise ParamError(f"config: run_dir={self.run_dir!r} is not a path; give a directory (str or Path) "
                             "or None for a temporary one")
        if isinstance(self.run_dir, str) and not self.run_dir.strip():
            raise ParamError(f"config: run_dir={self.run_dir!r} names no directory; give one, or None for a "
                             "temporary one")
        try:
            self._resolve(vectors=False)
        except ConfigError as exc:
            raise ParamError(str(exc)) from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v is not None)
        return f"SSLClassifier({args})"

    # -- configuration ----------------------------------------------------------------------
    def _resolve(self, vectors: bool) -> config_mod.TrainConfig:
        owned = [k for k in self._config if k in _OWNED]
        if owned:
            raise ConfigError(f"config: SSLClassifier sets {owned[0]!r} itself; pass the data to fit()")
        raw = config_mod.merge(_DEFAULTS, _VECTOR_DEFAULTS) if vectors else dict(_DEFAULTS)
        # a method's section set to None is no section: that method's defaults (so set_params can
        # drop one, as a grid search over `method` needs)
        from metassl.methods import METHODS
        given = {k: v for k, v in self._config.items() if not (k in METHODS and v is None)}
        other = next((k for k in given if k in METHODS and k != self.method), None)
        if other:
            raise ConfigError(f"config: section {other!r} does not apply to method={self.method}; "
                              f"set {other}=None, or method={other!r}")
        raw = config_mod.merge(raw, given)
        raw.update(dataset="arrays", method=self.method, steps=self.steps,
                   model=self.model or ("mlp" if vectors else "cnn3"))
        cfg = config_mod.resolve(raw)
        config_mod.check_new(cfg)
        return cfg

    # -- data -------------------------------------------------------------------------------
    def _dataset(self, X: Any, y: Any, X_unlabeled: Any) -> tuple[ArrayDataset, np.ndarray]:
        if isinstance(X, ArrayDataset):
            if y is not None or X_unlabeled is not None:
                raise InputError("fit: an ArrayDataset carries its own labels (-1: unlabeled); "
                                 "pass it without y and X_unlabeled")
            # class names that are whole numbers were integer labels, as for a run of `metassl train`
            names = X.classes
            return X, np.array([int(n) for n in names] if integer_names(names) else names)
        if y is None:
            raise InputError("fit: SSLClassifier requires y to be passed, but the target y is None "
                             "(only an ArrayDataset X carries its own labels)")
        x = _array(X, "X")
        if isinstance(y, (list, tuple)):
            # numpy would read a -1 or a NaN among strings as the text '-1' or 'nan'
            given = np.array(list(y), dtype=object)
            given = given[:, 0] if given.ndim == 2 and given.shape[1] == 1 else given
            if given.ndim == 1 and any(isinstance(v, (str, np.str_)) for v in given):
                _check_labels(given)
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = column_or_1d(labels, warn=True)
        if labels.ndim != 1 or len(labels) != len(x):
            raise InputError(f"fit: y has shape {labels.shape} but X holds {len(x)} examples; "
                             "expected one label per example")
        _check_labels(labels)
        # -1 marks an unlabeled example, as in scikit-learn's semi-supervised estimators.
        unlabeled = (labels == -1) if np.issubdtype(labels.dtype, np.number) else np.zeros(len(labels), bool)
        classes, y_idx = np.unique(labels[~unlabeled], return_inverse=True)
        if not len(classes):
            raise InputError("fit: every label in y is -1 (unlabeled); a classifier needs labeled examples "
                             "of two or more classes")
        if len(classes) < 2:
            besides = " besides -1 (unlabeled)" if unlabeled.any() else ""
            raise InputError(f"fit: y has only one class, {classes.tolist()[0]!r}{besides}; a classifier "
                             "needs two or more classes")
        # an empty X_unlabeled is none
        given = X_unlabeled is not None and not (hasattr(X_unlabeled, "__len__") and len(X_unlabeled) == 0)
        xu = _array(X_unlabeled, "X_unlabeled") if given else x[:0]
        if xu.shape[1:] != x.shape[1:]:
            raise InputError(f"fit: X_unlabeled examples have shape {_shape(xu.shape[1:])} but X's "
                             f"have {_shape(x.shape[1:])}")
        targets = np.full(len(x) + len(xu), -1, dtype=np.int64)
        targets[:len(x)][~unlabeled] = y_idx
        names = [str(c) for c in classes]
        if x.ndim == 2:
            data = from_vectors("arrays", np.concatenate([x, xu]), targets, classes=names)
        else:
            images = torch.cat([as_images(x, "X"), as_images(xu, "X_unlabeled")]) if len(xu) \
                else as_images(x, "X")
            if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
                raise InputError(f"fit: X holds {images.shape[-2]} x {images.shape[-1]} images; the models take "
                                 f"images of at least {MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE}")
            data = from_arrays("arrays", images, targets, classes=names, allow_unlabeled=True)
        return data, classes

    def _inputs(self, X: Any) -> torch.Tensor:
        self._check_fitted()
        info = self.info_
        fitted, given = getattr(self, "feature_names_in_", None), _column_names(X)
        if fitted is not None and given is not None and list(fitted) != given:
            first = next((i for i, (a, b) in enumerate(zip(fitted, given)) if a != b), min(len(fitted), len(given)))
            got = repr(given[first]) if first < len(given) else "nothing"
            want = repr(fitted[first]) if first < len(fitted) else "nothing"
            raise InputError(f"predict: X's columns are not those fit() saw, in its order: column {first} is "
                             f"{got}, fit() had {want} (select them as X[est.feature_names_in_])")
        x = _array(X, "X")
        if "vectors" in info:
            features = len(info["vectors"]["mean"])
            if x.ndim != 2 or x.shape[1] != features:
                have = f"{x.shape[1]} features" if x.ndim == 2 else f"shape {_shape(x.shape)}"
                raise InputError(f"predict: X has {have}, but SSLClassifier is expecting {features} "
                                 f"features as input (feature vectors N x {features})")
            return torch.from_numpy(x.astype(np.float64))  # the encoder standardises in float64
        images = as_images(x, "X")
        want = (info["in_channels"], *info["image_hw"])
        if tuple(images.shape[1:]) != want:
            raise InputError(f"predict: X holds {_shape(images.shape[1:])} images (C x H x W); the model "
                             f"was fit on {_shape(want)}")
        return images

    # -- fit / predict ----------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, X_unlabeled: Any = None) -> "SSLClassifier":
        try:
            data, classes = self._dataset(X, y, X_unlabeled)
        except DataError as exc:
            raise _input_error(exc) from None
        names = _column_names(X)
        if names is not None and data.vectors is not None:
            # kept with the encoder, as a CSV table's header is: `metassl predict` reads by name
            data.vectors["columns"] = names
        cfg = self._resolve(vectors=data.vectors is not None)
        if self.run_dir is not None and Path(self.run_dir).exists() and not Path(self.run_dir).is_dir():
            raise ParamError(f"fit: run_dir {self.run_dir} exists and is not a directory")
        with ckpt.preserved_rng():  # training seeds the global generators; the caller's are kept
            try:
                self._fit(cfg, data, classes)
            except NeedsUnlabeled:
                raise InputError(f"fit: method={cfg.method!r} needs unlabeled data, and every example given is "
                                 "labeled: pass X_unlabeled, or mark examples of X as unlabeled with y = -1 "
                                 "(method='supervised' trains on the labels alone)") from None
            except ConfigError as exc:  # a setting that fails only with the data given
                raise ParamError(f"fit: {str(exc).removeprefix('config: ').removeprefix('train: ')}") from None
        # the model now is this fit's: saving it is no longer a no-op where it was loaded from
        self.__dict__.pop("_loaded_from", None)
        return self

    def _fit(self, cfg: config_mod.TrainConfig, data: ArrayDataset, classes: np.ndarray) -> None:
        keep = self.run_dir is not None
        holder = nullcontext(self.run_dir) if keep else tempfile.TemporaryDirectory(prefix="metassl-")
        with holder as where:
            path = Path(where)
            # A run already in run_dir is replaced only once this one has read its data and built
            # its model, as `metassl train --overwrite` does; a fit that fails first leaves it.
            claim = rundir.claim_new(path, overwrite=True)
            try:
                try:
                    trainer = Trainer(cfg, path, data=data, overwrite=True)
                except BaseException:
                    claim.abandon()
                    raise
                final = trainer.fit()
                write_data_info(path, data_info(data, labels=classes.tolist()))
                self._set_fitted(load_run(path, pick_device(cfg.device)), final)
            except Interrupted:
                # An estimator's fit is not resumed: stop as Ctrl-C stops any Python call.
                raise KeyboardInterrupt from None
            except DataError as exc:  # e.g. too few examples of a class for val_per_class
                raise _input_error(exc) from None
            except OutOfMemory as exc:  # a fit is not resumed: what to lower, without the command line's resume
                raise OutOfMemory(f"SSLClassifier.fit: {exc.brief.removeprefix('train: ')}") from None
            finally:
                claim.release()
        self.run_dir_ = path if keep else None
        self._on_disk = _stamp(path) if keep else None

    def _set_fitted(self, run: LoadedRun, final: Optional[dict]) -> None:
        self.model_: Classifier = run.classifier
        self.info_, self.cfg_, self.step_, self.final_ = run.info, run.cfg, run.step, final
        # A run of `metassl train` records class names only: whole numbers were integer labels.
        names = run.info["classes"]
        if "labels" in run.info:
            self.classes_ = np.array(run.info["labels"])
        elif integer_names(names):
            self.classes_ = np.array([int(n) for n in names])
        else:
            self.classes_ = np.array(names)
        if run.info.get("vectors"):
            self.n_features_in_ = len(run.info["vectors"]["mean"])
        else:  # an estimator refit on images after vectors
            self.__dict__.pop("n_features_in_", None)
        # the names of the features: a DataFrame's columns, or a CSV table's header
        columns = (run.info.get("vectors") or {}).get("columns")
        if columns:
            self.feature_names_in_ = np.array(columns, dtype=object)
        else:
            self.__dict__.pop("feature_names_in_", None)

    def _check_fitted(self, before: str = "predicting") -> None:
        if not hasattr(self, "model_"):
            raise NotFitted(f"SSLClassifier: call fit() (or SSLClassifier.load) before {before}")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, N x len(classes_), columns in the order of `classes_`."""
        try:
            x = self._inputs(X)
        except DataError as exc:
            raise _input_error(exc) from None
        return self.model_.predict(x, self.cfg_.eval_batch_size).numpy()

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a run directory that `load`, `metassl predict` and `metassl export` read. A
        directory that holds another run is refused unless ``overwrite``, which removes that run's
        files first (other files there are kept)."""
        self._check_fitted("saving")
        path = Path(path)
        source = self.run_dir_ if self.run_dir_ is not None else getattr(self, "_loaded_from", None)
        own = source is not None and path.resolve() == Path(source).resolve()
        if own and _stamp(path) == getattr(self, "_on_disk", None):
            return path  # the run there is this classifier's, as fit or load left it
        if path.exists() and not path.is_dir():
            raise ParamError(f"save: {path} exists and is not a directory")
        try:
            rundir.check_foreign(path, "save")
        except ConfigError as exc:
            raise ParamError(str(exc)) from None
        if rundir.holds_run(path) and not overwrite:
            if own:  # e.g. a clone fit with the same run_dir (a grid search) wrote its run over this one's
                raise ParamError(f"save: {path} no longer holds this classifier's run (another fit or save "
                                 "replaced it); pass overwrite=True to write this one there")
            raise ParamError(f"save: {path} already holds a run; pass overwrite=True to replace it")
        path.mkdir(parents=True, exist_ok=True)
        with rundir.lock_run(path):  # not while a training run or another save holds the directory
            if rundir.holds_run(path):
                rundir.clear_run(path)
            self._write(path)
        if own:  # the run there is this classifier's again
            self._on_disk = _stamp(path)
        return path

    def _write(self, path: Path) -> None:
        rundir.write_config(path, self.cfg_)
        state = {k: v.cpu() for k, v in self.model_.model.state_dict().items()}
        ckpt.atomic_save({"format": ckpt.WEIGHTS_FORMAT, "step": self.step_, "model": state,
                          **rundir.identity(self.cfg_)}, path / "best.pt")
        write_data_info(path, self.info_)
        if self.final_ is not None:
            atomic_write_text(path / "final.json", json.dumps(self.final_, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "SSLClassifier":
        """A fitted classifier from a saved or `metassl train` run directory (its best.pt)."""
        path = Path(path)
        # before reading: a run that replaces the weights meanwhile makes a later save(path) refuse
        stamp = _stamp(path)
        run = load_run(path, pick_device(device))
        dumped = config_mod.dump(run.cfg)
        # the data keys of a run trained on files (image_size, test_fraction, ...) describe how
        # its data was read; the estimator's own data are arrays
        data_keys = key_datasets()
        config = {k: v for k, v in dumped.items() if k not in _OWNED and k not in data_keys}
        est = cls(method=run.cfg.method, model=run.cfg.model, steps=run.cfg.steps, **config)
        est._set_fitted(run, rundir.read_final(path))
        est.run_dir_ = None
        est._loaded_from = path  # saving back there is a no-op, not a replacement of the run
        est._on_disk = stamp
        return est


def _stamp(path: Path) -> Optional[tuple]:
    """Which weights file ``path`` holds (every write replaces the file, a new inode), to tell
    whether the run there is still the one a classifier fit or loaded."""
    try:
        st = (path / "best.pt").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _column_names(X: Any) -> Optional[list[str]]:
    """A DataFrame's column names where all are strings (scikit-learn's feature_names_in_), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    return names if names and all(isinstance(n, str) for n in names) else None


def _check_labels(labels: np.ndarray) -> None:
    """scikit-learn's check that ``labels`` are class labels, as an InputError naming the first bad one."""
    i = first_non_integer(labels)
    if i is None and labels.dtype == object:  # a missing label: None, or a NaN among strings
        i = next((j for j, v in enumerate(labels) if v is None or (isinstance(v, float) and v != v)), None)
    if i is not None:
        missing = labels[i] is None or labels[i] != labels[i]
        kind = "" if missing else "Unknown label type: "  # scikit-learn's words, which its checks match
        raise InputError(f"fit: {kind}y[{i}] = {labels[i]} is not a class label (labels are whole numbers "
                         "or strings; -1 marks an unlabeled example)")
    if labels.dtype == object:
        _check_label_types(labels)
    try:
        check_classification_targets(labels)
        np.unique(labels)
    except TypeError:  # labels of other types that do not compare
        raise _mixed_labels(labels) from None
    except ValueError as exc:
        raise InputError(f"fit: y does not hold class labels ({_brief(exc)})") from None


def _check_label_types(values) -> None:
    """Numbers and strings together in y (``["cat", -1, "dog"]``, meaning -1 as unlabeled) are an
    error rather than a class named '-1'."""
    text = any(isinstance(v, (str, np.str_)) for v in values)
    if text and any(isinstance(v, (int, float, np.number)) and v == v for v in values):  # NaN: a missing label
        raise _mixed_labels(values)


def _mixed_labels(values) -> InputError:
    kinds = sorted({type(v).__name__ for v in values})
    return InputError(f"fit: y mixes labels of types {', '.join(kinds)}; give labels of one type "
                      "(with numbers, -1 marks unlabeled examples; with strings there is no "
                      "unlabeled marker: pass unlabeled examples as X_unlabeled)")


def _brief(exc: Exception) -> str:
    """numpy's or scikit-learn's message on one line, without the array it may print."""
    kept, depth = [], 0
    for line in str(exc).splitlines():
        text = line.strip()
        if not depth and (text.startswith("array=[") or text.startswith("[")):
            text = text.removeprefix("array=")
        elif not depth:
            if text:
                kept.append(text)
            continue
        depth += text.count("[") - text.count("]")
        depth = max(depth, 0)
    return " ".join(kept)


def _input_error(exc: DataError) -> DataError:
    return exc if isinstance(exc, (InputError, InputTypeError)) else InputError(str(exc))


def _array(x: Any, what: str) -> np.ndarray:
    """``x`` as a numpy array checked as scikit-learn checks inputs (dense, numeric, finite, not
    empty); images may have more than two dimensions. A problem is an InputError on one line."""
    try:
        return check_array(_numpy(x) if isinstance(x, torch.Tensor) else x, dtype="numeric", allow_nd=True,
                           input_name=what)
    except (TypeError, ValueError) as exc:
        kind = InputTypeError if isinstance(exc, TypeError) else InputError
        raise kind(f"{what}: {_brief(exc)}") from None


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _shape(shape: tuple) -> str:
    return " x ".join(str(int(d)) for d in shape)
