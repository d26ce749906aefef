"""A Ctrl-C while a caller waits on the engine: it gets through at once and cancels the request."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, cast

import pytest

from structgen.local.engine import Job
from structgen.local.scheduler import Ticket


class _WatchedEvent(threading.Event):
    """An event that says when someone first waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.set()
        return super().wait(timeout)


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_on_another_thread_gets_through_a_wait_on_a_ticket_and_cancels_it() -> None:
    done = _WatchedEvent()
    ticket = Ticket(job=cast(Job, cast(Any, None)), deadline=None, done=done)
    caught = threading.Event()

    def interrupt() -> None:   # a real SIGINT once the caller waits; the engine never finishes this ticket
        if done.waited.wait(60):
            os.kill(os.getpid(), signal.SIGINT)
            if not caught.wait(60):
                done.set()   # unblock a caller that missed the interrupt, so the test fails instead of hanging

    sender = threading.Thread(target=interrupt, daemon=True)
    sender.start()
    # The caller blocks SIGINT, so the kernel hands it to the sender thread, as it may hand Ctrl-C to the
    # engine thread; Python raises it in the caller only once the caller runs bytecode again.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with pytest.raises(KeyboardInterrupt):
            ticket.result()
        caught.set()
        assert not done.is_set(), "the interrupt only got through once the wait ended"
        assert ticket.cancelled
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        caught.set()
        sender.join(5)
