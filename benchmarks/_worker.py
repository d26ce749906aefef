"""A child process that runs benchmark jobs one at a time, each under a deadline.

A job that overruns its deadline, or that kills the process (a segfault in a peer's native code), is
reported as ``timeout`` / ``crash`` and the child is replaced before the next job, so one pathological
input cannot stall or end a run. The child is started with ``spawn`` (no inherited llama.cpp threads).

``setup(*args)`` runs once per child and returns its state; ``handle(state, job)`` serves one job. Both
must be module-level functions (they are pickled by reference).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "crash"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one job: its value (``ok``) or why there is none."""

    status: Status
    value: Any = None
    message: str = ""


def _serve(conn: multiprocessing.connection.Connection, setup: Callable[..., Any], args: tuple[Any, ...],
           handle: Callable[[Any, Any], Any]) -> None:
    try:
        state = setup(*args)
    except BaseException as exc:  # report any setup failure to the parent, then stop
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("ok", handle(state, job)))
        except Exception as exc:  # a job's own failure is data for the benchmark, not a reason to stop
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Worker:
    """One child process serving jobs; restarted after a timeout or a crash."""

    def __init__(self, setup: Callable[..., Any], args: tuple[Any, ...], handle: Callable[[Any, Any], Any],
                 *, setup_timeout: float = 300.0) -> None:
        self._setup = setup
        self._args = args
        self._handle = handle
        self._setup_timeout = setup_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self._setup, self._args, self._handle), daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        status, payload = self._receive(self._setup_timeout)
        if status != "ready":
            self.close()
            raise RuntimeError(f"benchmark worker did not start ({status}): {payload}")

    def _receive(self, timeout: float) -> tuple[str, Any]:
        assert self._conn is not None
        try:
            if not self._conn.poll(timeout):
                return "timeout", f"no answer within {timeout:g} s"
            msg: tuple[str, Any] = self._conn.recv()
            return msg
        except (EOFError, OSError):
            code = None
            if self._proc is not None:
                self._proc.join(1)
                code = self._proc.exitcode
            return "crash", f"the worker process died (exit code {code})"

    def call(self, job: Any, timeout: float) -> Outcome:
        """Run ``job`` in the child; a timeout or crash replaces the child (the next call starts a new one)."""
        if self._proc is None:
            self._start()
        assert self._conn is not None
        try:
            self._conn.send(job)
        except (BrokenPipeError, OSError):
            self._kill()
            return Outcome("crash", message="the worker process died before the job was sent")
        status, payload = self._receive(timeout)
        if status == "ok":
            return Outcome("ok", payload)
        if status == "error":
            return Outcome("error", message=str(payload))
        self._kill()
        self.restarts += 1
        return Outcome(status, message=str(payload))  # type: ignore[arg-type]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(10)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
