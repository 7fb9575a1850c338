"""The report's figures, each drawn from plain arrays into a PNG.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, so no pyplot
state or interactive backend is involved (reports are written from servers and tests).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from metassl.report.records import Series
from metassl.report.tsne import SUBSETS, Embedding

DPI = 110
SPLIT_STYLE = {"train": ":", "val": "--", "test": "-"}
SPLIT_NAME = {"train": "train (labeled)", "val": "validation", "test": "test"}
# Figure 3 of the meta-gradient SSL paper: labeled red, unlabeled blue, test gray.
SUBSET_COLOR = {"labeled": "tab:red", "unlabeled": "tab:blue", "test": "tab:gray"}
# Examples whose class is unknown (label -1: the unlabeled examples of the user's own data).
NO_CLASS_COLOR = "lightgray"


def _figure(width: float, height: float, ncols: int = 1, layout: Optional[str] = None):
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    # A tight bounding box keeps legends placed beside the axes inside the image.
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    return path


def _colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(k if n <= 20 else k / max(n - 1, 1)) for k in range(n)]


def _marker(s: Series) -> Optional[str]:
    # A curve of a handful of evaluations is easier to read with its points marked.
    return "o" if len(s.steps) <= 30 else None


def error_curves(curves: dict[str, dict[str, Series]], path: Path, title: str,
                 selected_step: Optional[int] = None) -> Path:
    """Figure 1 of the meta-gradient SSL paper: train / validation / test error over steps;
    one colour per setting, one line style per split."""
    fig, (ax,) = _figure(8, 4.8)
    colors = _colors(len(curves))
    for color, splits in zip(colors, curves.values()):
        for split, s in splits.items():
            if s.steps:
                ax.plot(s.steps, s.values, SPLIT_STYLE[split], color=color, marker=_marker(s),
                        markersize=3, label=SPLIT_NAME[split])
    if selected_step is not None:
        ax.axvline(selected_step, color="black", linewidth=0.8, alpha=0.5,
                   label=f"selected on validation (step {selected_step})")
    ax.set(xlabel="training step", ylabel="top-1 error (%)", title=title)
    ax.grid(alpha=0.3)
    if len(curves) == 1:
        ax.legend(fontsize=8)
    else:
        # Settings by colour and splits by line style: one entry each instead of their product.
        handles = [Line2D([], [], color=c, label=label) for c, label in zip(colors, curves)]
        handles += [Line2D([], [], color="black", linestyle=SPLIT_STYLE[k], label=SPLIT_NAME[k])
                    for k in SPLIT_STYLE]
        ax.legend(handles=handles, fontsize=8, title="colour: setting, line: split", title_fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def loss_curves(curves: dict[str, Series], path: Path, title: str) -> Path:
    """Figure 2 of MetaMixUp: the training loss (means over each evaluation interval)."""
    fig, (ax,) = _figure(8, 4.8)
    for color, (label, s) in zip(_colors(len(curves)), curves.items()):
        ax.plot(s.steps, s.values, color=color, marker=_marker(s), markersize=3, label=label)
    ax.set(xlabel="training step", ylabel="training loss (mean over interval)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def label_key(labels: Optional[int]) -> tuple:
    """Sort order of label counts: numbers ascending, then 'all labels' (None)."""
    return (labels is None, labels or 0)


def error_vs_labels(points: dict[str, dict[Optional[int], list[float]]], path: Path) -> Path:
    """Figure 2 of the meta-gradient SSL paper: test error against the number of labels,
    mean ± std over seeds, one line per method."""
    xs = sorted({n for per in points.values() for n in per}, key=label_key)
    pos = {n: k for k, n in enumerate(xs)}
    fig, (ax,) = _figure(8, 4.8)
    width = 0.25 / max(len(points), 1)
    for k, (color, (label, per)) in enumerate(zip(_colors(len(points)), points.items())):
        ns = sorted(per, key=label_key)
        mean = [float(np.mean(per[n])) for n in ns]
        std = [float(np.std(per[n], ddof=1)) if len(per[n]) > 1 else 0.0 for n in ns]
        # Methods are nudged apart so that their error bars do not hide each other.
        x = [pos[n] + (k - (len(points) - 1) / 2) * width for n in ns]
        ax.errorbar(x, mean, yerr=std, color=color, marker="o", capsize=4, label=label)
    ax.set_xticks(range(len(xs)), ["all" if n is None else str(n) for n in xs])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set(xlabel="labeled examples per class", ylabel="test error (%), mean ± std over seeds",
           title="Test error vs number of labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def tsne(emb: Embedding, num_classes: int, path: Path, title: str) -> Path:
    """Figure 3 of the meta-gradient SSL paper: one panel per subset coloured by class, and
    all subsets together coloured by subset."""
    present = [k for k, name in enumerate(SUBSETS) if emb.counts.get(name, 0) > 0]
    fig, axes = _figure(4.2 * (len(present) + 1), 4.6, len(present) + 1)
    colors = np.array(_colors(num_classes))
    # Row num_classes of the palette is for label -1, an example of unknown class.
    palette = np.vstack([colors, matplotlib.colors.to_rgba(NO_CLASS_COLOR)])
    point_color = palette[np.where(emb.label < 0, num_classes, emb.label)]
    for ax, k in zip(axes, present):
        name = SUBSETS[k]
        m = emb.subset == k
        ax.scatter(emb.xy[m, 0], emb.xy[m, 1], c=point_color[m], s=6, linewidths=0)
        ax.set_title(f"{name} ({emb.counts[name]} of {emb.available[name]}), by class", fontsize=10)
    ax = axes[-1]
    for k in sorted(present, key=lambda k: -k):  # test underneath, labeled on top
        m = emb.subset == k
        ax.scatter(emb.xy[m, 0], emb.xy[m, 1], c=SUBSET_COLOR[SUBSETS[k]], s=6, linewidths=0,
                   alpha=0.7, label=SUBSETS[k])
    ax.set_title("all, by subset", fontsize=10)
    ax.legend(fontsize=8, markerscale=2)
    for ax in axes:
        ax.set(xlabel="t-SNE dimension 1", ylabel="t-SNE dimension 2")
        ax.tick_params(labelsize=7)
    if num_classes <= 20:
        handles = [Line2D([], [], linestyle="", marker="o", color=colors[c], label=str(c))
                   for c in range(num_classes)]
        if (emb.label < 0).any():
            handles.append(Line2D([], [], linestyle="", marker="o", color=NO_CLASS_COLOR, label="unlabeled"))
        fig.legend(handles=handles, title="class", loc="center right", fontsize=8)
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1 - 0.5 / fig.get_figwidth(), 1))
    else:
        fig.suptitle(title)
        fig.tight_layout()
    return _save(fig, path)


def beta_pdf(x: np.ndarray, alpha: float) -> np.ndarray:
    """Density of Beta(α, α) on (0, 1) (scipy.stats would add seconds of import time)."""
    log_norm = 2 * math.lgamma(alpha) - math.lgamma(2 * alpha)
    return np.exp((alpha - 1) * (np.log(x) + np.log1p(-x)) - log_norm)


def lambda_histogram(edges: np.ndarray, counts: np.ndarray, alpha: float, alpha_logged: bool,
                     path: Path) -> Path:
    """Figure 6 of MetaMixUp: how often each learned λ occurred, against the Beta(α, α) density
    that mixup draws λ from."""
    fig, (ax,) = _figure(7, 4.6)
    widths = np.diff(edges)
    density = counts / max(counts.sum(), 1) / widths
    ax.bar(edges[:-1], density, width=widths, align="edge", color="tab:blue", alpha=0.7,
           edgecolor="white", label=f"MetaMixUp: learned λ ({int(counts.sum())} values)")
    grid = np.linspace(0.001, 0.999, 500)
    pdf = beta_pdf(grid, alpha)
    source = "" if alpha_logged else ", default: the run logs none"
    ax.plot(grid, pdf, color="tab:red", label=f"mixup: Beta({alpha:g}, {alpha:g}) density{source}")
    # Beta densities with α < 1 diverge at 0 and 1; the axis follows the histogram instead.
    inner = pdf[(grid > 0.02) & (grid < 0.98)]
    ax.set_ylim(0, 1.15 * max(float(density.max(initial=0)), float(inner.max(initial=0)), 1e-3))
    ax.set_xlim(edges[0], edges[-1])
    ax.set(xlabel="λ (weight of $x_i$ in λ·$x_i$ + (1-λ)·$x_j$)", ylabel="density",
           title="Learned λ against the mixup prior")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def pair_heatmaps(snaps: Sequence[tuple[int, np.ndarray]], path: Path) -> Path:
    """Figure 7 of MetaMixUp: mean learned λ per (class of x_i, class of x_j) at several steps."""
    # Constrained layout keeps the shared colorbar clear of the panels and their labels.
    fig, axes = _figure(3.9 * len(snaps) + 0.8, 4.2, len(snaps), layout="constrained")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")
    image = None
    for ax, (step, m) in zip(axes, snaps):
        image = ax.imshow(np.ma.masked_invalid(m), vmin=0, vmax=1, cmap=cmap, origin="upper")
        c = m.shape[0]
        if c <= 20:
            ax.set_xticks(range(c))
            ax.set_yticks(range(c))
        ax.tick_params(labelsize=7)
        ax.set(xlabel="class of $x_j$", ylabel="class of $x_i$", title=f"step {step}")
    fig.suptitle("Mean learned λ per class pair (gray: pair not drawn)")
    fig.colorbar(image, ax=list(axes), label="mean learned λ", shrink=0.8)
    return _save(fig, path)


def mixing_distances(mixup: np.ndarray, metamixup: np.ndarray, alpha: float, path: Path) -> Path:
    """Figure 5 of MetaMixUp: distance in feature space from each mixed sample to the nearest
    real labeled sample of another class; larger means less manifold intrusion."""
    fig, (left, right) = _figure(11, 4.6, 2)
    names = (f"mixup (λ ~ Beta({alpha:g}, {alpha:g}))", "MetaMixUp (learned λ)")
    colors = ("tab:red", "tab:blue")
    both = np.concatenate([mixup, metamixup])
    bins = np.linspace(both.min(), both.max(), 31) if both.size else 10
    for d, name, color in zip((mixup, metamixup), names, colors):
        left.hist(d, bins=bins, histtype="stepfilled", alpha=0.45, color=color, label=name)
    left.set(xlabel="distance to nearest real sample of another class (feature space, L2)",
             ylabel="mixed samples", title="Distribution over mixed samples")
    left.legend(fontsize=8)
    x = np.arange(2)
    for k, (d, name, color) in enumerate(zip((mixup, metamixup), names, colors)):
        values = [float(d.mean()), float(d.min())] if d.size else [0.0, 0.0]
        bars = right.bar(x + (k - 0.5) * 0.38, values, width=0.38, color=color, label=name)
        right.bar_label(bars, fmt="%.2f", fontsize=8)
    right.set_xticks(x, ["average", "minimum"])
    right.set(xlabel="statistic over mixed samples", ylabel="distance (feature space, L2)",
              title="Average and minimum distance")
    right.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
