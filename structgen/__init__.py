"""structgen: structured output from language models that is valid every time.

Local models decode under a grammar mask (llama.cpp + llguidance); hosted OpenAI-compatible endpoints go
through a fallback chain. Either way ``generate`` returns a validated value or raises a typed error.
"""

# llama_cpp first: on some CUDA images numpy loaded before llama.cpp crashes its tokenizer init.
import llama_cpp  # noqa: F401  # isort: skip

from .agenerate import agenerate
from .batch import generate_batch
from .errors import (
    BackendError,
    DatabaseError,
    GenerationError,
    GrammarError,
    InvalidArgument,
    ModelNotFound,
    ParseError,
    SchemaError,
    StructgenError,
    TruncatedOutput,
    UnsafeSQL,
    ValidationFailed,
)
from .faultproxy import Fault, FaultProxy
from .generate import Model, default_model, generate
from .hosted import OpenAICompatible
from .local import LlamaCpp
from .models import default_model_path, resolve_model_path
from .probs import OptionProbs, probs
from .result import Attempt, Result, Timings
from .sampler import SamplingParams
from .schema import Choice, Grammar, JsonOptions, Regex, bundled_grammars, compile_schema

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "BackendError",
    "Choice",
    "DatabaseError",
    "Fault",
    "FaultProxy",
    "GenerationError",
    "Grammar",
    "GrammarError",
    "InvalidArgument",
    "JsonOptions",
    "LlamaCpp",
    "Model",
    "ModelNotFound",
    "OpenAICompatible",
    "OptionProbs",
    "ParseError",
    "Regex",
    "Result",
    "SamplingParams",
    "SchemaError",
    "StructgenError",
    "Timings",
    "TruncatedOutput",
    "UnsafeSQL",
    "ValidationFailed",
    "__version__",
    "agenerate",
    "bundled_grammars",
    "compile_schema",
    "default_model",
    "default_model_path",
    "generate",
    "generate_batch",
    "probs",
    "resolve_model_path",
]
