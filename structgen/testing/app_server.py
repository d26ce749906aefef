"""``serving``: ``structgen serve``'s app on 127.0.0.1 in a background thread for a block (the tests drive it with
the real ``openai`` SDK over real HTTP)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..batch.service import add_batch_routes
from ..errors import BackendError
from ..serve.app import ServeConfig, create_app
from .llama_server import free_port

__all__ = ["serving"]


@contextmanager
def serving(model: Any, config: ServeConfig | None = None, *, startup_timeout: float = 30.0,
            data_dir: Path | None = None) -> Iterator[str]:
    """Serve ``model`` on a free 127.0.0.1 port for the block; yields the base URL (``http://127.0.0.1:PORT/v1``).
    ``data_dir``: also serve OpenAI's Files and Batch endpoints, kept there (``structgen serve --data-dir``)."""
    import uvicorn

    port = free_port()
    app = create_app(model, config)
    if data_dir is not None:
        add_batch_routes(app, model, data_dir, name=str(getattr(model, "name", "structgen")),
                         api_key=config.api_key if config is not None else None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="structgen-serve", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + startup_timeout
    while not _healthy(url):
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise BackendError(f"structgen serve did not start on {url}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _healthy(url: str) -> bool:
    """True once ``GET /health`` answers (it needs no API key)."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
