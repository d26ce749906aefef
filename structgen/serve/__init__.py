"""``structgen serve``: an OpenAI-compatible HTTP server on the concurrent engine (chat and text completions, the
Responses API, streaming, JSON Schema / regex / choice / grammar constraints, tool calls, metrics)."""

from .app import ServeConfig, create_app
from .server import run_server

__all__ = ["ServeConfig", "create_app", "run_server"]
