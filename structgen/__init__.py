"""structgen: structured output from language models that is valid every time.

Local models decode under a grammar mask (llama.cpp + llguidance); hosted OpenAI-compatible endpoints go
through a fallback chain. Either way ``generate`` returns a validated value or raises a typed error.
"""

# llama_cpp first: on some CUDA images numpy loaded before llama.cpp crashes its tokenizer init.
import llama_cpp  # noqa: F401  # isort: skip

import typing as _typing

from .agenerate import agenerate
from .analysis.judge import Judge
from .analysis.probs import OptionProbs, probs
from .compile.kinds import Choice, Grammar, Regex, bundled_grammars
from .compile.schema import JsonOptions, compile_schema
from .compile.tools import Tool
from .errors import (
    BackendError,
    Cancelled,
    DatabaseError,
    DeadlineExceeded,
    GenerationError,
    GrammarError,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    ParseError,
    SchemaError,
    StructgenError,
    TruncatedOutput,
    UnsafeSQL,
    ValidationFailed,
)
from .generate import Model, default_model, generate, generate_batch
from .local.llamacpp import LlamaCpp
from .local.models import default_model_path, resolve_model_path
from .partial import Partial, PartialToolCall
from .request import SamplingParams
from .result import Attempt, Result, Timings, ToolCall, ToolCalls
from .stream import Delta, Done, Reset, StreamEvent, astream, stream

if _typing.TYPE_CHECKING:
    from .hosted.openai_compatible import OpenAICompatible
    from .testing.faultproxy import Fault, FaultProxy

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "BackendError",
    "Cancelled",
    "Choice",
    "DatabaseError",
    "DeadlineExceeded",
    "Delta",
    "Done",
    "Fault",
    "FaultProxy",
    "GenerationError",
    "Grammar",
    "GrammarError",
    "InvalidArgument",
    "JsonOptions",
    "Judge",
    "LlamaCpp",
    "Model",
    "ModelNotFound",
    "OpenAICompatible",
    "OptionProbs",
    "Overloaded",
    "ParseError",
    "Partial",
    "PartialToolCall",
    "Regex",
    "Reset",
    "Result",
    "SamplingParams",
    "SchemaError",
    "StreamEvent",
    "StructgenError",
    "Timings",
    "Tool",
    "ToolCall",
    "ToolCalls",
    "TruncatedOutput",
    "UnsafeSQL",
    "ValidationFailed",
    "__version__",
    "agenerate",
    "astream",
    "bundled_grammars",
    "compile_schema",
    "default_model",
    "default_model_path",
    "generate",
    "generate_batch",
    "probs",
    "resolve_model_path",
    "stream",
]

# Loaded on first use: the hosted model brings the text-model chain (YAML, JSON repair) and the fault proxy a
# server; a local-only program never needs them, and ``import structgen`` stays fast.
_LAZY = {"OpenAICompatible": ".hosted.openai_compatible", "Fault": ".testing.faultproxy",
         "FaultProxy": ".testing.faultproxy"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
