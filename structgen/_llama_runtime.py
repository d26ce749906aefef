"""llama.cpp's process-wide state: one backend initialisation, and its log kept off stderr.

Below both engines: the local engine loads models through it, the hosted client checks GBNF grammars with
llama.cpp's own parser before sending them.
"""

from __future__ import annotations

import ctypes
import os
import threading

import llama_cpp

__all__ = ["init_backend"]

_backend_lock = threading.Lock()
_backend_ready = False


def _drop_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every load step to stderr; structgen reports failures as typed errors instead."""


# ctypes keeps only a weak reference to the callback: hold it for the life of the process.
_quiet_log = llama_cpp.llama_log_callback(_drop_log)


def init_backend() -> None:
    """Initialise llama.cpp once per process, its log routed away from stderr (``STRUCTGEN_LLAMA_LOG=1`` keeps it)."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            if not os.environ.get("STRUCTGEN_LLAMA_LOG"):  # set it to see llama.cpp's own log
                llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True
