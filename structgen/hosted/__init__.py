"""Hosted models: OpenAI-compatible endpoints that cannot be masked, served through the text-model chain
(``structgen.chain``) with the endpoint's own constraints (json_schema, GBNF) tried first."""

from .gbnf import llama_accepts, to_gbnf
from .openai_compatible import OpenAICompatible

__all__ = ["OpenAICompatible", "llama_accepts", "to_gbnf"]
