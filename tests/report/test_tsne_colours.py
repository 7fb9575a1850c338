"""The t-SNE figure's colours: examples of unknown class (label -1) are their own grey group."""
import matplotlib
import numpy as np

from metassl.report import figures
from metassl.report.tsne import SUBSETS, Embedding


def drawn(monkeypatch, emb: Embedding, num_classes: int, tmp_path):
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: saved.append(fig) or path)
    figures.tsne(emb, num_classes, tmp_path / "t.png", "t")
    return saved[0]


def test_unlabeled_examples_are_grey_and_named_in_the_legend_not_the_last_class(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    label = np.array([0, 1, 9, 9, -1, -1, -1, 3])
    subset = np.array([0, 0, 0, 2, 1, 1, 1, 2])
    emb = Embedding(rng.normal(size=(8, 2)), label, subset,
                    counts={"labeled": 3, "unlabeled": 3, "test": 2},
                    available={"labeled": 3, "unlabeled": 3, "test": 2})
    fig = drawn(monkeypatch, emb, 10, tmp_path)
    panels = {ax.get_title().split(" (")[0]: ax for ax in fig.axes if "by class" in ax.get_title()}
    assert set(panels) == set(SUBSETS)
    grey = matplotlib.colors.to_rgba(figures.NO_CLASS_COLOR)
    class9 = figures._colors(10)[9]
    unlabeled = panels["unlabeled"].collections[0].get_facecolors()
    assert [tuple(c) for c in unlabeled] == [grey] * 3
    labeled = [tuple(c) for c in panels["labeled"].collections[0].get_facecolors()]
    assert labeled[2] == tuple(class9) and grey not in labeled
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [str(c) for c in range(10)] + ["unlabeled"]


def test_without_unknown_labels_the_legend_lists_only_the_classes(monkeypatch, tmp_path):
    emb = Embedding(np.zeros((4, 2)) + np.arange(4)[:, None], np.array([0, 1, 2, 0]), np.array([0, 1, 1, 2]),
                    counts={"labeled": 1, "unlabeled": 2, "test": 1}, available={"labeled": 1, "unlabeled": 2, "test": 1})
    fig = drawn(monkeypatch, emb, 3, tmp_path)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2"]
