"""The text-model chain, for models that cannot be masked (hosted endpoints, and a local model run unmasked):
the endpoint's own constraint, prompting (JSON or YAML), a defensive parse, re-asking with the error, best-of
and self-consistency. It sits below both engines: each adapts its model to the chain's ``TextModel``."""

from .parse import Parsed, parse_json, parse_structured, parse_yaml
from .strategies import Call, Capabilities, Completion, Constraint, Reply, TextModel, arun_chain, run_chain

__all__ = ["Call", "Capabilities", "Completion", "Constraint", "Parsed", "Reply", "TextModel", "arun_chain",
           "parse_json", "parse_structured", "parse_yaml", "run_chain"]
