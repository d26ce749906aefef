"""Test utilities shipped as real code: a random-logits stand-in model, and a local llama.cpp server.

``RandomLogitsModel`` has the real model's vocabulary and tokenizer but returns random logits, so the
sampler wanders into grammar corners a trained model never visits (long strings, deep nesting, odd
escapes). Everything else — masks, fast-forward, validation — is the production path.

``llama_server`` runs the real ``python -m llama_cpp.server`` on 127.0.0.1 for a block (the hosted tests
and ``structgen bench strategies --serve`` use it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._llama import LlamaModel
from .chat import Message, as_messages
from .engine import run_local
from .errors import BackendError
from .matchers import Backend, Vocab, get_backend
from .models import resolve_model_path
from .request import Request
from .result import Result


class RandomLogitsModel:
    """A stand-in model: the vocabulary of a GGUF (``vocab_only`` load), logits drawn from N(0, scale²)."""

    deterministic = False
    n_batch = 512
    n_seq_max = 64

    def __init__(self, model_path: str | Path | None = None, *, seed: int = 0, scale: float = 3.0,
                 backend: str = "llguidance") -> None:
        self.path = resolve_model_path(model_path)
        self._model = LlamaModel(self.path, vocab_only=True)
        self.n_vocab = self._model.n_vocab
        eos = self._model.eos
        self.eos_ids: tuple[int, ...] = (eos, *(t for t in self._model.eog_ids if t != eos))
        self.vocab = Vocab(n_vocab=self.n_vocab, eos_ids=self.eos_ids,
                           token_bytes=lambda: [self._model.token_bytes(t) for t in range(self.n_vocab)],
                           llama_vocab=self._model.vocab)
        self.backend: Backend = get_backend(backend)
        self.lock = threading.RLock()
        self.scale = scale
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._pool = (self._rng.standard_normal((32, self.n_vocab), dtype=np.float32) * scale).astype(np.float32)

    @property
    def name(self) -> str:
        """Describes the stand-in."""
        return f"random-logits({self.path.name})"

    def prompt_tokens(self, prompt: str | Sequence[Message], *, system: str | None = None,
                      chat: bool = True) -> list[int]:
        """The prompt is irrelevant to random logits; it is still checked and tokenised."""
        text = " ".join(m["content"] for m in as_messages(prompt, system)) if chat else str(prompt)
        return self._model.tokenize(text, add_special=False, parse_special=False)[:64] or [0]

    def _logits(self) -> NDArray[np.float32]:
        # Drawing 50k-260k normals per step dominates a fuzz run; a pool of fresh-looking rows (random row,
        # random cyclic shift) is as good at steering the sampler somewhere new and costs one copy.
        row = self._pool[int(self._rng.integers(len(self._pool)))]
        return np.roll(row, int(self._rng.integers(self.n_vocab)))

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Random logits for the first position."""
        return self._logits()

    def fork(self, n_prompt: int, copies: int) -> None:
        """Nothing to share."""

    def decode(self, items: Sequence[tuple[int, Sequence[int], int]]) -> list[NDArray[np.float32]]:
        """Fresh random logits for each item."""
        return [self._logits() for _ in items]

    def decode_async(
        self, items: Sequence[tuple[int, Sequence[int], int]]
    ) -> Callable[[], list[NDArray[np.float32]]]:
        """Random logits are ready at once."""
        out = self.decode(items)
        return lambda: out

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Tokens to text with the real vocabulary."""
        return self._model.detokenize(tokens)

    def run(self, request: Request) -> Result[Any]:
        """Serve a request through the production decode loop."""
        return run_local(self, request)


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
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="llama_server-") as tmp:
        log_file = Path(log_path) if log_path is not None else Path(tmp) / "server.log"
        with log_file.open("wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + startup_timeout
                while not server_answers(url):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = log_file.read_text(errors="replace")[-2000:]
                        state = f"exited with code {proc.returncode}" if proc.poll() is not None else (
                            f"did not answer within {startup_timeout:g} s")
                        raise BackendError(f"llama_cpp.server on {url} {state}:\n{tail}")
                    time.sleep(0.2)
                yield url
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
