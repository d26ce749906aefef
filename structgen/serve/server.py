"""Running the app under uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .app import ServeConfig, create_app

__all__ = ["run_server"]


def run_server(model: Any, *, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None,
               log_level: str = "warning", configure: Callable[[Any], object] | None = None) -> None:
    """Serve ``model`` on ``host:port`` until interrupted (binds loopback only unless told otherwise);
    ``configure(app)`` may add routes first (``structgen serve --data-dir``: the Batch endpoints)."""
    import uvicorn

    app = create_app(model, config)
    if configure is not None:
        configure(app)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
