"""Figures and a self-contained report (HTML and Markdown) of a run or a suite output."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from metassl.errors import CheckpointError


def report_kind(path: Path) -> str:
    """'suite' for a suite output, 'run' for a run directory; anything else is a one-line error."""
    if not path.exists():
        raise CheckpointError(f"report: {path} does not exist")
    if (path / "results.json").is_file():
        return "suite"
    if (path / "config.yaml").is_file():
        from metassl.engine.rundir import foreign_config
        if foreign_config(path):
            raise CheckpointError(f"report: {path} holds a config.yaml that is not a metassl run's; a report "
                                  "writes report.md and report.html there, so give a run directory")
        return "run"
    if not path.is_dir():
        raise CheckpointError(f"report: {path} is a file; give a run directory or a suite's --out folder")
    raise CheckpointError(f"report: {path} is neither a run directory (no config.yaml) nor a suite "
                          f"output (no results.json)")


def write_report(path: Path, *, tsne_points: Optional[int] = None) -> tuple[str, list]:
    """Write the figures, report.html and report.md into ``path``; returns report.html's path and
    the figures skipped (``Skipped``: what, and why; the report says so too)."""
    path = Path(path)
    kind = report_kind(path)
    # torch, matplotlib and scikit-learn take seconds to import: only once DIR is worth a report.
    from metassl.report.build import build_report

    return build_report(path, kind, tsne_points)


__all__ = ["report_kind", "write_report"]
