"""Suite tables pair each row with supervised training and with its parent, seed by seed."""
import json
import math

import pytest
import yaml
from scipy import stats

from metassl.bench import paired, suites
from metassl.errors import ConfigError

KEYS = ["labels_per_class", "method", "fixmatch.meta_gradient", "meta_pl.meta_lr"]


def row(method, seed, error, labels=100, last=None, **section):
    config = {"method": method, "seed": seed, "labels_per_class": labels, **section}
    return {"name": f"{method}-{seed}-{labels}-{section}", "overrides": {"method": method, "seed": seed},
            "config": config, "seed": seed, "test_error": error, "val_error": error,
            "last_test_error": error + 1 if last is None else last, "wall_seconds": 60.0, "cpu_seconds": 60.0}


ROWS = [
    *(row("supervised", s, e) for s, e in enumerate([14.0, 13.0, 15.0])),
    *(row("supervised", s, e, labels=50) for s, e in enumerate([20.0, 21.0, 19.0])),
    *(row("mixup_ssl", s, e) for s, e in enumerate([13.5, 13.5, 14.0])),
    *(row("meta_pl_mixup", s, e) for s, e in enumerate([13.0, 12.0, 14.5])),
    *(row("meta_pl_mixup", s, e, labels=50) for s, e in enumerate([18.0, 20.0])),
    *(row("fixmatch", s, e, **{"fixmatch.meta_gradient": False}) for s, e in enumerate([12.0, 12.5, 13.0])),
    *(row("fixmatch", s, e, **{"fixmatch.meta_gradient": True}) for s, e in enumerate([11.0, 12.8, 12.0])),
    *(row("meta_pl", s, e, **{"meta_pl.meta_lr": 0.0}) for s, e in enumerate([15.0, 14.0, 16.0])),
    *(row("meta_pl", s, e, **{"meta_pl.meta_lr": None}) for s, e in enumerate([14.0, 14.5, 15.0])),
]
PARENTS = [{"match": {"method": "meta_pl", "meta_pl.meta_lr": None},
            "parent": {"method": "meta_pl", "meta_pl.meta_lr": 0.0}}]


def grouped(rows):
    groups = {}
    for r in rows:
        groups.setdefault(tuple(repr(r["config"].get(k)) for k in KEYS), []).append(r)
    return groups


def by_pair(comps, groups):
    out = {}
    for c in comps:
        rep = groups[c["group"]][0]["config"]
        out[(rep["method"], rep["labels_per_class"], bool(rep.get("fixmatch.meta_gradient")),
             rep.get("meta_pl.meta_lr"), c["against"])] = c
    return out


def test_each_row_is_paired_with_supervised_and_its_parent_on_the_same_seeds_and_labels():
    groups = grouped(ROWS)
    comps = by_pair(paired.comparisons(groups, KEYS, PARENTS, lambda r: r["config"]), groups)
    c = comps[("meta_pl_mixup", 100, False, None, "mixup_ssl")]  # Method.parent
    assert c["seeds"] == [0, 1, 2]
    assert c["diffs"] == pytest.approx([-0.5, -1.5, 0.5])
    assert c["lower"] == 2 and c["mean"] == pytest.approx(-0.5)
    t, p = c["t"]
    ref = stats.ttest_rel([13.0, 12.0, 14.5], [13.5, 13.5, 14.0])
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    # paired within the same label count, on the seeds both have
    c50 = comps[("meta_pl_mixup", 50, False, None, "supervised")]
    assert c50["seeds"] == [0, 1] and c50["diffs"] == pytest.approx([-2.0, -1.0])
    assert ("meta_pl_mixup", 50, False, None, "mixup_ssl") not in comps  # no mixup_ssl at 50 labels
    # the plug-in row against the same method without it
    plug = comps[("fixmatch", 100, True, None, "fixmatch without meta_gradient")]
    assert plug["diffs"] == pytest.approx([-1.0, 0.3, -1.0])
    # a suite's own parents entry (Table 4's meta only against neither)
    meta = comps[("meta_pl", 100, False, None, "method=meta_pl, meta_pl.meta_lr=0.0")]
    assert meta["diffs"] == pytest.approx([-1.0, 0.5, -1.0])
    assert not any(k[0] == "supervised" for k in comps)
    assert not any(k[0] == "mixup_ssl" and k[-1] != "supervised" for k in comps)


def test_paired_t_needs_two_values_and_a_spread():
    assert paired.paired_t([-1.0]) is None
    assert paired.paired_t([-1.0, -1.0]) is None
    assert paired.paired_t([0.27855154871940613, 0.2785530090332031]) is None  # float32 rounding, not spread
    t, p = paired.paired_t([-1.0, -2.0, -3.0])
    assert t == pytest.approx(-2.0 / (1.0 / math.sqrt(3)))
    assert 0 < p < 0.1


def test_suite_table_carries_per_seed_last_step_and_paired_lines():
    suite = {"description": "d", "seeds": [0, 1, 2], "parents": PARENTS}
    table = suites.make_table("s", suite, ROWS, KEYS)
    assert "| 100 | meta_pl_mixup | - | - | 13.17 ± 1.26 | 13.00, 12.00, 14.50 | -, -, - | 14.17 ± 1.26 |" in table
    assert "| 100 | meta_pl_mixup | - | - | mixup_ssl | 0, 1, 2 | -0.50, -1.50, +0.50 | -0.50 | 2/3 |" in table
    assert "Paired by seed" in table


def test_a_malformed_parents_entry_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"description": "d", "seeds": [0], "parents": [{"match": {"method": "x"}}]}))
    with pytest.raises(ConfigError, match=r"parents\[0\] must be"):
        suites.load_suite(str(path))


def test_shipped_ablation_suites_pair_meta_only_with_neither():
    for name in ("fashion-ablation", "fashion-ablation-long"):
        _, suite = suites.load_suite(name)
        assert suite["parents"] == PARENTS


def test_a_parents_label_names_the_reference_and_the_shipped_remedy_row_pairs_with_mixmatch():
    labelled = [{**PARENTS[0], "label": "meta_pl without its meta step"}]
    groups = grouped(ROWS)
    comps = by_pair(paired.comparisons(groups, KEYS, labelled, lambda r: r["config"]), groups)
    meta = comps[("meta_pl", 100, False, None, "meta_pl without its meta step")]
    assert meta["diffs"] == pytest.approx([-1.0, 0.5, -1.0])
    # MixMatch's seed 0 ran before distribution_alignment existed (its config lacks the key), seed 1
    # after (it records false): one row, and both seeds pair with the remedy row
    _, suite = suites.load_suite("fashion-ssl-long")
    keys = suite["group_by"]

    def run(seed, error, **section):
        config = {"method": "mixmatch", "seed": seed, **section}
        return {"name": f"{seed}{section}", "overrides": {"method": "mixmatch", "seed": seed}, "config": config,
                "seed": seed, "test_error": error, "val_error": error, "last_test_error": error,
                "wall_seconds": 60.0, "cpu_seconds": 60.0}

    aligned = {"mixmatch.distribution_alignment": True}
    rows = [run(0, 15.0), run(1, 16.0, **{"mixmatch.distribution_alignment": False}),
            run(0, 13.5, **aligned), run(1, 13.0, **aligned)]
    lines = suites.table_body(suite, rows, keys)
    assert sum(line.startswith("| mixmatch |") and "15.50 ±" in line for line in lines) == 1
    assert ("| mixmatch | - | - | True | mixmatch without distribution_alignment | 0, 1 | -1.50, -3.00 | -2.25 | 2/2 |"
            in "\n".join(lines))


def test_a_parents_label_that_is_not_text_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"description": "d", "seeds": [0], "runs": [{"method": "supervised"}],
                                    "parents": [{"match": {"method": "supervised"},
                                                 "parent": {"method": "supervised"}, "label": 3}]}))
    with pytest.raises(ConfigError, match=r"parents\[0\] must be .* optionally label: TEXT"):
        suites.load_suite(str(path))


def test_per_seed_cell_names_the_seeds_when_some_are_missing():
    rows = [row("mixup_ssl", 1, 12.5), row("mixup_ssl", 2, 13.25)]
    table = suites.make_table("s", {"description": "d"}, rows, ["method"])
    assert "| mixup_ssl | 12.88 ± 0.53 | seed 1: 12.50, seed 2: 13.25 |" in table


def test_a_row_is_paired_only_with_the_reference_of_its_own_other_settings():
    # fixmatch at two thresholds, each with and without the plug-in: the plugged 0.95 row pairs
    # with the plain 0.95 row, not with whichever plain row comes first.
    keys = ["method", "fixmatch.threshold", "fixmatch.meta_gradient"]
    rows = [row("fixmatch", s, e, **{"fixmatch.threshold": t, "fixmatch.meta_gradient": g})
            for t, g, errs in [(0.8, False, [20.0, 21.0]), (0.95, False, [12.0, 12.5]),
                               (0.8, True, [19.0, 20.0]), (0.95, True, [13.0, 12.0])]
            for s, e in enumerate(errs)]
    groups = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r["config"].get(k)) for k in keys), []).append(r)
    comps = paired.comparisons(groups, keys, [], lambda r: r["config"])
    plug = {groups[c["group"]][0]["config"]["fixmatch.threshold"]: c["diffs"] for c in comps
            if c["against"] == "fixmatch without meta_gradient"}
    assert plug[0.95] == pytest.approx([1.0, -0.5]) and plug[0.8] == pytest.approx([-1.0, -1.0])


def test_several_matching_references_are_reported_not_guessed():
    # Without the threshold among the grid keys, two plain fixmatch rows fit the plugged one.
    keys = ["method", "fixmatch.meta_gradient"]
    rows = [row("fixmatch", 0, 12.0, **{"fixmatch.meta_gradient": True}),
            row("fixmatch", 0, 20.0, **{"fixmatch.meta_gradient": False}),
            row("fixmatch", 0, 13.0, **{"fixmatch.meta_gradient": False, "x": 1})]
    groups = {("a",): rows[:1], ("b",): rows[1:2], ("c",): rows[2:]}
    comps = paired.comparisons(groups, keys, [], lambda r: r["config"])
    (c,) = [c for c in comps if c["group"] == ("a",)]
    assert "2 rows match, not paired" in c["against"] and c["diffs"] == []
    assert "not paired | - |" in "\n".join(paired.table_lines(comps, lambda k: list(k), ["g"]))


def test_a_seed_run_twice_in_a_group_is_left_out_of_the_pairing():
    groups = {("s",): [row("supervised", 0, 10.0), row("supervised", 1, 11.0)],
              ("m",): [row("mixup_ssl", 0, 9.0), row("mixup_ssl", 0, 9.5), row("mixup_ssl", 1, 10.0)]}
    comps = paired.comparisons(groups, ["method"], [], lambda r: r["config"])
    (c,) = comps
    assert c["seeds"] == [1] and c["diffs"] == pytest.approx([-1.0])
