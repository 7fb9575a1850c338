"""Paired comparisons by seed for a suite's table: each row against supervised training and
against its parent method, seed by seed.

A row's parent is, in this order: the one a suite's ``parents`` entry names for it
(``{match: {key: value}, parent: {key: value}, label: TEXT}``, the label optional, e.g. Table 4's
"meta only" against "neither"),
the same method without the meta-gradient plug-in (``METHOD.meta_gradient: true`` rows), or the
method's ``Method.parent`` (``meta_pl_mixup`` -> ``mixup_ssl``, ``metamixup`` -> ``mixup``, ...).
The two rows are paired on the suite's other grid keys (dataset, labels, steps) and on the seed;
each difference is the row's test error minus the reference's on the same seed (negative: the
row is better), summarised by its mean, a sign count and a paired t-test (two-sided).
"""
from __future__ import annotations

import json
import math
import statistics
from typing import Callable, Optional

from metassl.methods import METHODS

Setting = dict


def _is_section(key: str, methods: tuple[str, ...] = ()) -> bool:
    """Whether ``key`` belongs to a method's section: any method's, or one of ``methods``."""
    head = key.split(".")[0]
    return head in methods if methods else head in METHODS.names()


def _same(setting: Setting, other: Setting, keys: list[str], skip) -> bool:
    """Whether two rows agree on every grid key for which ``skip(key)`` is false."""
    return all(json.dumps(setting.get(k)) == json.dumps(other.get(k)) for k in keys if not skip(k))


def _plugged(setting: Setting) -> bool:
    return bool(setting.get(f"{setting.get('method')}.meta_gradient"))


def _matches(setting: Setting, match: dict) -> bool:
    return all(setting.get(k) == v for k, v in match.items())


def references(setting: Setting, keys: list[str], parents: list[dict]) -> list[tuple[str, Callable[[Setting], bool]]]:
    """(label, predicate) of the rows ``setting``'s row is compared with: supervised, then its
    parent. Each agrees with the row on every grid key the comparison does not change: supervised
    on all but the method and the methods' sections; the same method without the plug-in on all
    but ``METHOD.meta_gradient``; a ``parents`` entry on all but the keys it names; a parent method
    on all but the two methods' sections."""
    method = setting.get("method")
    out = []
    if method != "supervised":
        out.append(("supervised", lambda s: s.get("method") == "supervised" and _same(
            setting, s, keys, lambda k: k == "method" or _is_section(k))))
    entry = next((p for p in parents if _matches(setting, p["match"])), None)
    if entry is not None:
        named = set(entry["match"]) | set(entry["parent"])
        label = entry.get("label") or ", ".join(f"{k}={v}" for k, v in entry["parent"].items())
        out.append((label, lambda s: _matches(s, entry["parent"]) and _same(setting, s, keys, lambda k: k in named)))
    elif _plugged(setting):
        flag = f"{method}.meta_gradient"
        out.append((f"{method} without meta_gradient", lambda s: s.get("method") == method and not _plugged(s)
                    and _same(setting, s, keys, lambda k: k in ("method", flag))))
    else:
        parent = getattr(METHODS.get(method), "parent", None) if method in METHODS.names() else None
        if parent:
            out.append((parent, lambda s: s.get("method") == parent and not _plugged(s) and _same(
                setting, s, keys, lambda k: k == "method" or _is_section(k, (method, parent)))))
    return out


def paired_t(diffs: list[float]) -> Optional[tuple[float, float]]:
    """(t, two-sided p) of the mean of ``diffs`` against 0, or None below two values or with no spread.
    Errors are shares of a test set stored in float32, so differences equal up to that rounding
    (1e-4 points) have no spread: no t from rounding noise."""
    n = len(diffs)
    if n < 2:
        return None
    sd = statistics.stdev(diffs)
    if sd < 1e-4:
        return None
    from scipy import stats

    t = statistics.fmean(diffs) / (sd / math.sqrt(n))
    return t, float(2 * stats.t.sf(abs(t), n - 1))


def seed_of(row: dict):
    return row.get("seed", (row.get("config") or {}).get("seed"))


def _by_seed(rows: list[dict]) -> dict:
    """Test error by seed; a seed with two runs in the group (a suite filled in parts with other
    settings) is left out of the pairing rather than one of them chosen."""
    errors: dict = {}
    for r in rows:
        if r.get("test_error") is not None:
            errors.setdefault(seed_of(r), []).append(r["test_error"])
    return {seed: values[0] for seed, values in errors.items() if len(values) == 1}


def comparisons(groups: dict[tuple, list[dict]], keys: list[str], parents: list[dict],
                setting_of: Callable[[dict], Setting]) -> list[dict]:
    """For each group and each of its references present in ``groups``: the per-seed differences."""
    out = []
    reps = {key: setting_of(rows[0]) for key, rows in groups.items()}
    for key, rows in groups.items():
        mine = _by_seed(rows)
        for label, wanted in references(reps[key], keys, parents):
            others = [k for k, s in reps.items() if k != key and wanted(s)]
            if len(others) > 1:
                out.append({"group": key, "against": f"{label}: {len(others)} rows match, not paired",
                            "seeds": [], "diffs": [], "mean": None, "lower": 0, "t": None})
                continue
            if not others:
                continue
            theirs = _by_seed(groups[others[0]])
            seeds = sorted(s for s in mine if s in theirs)
            if not seeds:
                continue
            diffs = [mine[s] - theirs[s] for s in seeds]
            out.append({"group": key, "against": label, "seeds": seeds, "diffs": diffs,
                        "mean": statistics.fmean(diffs), "lower": sum(d < 0 for d in diffs),
                        "t": paired_t(diffs)})
    return out


def table_lines(comps: list[dict], cells_of: Callable[[tuple], list], keys: list[str]) -> list[str]:
    """The markdown of ``comparisons``: one line per (row, reference)."""
    if not comps:
        return []
    head = keys + ["against", "seeds", "difference per seed", "mean", "lower in", "paired t (p)"]
    lines = ["", "Paired by seed: the row's test error minus the reference's on the same seed, in points "
             "(negative: the row is better); paired t-test, two-sided.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in comps:
        t = c["t"]
        if not c["diffs"]:
            cells = cells_of(c["group"]) + [c["against"], "-", "-", "-", "-", "-"]
            lines.append("| " + " | ".join(str(x) for x in cells) + " |")
            continue
        cells = cells_of(c["group"]) + [
            c["against"], ", ".join(str(s) for s in c["seeds"]),
            ", ".join(f"{d:+.2f}" for d in c["diffs"]), f"{c['mean']:+.2f}",
            f"{c['lower']}/{len(c['diffs'])}",
            f"{t[0]:+.2f} ({t[1]:.2g})" if t else "-"]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    return lines
