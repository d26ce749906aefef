"""What every bench command shares: machine and version facts, percentiles, Markdown tables, JSON files,
the progress bar, and lazy imports of the optional ``bench`` extra (matplotlib, outlines)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from structgen.errors import StructgenError

INSTALL_HINT = "pip install 'structgen[bench]'"
PEER_PACKAGES = ("structgen", "llama-cpp-python", "llguidance", "outlines-core", "outlines", "numba", "numpy",
                 "jsonschema", "openai")


class MissingBenchDependency(StructgenError):
    """An optional package of the ``bench`` extra is not installed."""


def require(module: str) -> ModuleType:
    """Import an optional dependency, or raise with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingBenchDependency(f"{module} is needed for this benchmark: {INSTALL_HINT}") from exc


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def grouped_bars(path: Path, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
                 ylabel: str, title: str, group_width: float) -> None:
    """A PNG of grouped percentage bars: one group per ``groups`` entry, one bar per ``(label, values)`` series
    (``values`` are fractions, one per group)."""
    plt = pyplot()
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, group_width * len(groups)), 4))
    for k, (label, values) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [100 * v for v in values], width, label=label)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sse_chunks(resp: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON chunks of an OpenAI server-sent event stream (an HTTP response read line by line), ``[DONE]`` and
    other lines skipped."""
    for line in resp:
        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
            yield json.loads(line[6:])


def versions(packages: Iterable[str] = PEER_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: CPU model, cores, GPUs, OS, and whether llama.cpp can offload."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "gpus": _gpus(),
        "os": platform.platform(),
    }
    try:
        import llama_cpp

        info["llama_gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError):
        info["llama_gpu_offload"] = None
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for the top of a Markdown report."""
    gpus = ", ".join(info.get("gpus") or []) or "none"
    return f"{info['cpu']}, {info['usable_cores']}/{info['cores']} cores, GPU: {gpus}"


def percentiles(values: Sequence[float] | np.ndarray, points: dict[str, float]) -> dict[str, float | None]:
    """Named percentiles of ``values`` (None for an empty sample)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return dict.fromkeys(points)
    return {name: round(float(np.percentile(arr, q)), 2) for name, q in points.items()}


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers right-aligned."""
    body = [[_cell(v) for v in row] for row in rows]
    align = ["---:" if body and all(_is_number(r[i]) for r in body) else ":---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_number(cell: str) -> bool:
    return cell == "–" or cell.replace(",", "").replace(".", "", 1).lstrip("-").rstrip("%×").isdigit()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a report as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def progress() -> Progress:
    """The progress bar every command shows, on stderr (stdout carries the Markdown table)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)
