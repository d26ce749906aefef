"""MkDocs hook: the benchmark plots in ``benchmarks/results/*.png`` become site files under ``benchmarks/results/``,
so the Benchmarks page shows them from where the benches write them (no copies in ``docs/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Add every plot of ``benchmarks/results`` to the site's files."""
    root = RESULTS.parents[1]
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File(str(png.relative_to(root)), src_dir=str(root), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
