"""The output and error files of a batch job, as the record of what is done: resume exactly once.

Each result is one JSON line written with one ``write`` and flushed at once; a background thread fsyncs the files
within ``fsync_every`` seconds of a write (so a machine crash, not only a killed process, loses at most that much),
and close fsyncs them again. Opening the files again reads every ``custom_id`` already written, so a
job run again skips them. A process killed mid-write leaves a last line without its newline: it is detected and
cut off (that request simply runs again). With ``retry_errors`` the error lines of the requests about to run again
are taken out of the error file first (rewritten to a temporary file, fsynced and renamed over it), so each
``custom_id`` ends up in exactly one of the two files.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidArgument

__all__ = ["Journal", "read_results"]


class Journal:
    """Append-only result files ``out`` (successes) and ``err`` (failures) with the ids already in them."""

    def __init__(self, out: Path, err: Path, *, fsync_every: float = 2.0) -> None:
        self.out_path, self.err_path = out, err
        self.fsync_every = fsync_every
        self.succeeded: set[str] = set()
        self.failed: set[str] = set()
        self.bad_lines: set[int] = set()   # input lines already reported as not runnable
        self.torn = 0                      # torn last lines cut off when opening
        self._files: list[IO[bytes]] = []
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._syncer: threading.Thread | None = None

    @property
    def done(self) -> set[str]:
        """Every ``custom_id`` with a line in either file."""
        return self.succeeded | self.failed

    def open(self, *, retry: Iterable[str] = ()) -> Journal:
        """Read the files (cutting a torn last line), take the error lines of ``retry`` out, open for appending."""
        for path in (self.out_path, self.err_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.torn += _cut_torn_tail(path)
        self.succeeded = {r["custom_id"] for r in read_results(self.out_path) if r.get("custom_id") is not None}
        errors = read_results(self.err_path)
        again = set(retry) & {r.get("custom_id") for r in errors}
        if again:
            kept = [r for r in errors if r.get("custom_id") not in again]
            _rewrite(self.err_path, kept)
            errors = kept
        self.failed = {r["custom_id"] for r in errors if r.get("custom_id") is not None}
        self.bad_lines = {r["line"] for r in errors if isinstance(r.get("line"), int)}
        self._out = self.out_path.open("ab")
        self._err = self.err_path.open("ab")
        self._files = [self._out, self._err]
        self._syncer = threading.Thread(target=self._sync_loop, name="structgen-batch-fsync", daemon=True)
        self._syncer.start()
        return self

    def write(self, record: dict[str, Any], *, ok: bool) -> None:
        """Append one result line to the output (``ok``) or error file, flushed (the fsync thread syncs it)."""
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        f = self._out if ok else self._err
        with self._lock:
            f.write(data)
            f.flush()
        cid = record.get("custom_id")
        if cid is not None:
            (self.succeeded if ok else self.failed).add(cid)
        if not ok and isinstance(record.get("line"), int):
            self.bad_lines.add(record["line"])
        self._dirty.set()

    def sync(self) -> None:
        """fsync both files (their lines are already flushed to the OS)."""
        with self._lock:
            self._dirty.clear()
            for f in self._files:
                os.fsync(f.fileno())

    def _sync_loop(self) -> None:
        while not self._closing.is_set():
            if self._dirty.wait(timeout=0.5) and not self._closing.wait(self.fsync_every):
                self.sync()

    def close(self) -> None:
        """Stop the fsync thread, fsync and close."""
        if not self._files:
            return
        self._closing.set()
        if self._syncer is not None:
            self._syncer.join()
        try:
            self.sync()
        finally:
            for f in self._files:
                f.close()
            self._files = []

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(path: Path) -> list[dict[str, Any]]:
    """The result lines of ``path`` (none if it does not exist); a line that is not a JSON object (other than a
    torn last line, see ``Journal.open``) is an ``InvalidArgument`` naming it."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for n, data in enumerate(f, start=1):
            if not data.strip():
                continue
            try:
                record = json.loads(data)
            except ValueError as exc:
                raise InvalidArgument(f"{path}:{n}: not a result line ({exc}); is this a structgen batch output?") \
                    from None
            if not isinstance(record, dict) or "custom_id" not in record:
                raise InvalidArgument(f"{path}:{n}: not a result line (no custom_id)")
            out.append(record)
    return out


def _cut_torn_tail(path: Path) -> int:
    """Cut the bytes after the last newline of ``path`` (a line whose write was cut short); 1 if it had some."""
    if not path.exists():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        end = size
        step = 1 << 16
        while end > 0:   # find the last newline from the end
            start = max(0, end - step)
            f.seek(start)
            chunk = f.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        else:
            keep = 0
        if keep == size:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return 1


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``records`` atomically (a temporary file beside it, fsynced, renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
