"""The README's suite tables are generated from the committed results, and so are the columns
that judge convergence: the selected step and the span of each seed's last evaluations."""
import json
from pathlib import Path

import pytest

from metassl.bench import readme, suites

ROOT = Path(__file__).resolve().parents[2]


def _row(method, seed, test, recent=None, step=1000):
    row = {"name": f"method={method},seed={seed}", "overrides": {"method": method, "seed": seed},
           "config": {"method": method, "seed": seed}, "test_error": test, "last_test_error": test + 0.1,
           "val_error": 9.0, "selected_step": step, "seed": seed, "wall_seconds": 60.0, "cpu_seconds": 30.0}
    if recent is not None:
        row["recent_test_errors"] = recent
    return row


def test_recent_test_errors_are_the_last_evaluations_with_a_resumed_step_logged_again(tmp_path):
    records = [{"step": 500, "test_error": 20.0}, {"step": 600, "train_loss": 1.0},
               {"step": 1000, "test_error": 15.0}, {"step": 1500, "test_error": 14.0},
               {"step": 2000, "test_error": 13.9},
               # resumed from the checkpoint at 1500: 2000 is evaluated again, then 2500
               {"step": 2000, "test_error": 13.5}, {"step": 2500, "test_error": 13.2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert suites.recent_test_errors(tmp_path) == [14.0, 13.5, 13.2]
    assert suites.recent_test_errors(tmp_path / "missing") == []


def test_the_table_gives_each_seeds_selected_step_and_the_span_of_its_last_evaluations():
    _, suite = suites.load_suite("fashion-ssl-long")
    rows = [_row("supervised", 0, 14.0, [14.2, 14.1, 14.0], 8000), _row("supervised", 1, 13.0, [13.5, 13.0, 13.1], 9500),
            _row("supervised", 2, 12.0, None, 7000)]
    lines = suites.table_body(suite, rows, ["method"])
    head = next(l for l in lines if l.startswith("| method"))
    row = next(l for l in lines if l.startswith("| supervised")).split(" | ")
    column = dict(zip(head.split(" | "), row))
    assert column["per seed"] == "14.00, 13.00, 12.00"
    assert column["selected step"] == "8000, 9500, 7000"
    # a span of three evaluations; a row of an older results file has none
    assert column["last 3 evaluations' span"] == "0.20, 0.50, -"


def test_the_readme_tables_match_the_committed_results():
    text = (ROOT / "README.md").read_text()
    assert readme.BLOCK.search(text), "the README has no generated table"
    new, changed = readme.render(text, ROOT)
    assert changed == [] and new == text, f"run python -m metassl.bench.readme: {changed}"


def _folder(tmp_path, rows):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "results.json").write_text(json.dumps(rows))
    page = tmp_path / "README.md"
    page.write_text("intro\n\n<!-- table: fashion-ssl-long from res -->\nold table\n<!-- end of table -->\n\nafter\n")
    return page


def test_a_stale_block_fails_the_check_and_is_rewritten_from_its_results(tmp_path, capsys):
    page = _folder(tmp_path, [_row("supervised", 0, 14.0, [14.2, 14.1, 14.0]), _row("fixmatch", 0, 11.0)])
    assert readme.main([str(page), "--check"]) == 1
    assert "old table" in page.read_text()
    assert "differs from its results: <!-- table: fashion-ssl-long from res -->" in capsys.readouterr().out
    assert readme.main([str(page)]) == 0
    text = page.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("<!-- end of table -->\n\nafter\n")
    assert "| supervised | - | - | - | 14.00 | 14.00 |" in text
    assert "| fixmatch | False | - | - | 11.00 | 11.00 |" in text and "| -3.00 |" in text
    assert readme.main([str(page), "--check"]) == 0


@pytest.mark.parametrize("content, needle", [
    (None, "res/results.json: No such file"),
    ("{not json", "not JSON"),
    ("[]", "not a suite's results.json with runs"),
    ('[{"test_error": 1}]', "not a suite's results.json with runs (a list of runs, each with name, overrides"),
    # another suite's rows would be grouped by this suite's keys into wrong rows
    (json.dumps([_row("supervised", 0, 14.0), _row("mixup", 0, 9.0)]),
     "run method=mixup,seed=0 is not a run of suite fashion-ssl-long"),
])
def test_a_missing_or_bad_results_file_is_one_line(tmp_path, capsys, content, needle):
    page = _folder(tmp_path, [])
    path = tmp_path / "res" / "results.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    before = page.read_text()
    assert readme.main([str(page)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and page.read_text() == before


def test_a_table_block_without_its_end_is_an_error_not_skipped(tmp_path, capsys):
    page = _folder(tmp_path, [_row("supervised", 0, 14.0)])
    text = page.read_text().replace("<!-- end of table -->\n", "")
    page.write_text(text + "<!-- table: fashion-ssl-long from res -->\nold\n<!-- end of table -->\n")
    assert readme.main([str(page), "--check"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: readme: line 3: <!-- table: fashion-ssl-long from res --> has no <!-- end of table --> "
                   "after it (or is not '<!-- table: SUITE from FOLDER -->')\n")
    assert page.read_text().count("old") == 2
