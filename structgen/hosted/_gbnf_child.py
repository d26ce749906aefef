"""The child process behind ``gbnf.llama_accepts``: does llama.cpp's GBNF parser accept the grammar on stdin?

Exit 0: yes; 1: no. llama.cpp's parser can also crash on a grammar it accepts the syntax of (a bounded
repetition of 32,767 items overflowed its stack), which is exactly what a server must never be sent: a
crash here costs this child, the caller reads it as "no". Imports nothing of structgen.
"""

from __future__ import annotations

import ctypes
import sys

import llama_cpp


def _drop_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs parse errors to stderr; the exit code says it all."""


_quiet_log = llama_cpp.llama_log_callback(_drop_log)


def main() -> int:
    gbnf = sys.stdin.buffer.read()
    llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf, b"root")
    if not sampler:
        return 1
    llama_cpp.llama_sampler_free(sampler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
