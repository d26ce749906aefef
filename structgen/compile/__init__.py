"""What may be generated: schema kinds (Pydantic, JSON Schema, ``Regex``, ``Choice``, ``Grammar``) compiled to an
llguidance grammar plus a validator, and the matcher backends that turn a grammar into token masks."""

from ._lazy_formats import install as _defer_slow_format_imports

_defer_slow_format_imports()   # before anything imports jsonschema

from .kinds import Choice, Grammar, Regex, SchemaLike, bundled_grammars  # noqa: E402
from .schema import CompiledSchema, JsonOptions, compile_for_decoding, compile_schema  # noqa: E402

__all__ = ["Choice", "CompiledSchema", "Grammar", "JsonOptions", "Regex", "SchemaLike", "bundled_grammars",
           "compile_for_decoding", "compile_schema"]
