"""The local engine: llama.cpp (``LlamaCpp``, the ctypes binding), chat templates, the decode loop with its
mask and sampler, best-of/self-consistency and co-batched requests, and the model registry."""

from .llamacpp import LlamaCpp
from .models import default_model_path, resolve_model_path
from .run import run_local

__all__ = ["LlamaCpp", "default_model_path", "resolve_model_path", "run_local"]
