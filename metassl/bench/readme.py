"""The README's suite tables, generated from the committed results.

A block of the README between ``<!-- table: SUITE from FOLDER -->`` and ``<!-- end of table -->``
holds the tables of ``FOLDER/results.json`` (runs of the shipped suite ``SUITE``, FOLDER relative
to the README) as ``metassl bench`` writes them under its command line: a row per setting with
mean ± std, each seed's error, selected step, last step and the span of its last evaluations, then
the paired differences. ``python -m metassl.bench.readme [README]`` rewrites every block;
``--check`` changes nothing and exits 1 naming each block that differs from its results.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from metassl.bench import suites
from metassl.errors import ConfigError, MetasslError

END = "<!-- end of table -->"
# a block's body holds no other opening, so a block without its end never swallows the next one
BLOCK = re.compile(r"^(<!-- table: (\S+) from (\S+) -->\n)((?:(?!^<!-- table: ).)*?)(^" + END + "$)", re.S | re.M)


def tables(suite_name: str, results: Path) -> str:
    """The markdown of the tables of ``results/results.json``, rows of suite ``suite_name``."""
    _, suite = suites.load_suite(suite_name)
    path = results / "results.json"
    try:
        rows = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"readme: {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"readme: {path}: not JSON ({exc})") from None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str) and "test_error" in r
            and isinstance(r.get("overrides"), dict) for r in rows):
        raise ConfigError(f"readme: {path}: not a suite's results.json with runs (a list of runs, each with "
                          f"name, overrides and test_error)")
    runs = suites.expand(suite)
    names = {suites.run_name(run) for run in runs}
    stray = next((r["name"] for r in rows if r["name"] not in names), None)
    if stray is not None:
        raise ConfigError(f"readme: {path}: run {stray} is not a run of suite {suite_name}")
    return "\n".join(suites.table_body(suite, rows, suites.group_keys(suite, runs))) + "\n"


def render(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every table block regenerated (folders relative to ``root``), and the blocks
    that changed, by their opening line."""
    changed: list[str] = []
    opened = [m for m in re.finditer(r"^<!-- table: .*$", text, re.M)]
    closed = {m.start(1) for m in BLOCK.finditer(text)}
    for m in opened:
        if m.start() not in closed:
            line = text.count("\n", 0, m.start()) + 1
            raise ConfigError(f"readme: line {line}: {m.group(0).strip()} has no {END} after it (or is not "
                              f"'<!-- table: SUITE from FOLDER -->')")

    def fill(match: re.Match) -> str:
        body = tables(match.group(2), root / match.group(3))
        if body != match.group(4):
            changed.append(match.group(1).strip())
        return match.group(1) + body + match.group(5)

    return BLOCK.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metassl.bench.readme", description=__doc__.splitlines()[0])
    parser.add_argument("readme", nargs="?", default="README.md", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        new, changed = render(text, args.readme.resolve().parent)
    except OSError as exc:
        print(f"error: readme: {args.readme}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except MetasslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for block in changed:
        print(f"{'differs from its results' if args.check else 'rewritten'}: {block}")
    if args.check:
        return 1 if changed else 0
    if changed:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
