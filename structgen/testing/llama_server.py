"""``llama_server``: the real ``python -m llama_cpp.server`` on 127.0.0.1 for a block (the hosted tests and
``structgen bench strategies --serve`` use it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import BackendError
from ..local.models import resolve_model_path

__all__ = ["free_port", "llama_server", "server_answers", "server_process"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_answers(url: str) -> bool:
    """True if the OpenAI-compatible server at ``url`` (``http://HOST:PORT/v1``) answers ``GET /models``."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def llama_server(model_path: str | os.PathLike[str] | None = None, *, n_ctx: int = 4096,
                 n_threads: int | None = None, n_gpu_layers: int = 0, extra_args: Sequence[str] = (),
                 startup_timeout: float = 180.0, log_path: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` (the ``server`` extra) on a free 127.0.0.1 port for the block and
    yield its OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``); stopped on exit.

    ``model_path``: a GGUF path or a known name (default: the bundled model). Its output goes to
    ``log_path`` (default: a temporary file); a server that exits or does not answer within
    ``startup_timeout`` seconds raises ``BackendError`` with the log's tail.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model_path(model_path)),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_gpu_layers", str(n_gpu_layers), "--verbose", "False", *extra_args]
    if n_threads:
        cmd += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    with server_process(cmd, f"http://127.0.0.1:{port}/v1", name="llama_cpp.server",
                        startup_timeout=startup_timeout, log_path=log_path) as url:
        yield url


@contextmanager
def server_process(cmd: Sequence[str], url: str, *, name: str, startup_timeout: float = 180.0,
                   log_path: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Run the server command ``cmd`` for the block, yield ``url`` once ``GET url/models`` answers; stopped on exit.
    Its output goes to ``log_path`` (default: a temporary file); a server that exits or does not answer within
    ``startup_timeout`` seconds raises ``BackendError`` naming ``name``, with the log's tail."""
    with tempfile.TemporaryDirectory(prefix="structgen-server-") as tmp:
        log_file = Path(log_path) if log_path is not None else Path(tmp) / "server.log"
        with log_file.open("wb") as log:
            proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + startup_timeout
                while not server_answers(url):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = log_file.read_text(errors="replace")[-2000:]
                        state = f"exited with code {proc.returncode}" if proc.poll() is not None else (
                            f"did not answer within {startup_timeout:g} s")
                        raise BackendError(f"{name} on {url} {state}:\n{tail}")
                    time.sleep(0.2)
                yield url
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
