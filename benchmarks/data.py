"""The MaskBench data the benches read, and what "the dev split" means here.

The files in ``../shared/jsonschemabench/maskbench`` (``{"description", "meta", "schema", "tests"}``) carry
no split marker, so the *dev split* is defined as every ``*.json`` file of the directory, in file-name
order. ``--limit N`` takes a fixed sample of it: the first N files after a shuffle seeded with ``SEED``, so
a small run spans every source (BFCL, GitHub, Glaive, ...) and is the same on every machine.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structgen.errors import InvalidArgument

DEFAULT_DATA = Path(os.environ.get(
    "STRUCTGEN_MASKBENCH", Path(__file__).resolve().parents[1].parent / "shared" / "jsonschemabench" / "maskbench"))
SEED = 20250111  # fixed: the sample must not change between runs


@dataclass(frozen=True, slots=True)
class Case:
    """One MaskBench file: a schema and its labelled instances."""

    name: str
    schema: Any
    tests: tuple[tuple[Any, bool], ...]   # (instance, valid?)


def dev_split(data_dir: Path = DEFAULT_DATA) -> list[Path]:
    """Every MaskBench file of ``data_dir``, sorted by name."""
    if not data_dir.is_dir():
        raise InvalidArgument(f"MaskBench data not found at {data_dir} (pass --data DIR)")
    files = sorted(data_dir.glob("*.json"))
    if not files:
        raise InvalidArgument(f"no *.json MaskBench files in {data_dir}")
    return files


def shuffled(files: list[Path], seed: int = SEED) -> list[Path]:
    """All of ``files`` in a fixed pseudo-random order."""
    out = list(files)
    random.Random(seed).shuffle(out)
    return out


def sample(files: list[Path], limit: int | None, seed: int = SEED) -> list[Path]:
    """``limit`` files drawn by a seeded shuffle (all of them, in order, when ``limit`` is None)."""
    if limit is None or limit >= len(files):
        return list(files)
    if limit <= 0:
        raise InvalidArgument(f"--limit must be positive, got {limit}")
    return shuffled(files, seed)[:limit]


def load(path: Path) -> Case:
    """Read one MaskBench file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    tests = tuple((t["data"], bool(t["valid"])) for t in data.get("tests", ()))
    return Case(name=path.name, schema=data["schema"], tests=tests)


def cases(files: list[Path]) -> Iterator[Case]:
    """Read files lazily, in order."""
    for path in files:
        yield load(path)


def serialise(instance: Any) -> str:
    """An instance as structgen's default ``JsonOptions(whitespace="compact")`` grammar emits it."""
    return json.dumps(instance, separators=(",", ":"), ensure_ascii=False)
