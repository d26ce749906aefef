"""Running the app under uvicorn."""

from __future__ import annotations

from typing import Any

from .app import ServeConfig, create_app

__all__ = ["run_server"]


def run_server(model: Any, *, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None,
               log_level: str = "warning") -> None:
    """Serve ``model`` on ``host:port`` until interrupted (binds loopback only unless told otherwise)."""
    import uvicorn

    app = create_app(model, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
