"""The estimator a practitioner loads, refits and saves again; NumPy scalars as parameters;
DataFrame column names; fit errors that name what to change in the call."""
from __future__ import annotations

import numpy as np
import pytest

from metassl import SSLClassifier
from metassl.api.estimator import InputError, ParamError
from metassl.data.arrays import from_arrays
from metassl.errors import ConfigError
from sklearn.exceptions import NotFittedError
from tests.api.test_sklearn import TINY, vectors


class Frame:
    """What SSLClassifier reads of a pandas DataFrame: named columns over an array."""

    def __init__(self, values: np.ndarray, columns: list[str]):
        self.values, self.columns = values, columns

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)

    @property
    def shape(self):
        return self.values.shape

    def reorder(self, columns: list[str]) -> "Frame":
        return Frame(self.values[:, [self.columns.index(c) for c in columns]], columns)


def test_a_loaded_estimator_refit_and_saved_back_writes_the_new_model(tmp_path):
    x, y = vectors(60)
    SSLClassifier(method="supervised", **TINY).fit(x, y).save(tmp_path / "run")
    est = SSLClassifier.load(tmp_path / "run")
    assert est.save(tmp_path / "run") == tmp_path / "run"  # unchanged since load: nothing to write
    est.fit(x, np.array(["ant", "bee", "cat"])[y])
    est.save(tmp_path / "run", overwrite=True)
    assert list(SSLClassifier.load(tmp_path / "run").classes_) == ["ant", "bee", "cat"]
    with pytest.raises(ConfigError, match="device='gpu' is not a device; use auto, cpu, cuda or cuda:N"):
        SSLClassifier.load(tmp_path / "run", device="gpu")
    with pytest.raises(NotFittedError, match="before saving"):
        SSLClassifier(method="supervised").save(tmp_path / "never")


def test_save_refuses_a_folder_holding_a_user_s_own_config_even_with_overwrite(tmp_path):
    x, y = vectors(60)
    est = SSLClassifier(method="supervised", **TINY).fit(x, y)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.yaml").write_text("lr: 0.1\nnotes: my experiment settings\n")
    for overwrite in (False, True):
        with pytest.raises(ParamError, match="holds a config.yaml that is not a metassl run's"):
            est.save(tmp_path / "proj", overwrite=overwrite)
    assert (tmp_path / "proj" / "config.yaml").read_text() == "lr: 0.1\nnotes: my experiment settings\n"


@pytest.mark.parametrize("params", [{"steps": np.int64(20)}, {"lr": np.float32(0.1)}, {"nesterov": np.bool_(False)},
                                    {"method": "mixup", "mixup": {"alpha": np.float64(0.4)}}])
def test_numpy_scalars_are_parameters_as_grid_searches_pass_them(params):
    from sklearn.model_selection import GridSearchCV

    est = SSLClassifier(**{"method": "supervised", **TINY, **params})
    key = next(iter(params))
    assert type(est.get_params()[key]) is type(params[key]) or key == "mixup"
    x, y = vectors(60)
    est.fit(x, y)
    assert est.cfg_.steps == 20 and isinstance(est.cfg_.steps, int)
    search = GridSearchCV(SSLClassifier(method="supervised", **{**TINY, "steps": 10}), {"steps": np.arange(2, 4)}, cv=2)
    assert search.fit(x, y).best_params_["steps"] in (2, 3)


def test_a_method_section_set_to_none_is_dropped_so_a_grid_can_change_the_method():
    from sklearn.model_selection import GridSearchCV

    est = SSLClassifier(method="mixup", mixup={"alpha": 0.4}, **TINY)
    with pytest.raises(ParamError, match="section 'mixup' does not apply to method=supervised; set mixup=None, "
                                         "or method='mixup'"):
        est.set_params(method="supervised")
    assert est.get_params()["method"] == "mixup" and est.get_params()["mixup"] == {"alpha": 0.4}
    est.set_params(method="supervised", mixup=None)
    assert est._resolve(vectors=True).method == "supervised"
    assert SSLClassifier(method="mixup", mixup=None, **TINY)._resolve(vectors=True).method_cfg.alpha == \
        SSLClassifier(method="mixup", **TINY)._resolve(vectors=True).method_cfg.alpha
    x, y = vectors(60)
    grid = [{"method": ["supervised"], "mixup": [None]}, {"method": ["mixup"], "mixup": [{"alpha": 0.4}]}]
    search = GridSearchCV(SSLClassifier(method="mixup", mixup={"alpha": 0.2}, **{**TINY, "steps": 3}), grid, cv=2)
    assert search.fit(x, y).best_params_["method"] in ("supervised", "mixup")


def test_dataframe_columns_are_recorded_and_checked_at_predict(tmp_path):
    x, y = vectors(60)
    frame = Frame(x, ["a", "b", "c", "d"])
    est = SSLClassifier(method="supervised", **TINY).fit(frame, y)
    assert list(est.feature_names_in_) == ["a", "b", "c", "d"]
    assert (est.predict(frame) == est.predict(x)).all()
    with pytest.raises(InputError, match=r"X's columns are not those fit\(\) saw, in its order: column 0 is 'd', "
                                         r"fit\(\) had 'a' \(select them as X\[est.feature_names_in_\]\)"):
        est.predict(frame.reorder(["d", "c", "b", "a"]))
    assert (est.predict(frame.reorder(["d", "c", "b", "a"]).reorder(list(est.feature_names_in_))) == est.predict(x)).all()
    # saved with the run: load keeps them, and `metassl predict` reads a CSV's columns by name
    run = est.save(tmp_path / "named")
    assert list(SSLClassifier.load(run).feature_names_in_) == ["a", "b", "c", "d"]
    (tmp_path / "t.csv").write_text("d,c,b,a\n" + "".join(",".join(str(v) for v in r[::-1]) + "\n" for r in x))
    from metassl.cli import main
    assert main(["predict", str(run), str(tmp_path / "t.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = [line.split(",")[1] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert predicted == [str(v) for v in est.predict(x)]
    # refit on a plain array: no names to check any more
    est.fit(x, y)
    assert not hasattr(est, "feature_names_in_")
    est.predict(frame.reorder(["d", "c", "b", "a"]))


def test_an_array_dataset_with_integer_labels_gives_integer_classes_and_refit_on_images_drops_n_features():
    x, y = vectors(60)
    est = SSLClassifier(method="supervised", **TINY).fit(x, y)
    assert est.n_features_in_ == 4
    rng = np.random.default_rng(0)
    images = (rng.random((60, 1, 8, 8)) * 255).astype(np.uint8)
    images[:, :, :4] = np.where(np.arange(60) % 2 == 0, 250, 5)[:, None, None, None]
    labels = np.arange(60) % 2
    data = from_arrays("mine", images, labels, classes=["0", "1"], allow_unlabeled=True)
    est = SSLClassifier(method="supervised", model="mlp", **TINY).fit(data)
    assert est.classes_.dtype.kind == "i" and list(est.classes_) == [0, 1]
    assert not hasattr(est, "n_features_in_")
    assert est.score(images, labels) > 0.5


def test_fit_errors_name_what_to_change_in_the_call(tmp_path):
    x, y = vectors(60)
    with pytest.raises(InputError, match="fit: method='mixup_ssl' needs unlabeled data, and every example given "
                                         "is labeled: pass X_unlabeled, or mark examples of X as unlabeled with y = -1"):
        SSLClassifier(method="mixup_ssl", **TINY).fit(x, y)
    with pytest.raises(InputError, match="fit: method='mixup_ssl' needs unlabeled data"):  # an empty one is none
        SSLClassifier(method="mixup_ssl", **TINY).fit(x, y, X_unlabeled=np.zeros((0, 4), np.float32))
    assert SSLClassifier(method="supervised", **TINY).fit(x, y, X_unlabeled=[]).classes_.tolist() == [0, 1, 2]
    small = np.zeros((60, 1, 4, 4), np.uint8)
    with pytest.raises(InputError, match="fit: X holds 4 x 4 images; the models take images of at least 8 x 8"):
        SSLClassifier(method="supervised", model="mlp", **TINY).fit(small, y)
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(ParamError, match="fit: run_dir .*afile exists and is not a directory"):
        SSLClassifier(method="supervised", run_dir=tmp_path / "afile", **TINY).fit(x, y)
    # a folder with a config.yaml of the user's is not a run to replace
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.yaml").write_text("method: mixup\nsteps: 500\n")
    with pytest.raises(ParamError, match="holds a config.yaml that is not a metassl run's"):
        SSLClassifier(method="supervised", run_dir=tmp_path / "project", **TINY).fit(x, y)
    assert (tmp_path / "project" / "config.yaml").read_text() == "method: mixup\nsteps: 500\n"
    assert (tmp_path / "afile").read_text() == "keep"
    # nor is one holding a file of the user's named as a run's, for fit or for save
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"mine")
    stray = "weights holds best.pt but no run's config.yaml, so not a metassl run"
    with pytest.raises(ParamError, match=f"^fit: .*{stray}"):
        SSLClassifier(method="supervised", run_dir=tmp_path / "weights", **TINY).fit(x, y)
    with pytest.raises(ParamError, match=f"^save: .*{stray}"):
        SSLClassifier(method="supervised", **TINY).fit(x, y).save(tmp_path / "weights", overwrite=True)
    assert (tmp_path / "weights" / "best.pt").read_bytes() == b"mine"
    # a setting that needs no data to fail fails when the object is made
    with pytest.raises(ParamError, match=r"select='val' needs val_per_class >= 1 \(or use select=last\)"):
        SSLClassifier(method="supervised", **{**TINY, "val_per_class": 0})
    SSLClassifier(method="supervised", select="last", **{**TINY, "val_per_class": 0})
    # an empty run_dir is not the current directory
    with pytest.raises(ParamError, match="run_dir='' names no directory; give one, or None for a temporary one"):
        SSLClassifier(method="supervised", run_dir="", **TINY)


def test_saving_to_its_own_run_dir_after_another_fit_replaced_it_is_not_a_silent_no_op(tmp_path):
    """A clone fit with the same run_dir (as a grid search's are) writes its run over this one's:
    save(run_dir) then must not return as if the folder still held this classifier."""
    from sklearn.base import clone

    x, y = vectors(60)
    a = SSLClassifier(method="supervised", run_dir=str(tmp_path / "ab"), **TINY).fit(x, y)
    assert a.save(tmp_path / "ab") == tmp_path / "ab"  # still its own run: nothing to write
    clone(a).fit(x, np.array(["ant", "bee", "cat"])[y])  # the same folder, another model
    with pytest.raises(ParamError, match="ab no longer holds this classifier's run .*pass overwrite=True"):
        a.save(tmp_path / "ab")
    assert list(SSLClassifier.load(tmp_path / "ab").classes_) == ["ant", "bee", "cat"]  # left as it was
    a.save(tmp_path / "ab", overwrite=True)
    assert a.save(tmp_path / "ab") == tmp_path / "ab"  # its own run again: nothing to write
    back = SSLClassifier.load(tmp_path / "ab")
    assert list(back.classes_) == list(a.classes_)
    np.testing.assert_array_equal(back.predict_proba(x), a.predict_proba(x))
    # the same holds of a loaded classifier whose folder another save replaced
    loaded = SSLClassifier.load(tmp_path / "ab")
    clone(a).fit(x, np.array(["ant", "bee", "cat"])[y])
    with pytest.raises(ParamError, match="no longer holds this classifier's run"):
        loaded.save(tmp_path / "ab")
