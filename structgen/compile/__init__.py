"""What may be generated: schema kinds (Pydantic, JSON Schema, ``Regex``, ``Choice``, ``Grammar``) compiled to an
llguidance grammar plus a validator, and the matcher backends that turn a grammar into token masks."""

from .kinds import Choice, Grammar, Regex, SchemaLike, bundled_grammars
from .schema import CompiledSchema, JsonOptions, compile_for_decoding, compile_schema

__all__ = ["Choice", "CompiledSchema", "Grammar", "JsonOptions", "Regex", "SchemaLike", "bundled_grammars",
           "compile_for_decoding", "compile_schema"]
