"""structgen: structured output from language models that is valid every time.

Local models decode under a grammar mask (llama.cpp + llguidance); hosted OpenAI-compatible endpoints go
through a fallback chain. Either way ``generate`` returns a validated value or raises a typed error.
"""

# llama_cpp first: on some CUDA images numpy loaded before llama.cpp crashes its tokenizer init.
import llama_cpp  # noqa: F401  # isort: skip

from .errors import (
    BackendError,
    GenerationError,
    GrammarError,
    InvalidArgument,
    ModelNotFound,
    ParseError,
    SchemaError,
    StructgenError,
    TruncatedOutput,
    ValidationFailed,
)
from .generate import Model, default_model, generate
from .local import LlamaCpp
from .models import default_model_path
from .result import Attempt, Result, Timings
from .sampler import SamplingParams
from .schema import Choice, Grammar, JsonOptions, Regex, bundled_grammars, compile_schema

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "BackendError",
    "Choice",
    "GenerationError",
    "Grammar",
    "GrammarError",
    "InvalidArgument",
    "JsonOptions",
    "LlamaCpp",
    "Model",
    "ModelNotFound",
    "ParseError",
    "Regex",
    "Result",
    "SamplingParams",
    "SchemaError",
    "StructgenError",
    "Timings",
    "TruncatedOutput",
    "ValidationFailed",
    "__version__",
    "bundled_grammars",
    "compile_schema",
    "default_model",
    "default_model_path",
    "generate",
]
