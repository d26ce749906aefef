"""The manifest beside a batch's output: what its results depend on, so a resume cannot mix two setups.

``OUT.manifest.json`` records the model (the GGUF file's SHA-256, or the endpoint's URL and model name), the
engine options that change results, and structgen's version. Running the job again with a different one is
refused (``ManifestMismatch``, naming each difference) unless forced, which records the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, ManifestMismatch

__all__ = ["check_manifest", "endpoint_manifest", "file_digest", "local_manifest", "manifest_path"]


def manifest_path(out: Path) -> Path:
    """Where the manifest of output file ``out`` lives."""
    return out.with_name(out.name + ".manifest.json")


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def local_manifest(path: Path, engine: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a job on the local GGUF file ``path`` (also run on Ray: the same model and options give the
    same kind of results) with ``engine``: the ``LlamaCpp`` options that change results."""
    return {"structgen_version": _version(), "model": {"file": path.name, "digest": file_digest(path)},
            "engine": dict(sorted(engine.items()))}


def endpoint_manifest(url: str, model: str) -> dict[str, Any]:
    """The manifest of a job on an OpenAI-compatible endpoint."""
    return {"structgen_version": _version(), "model": {"endpoint": url, "name": model}, "engine": {}}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("structgen")
    except PackageNotFoundError:   # pragma: no cover - a source tree that was not installed
        return "unknown"


def check_manifest(out: Path, manifest: dict[str, Any], *, has_results: bool, force: bool = False) -> None:
    """Compare ``manifest`` with the one recorded beside ``out`` and record it.

    Refused with ``ManifestMismatch`` when results exist and the recorded manifest differs (or is missing), unless
    ``force``."""
    path = manifest_path(out)
    recorded = _read(path)
    if has_results and not force:
        if recorded is None:
            raise ManifestMismatch(f"{out} already holds results but no manifest ({path.name}) says how they were "
                                   "made; use --force to add to it anyway, or another output file")
        differences = {k: (recorded.get(k), manifest.get(k)) for k in sorted(recorded.keys() | manifest.keys())
                       if recorded.get(k) != manifest.get(k)}
        if differences:
            said = "; ".join(f"{k}: recorded {a!r}, now {b!r}" for k, (a, b) in differences.items())
            raise ManifestMismatch(f"{out} was made with another setup ({said}); resuming would mix results of the "
                                   "two. Use --force to resume anyway, or another output file",
                                   differences=differences)
    if recorded != manifest:
        _write(path, manifest)


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read the batch manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"the batch manifest {path} is not a JSON object")
    return data


def _write(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
