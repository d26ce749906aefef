"""Test utilities shipped as real code: a random-logits stand-in model, the real llama.cpp server on
127.0.0.1, and a loopback fault proxy."""

from .faultproxy import Fault, FaultProxy
from .llama_server import free_port, llama_server, server_answers
from .random_logits import RandomLogitsModel

__all__ = ["Fault", "FaultProxy", "RandomLogitsModel", "free_port", "llama_server", "server_answers"]
