"""Progress of a batch job: a ``rich`` bar on a terminal (done / total, errors, tok/s, ETA), plain periodic lines
otherwise (logs, CI), nothing when quiet."""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol

__all__ = ["PlainProgress", "Progress", "QuietProgress", "RichProgress", "make_progress"]


class Progress(Protocol):
    """What a job reports as it goes."""

    def start(self, total: int, done: int) -> None:
        """``total`` lines in the job, ``done`` of them already done (resumed)."""

    def advance(self, ok: bool, tokens: int) -> None:
        """One line finished (``ok``: a success) having generated ``tokens``."""

    def close(self) -> None:
        """The job ended (or stopped)."""


class QuietProgress:
    """Reports nothing."""

    def start(self, total: int, done: int) -> None:
        """Nothing."""

    def advance(self, ok: bool, tokens: int) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


class _Counts:
    def __init__(self) -> None:
        self.total = self.done = self.errors = self.tokens = self._resumed = 0
        self.started = time.monotonic()

    def start(self, total: int, done: int) -> None:
        self.total, self.done, self.started = total, done, time.monotonic()
        self._resumed = done

    def advance(self, ok: bool, tokens: int) -> None:
        self.done += 1
        self.errors += not ok
        self.tokens += tokens

    def rates(self) -> tuple[float, float, float | None]:
        """tokens/s, lines/s, ETA seconds (None before the first line)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lines = (self.done - self._resumed) / elapsed
        eta = (self.total - self.done) / lines if lines > 0 else None
        return self.tokens / elapsed, lines, eta


class PlainProgress(_Counts):
    """A line every ``every`` seconds (and at the end) on ``stream``."""

    def __init__(self, stream: IO[str] | None = None, every: float = 10.0) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.every = every
        self._last = time.monotonic()

    def advance(self, ok: bool, tokens: int) -> None:
        """Count the line; print when ``every`` seconds have passed."""
        super().advance(ok, tokens)
        if time.monotonic() - self._last >= self.every:
            self._print()

    def close(self) -> None:
        """A last line."""
        self._print()

    def _print(self) -> None:
        self._last = time.monotonic()
        tok_s, _, eta = self.rates()
        eta_text = f"{eta:.0f}s" if eta is not None else "?"
        print(f"batch: {self.done}/{self.total} done, {self.errors} errors, {tok_s:.1f} tok/s, ETA {eta_text}",
              file=self.stream, flush=True)


class RichProgress(_Counts):
    """A ``rich`` progress bar on the terminal."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[errors]} errors"), TextColumn("{task.fields[tok_s]} tok/s"),
                        TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self._task: Any = None

    def start(self, total: int, done: int) -> None:
        """Show the bar."""
        super().start(total, done)
        self._bar.start()
        self._task = self._bar.add_task("batch", total=total, completed=done, errors=0, tok_s="0.0")

    def advance(self, ok: bool, tokens: int) -> None:
        """Move the bar."""
        super().advance(ok, tokens)
        tok_s, _, _ = self.rates()
        self._bar.update(self._task, completed=self.done, errors=self.errors, tok_s=f"{tok_s:.1f}")

    def close(self) -> None:
        """Stop the bar."""
        self._bar.stop()


def make_progress(kind: str = "auto") -> Progress:
    """``"auto"``: a rich bar when stderr is a terminal, plain lines otherwise; or ``"rich"``, ``"plain"``,
    ``"quiet"``."""
    if kind == "auto":
        kind = "rich" if sys.stderr.isatty() else "plain"
    if kind == "rich":
        return RichProgress()
    if kind == "plain":
        return PlainProgress()
    return QuietProgress()
