"""The child process that runs one checked SELECT for ``sql_guard.execute_select`` (standard library only).

It is started by path (``python -I -S _sql_child.py``), so it imports nothing of structgen: the request comes
as one JSON line on stdin, the answer goes out as JSON lines on stdout. A query that outlives its deadline is
killed by the parent, whatever SQLite is doing; the bounds here (time, memory, bytes, string length) are the
inner layer, so that the common overrun ends with a precise message instead of a kill.
"""

from __future__ import annotations

import base64
import json
import resource
import sqlite3
import sys
import time
import urllib.parse
from typing import Any

_ROW_OVERHEAD = 16   # bytes charged per row on top of its values
_SCALAR_BYTES = 8    # bytes charged for an integer, a float or NULL


def _encode(value: Any) -> tuple[Any, int]:
    """A JSON-safe form of one SQLite value and the bytes it is charged."""
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}, len(value)
    if isinstance(value, str):
        return value, len(value.encode("utf-8", "surrogatepass"))
    return value, _SCALAR_BYTES


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=True) + "\n")


def main() -> int:
    req = json.loads(sys.stdin.readline())
    memory = int(req["max_memory"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    uri = f"file:{urllib.parse.quote(req['path'])}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(req["max_length"]))
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute(f"PRAGMA hard_heap_limit = {memory // 2}")
    allowed_actions = frozenset(req["allowed_actions"])
    allowed_functions = frozenset(req["allowed_functions"])
    denied: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        # The same rules as the guard's authorizer in sql_guard.py (the statement passed it already).
        if action not in allowed_actions:
            denied.append(f"action {action} {arg1 or ''} {arg2 or ''}".strip())
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in allowed_functions:
            denied.append(f"function {arg2}()")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and db not in (None, "main", "temp"):
            denied.append(f"reading from database {db!r}")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    deadline = time.monotonic() + float(req["timeout_s"])
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    conn.set_authorizer(authorize)
    max_rows, max_bytes = int(req["max_rows"]), int(req["max_bytes"])
    try:
        cursor = conn.execute(req["sql"])
        _emit({"columns": [d[0] for d in cursor.description or ()]})
        used = 0
        for n, row in enumerate(cursor):
            if n == max_rows:
                break
            encoded = [_encode(v) for v in row]
            used += _ROW_OVERHEAD + sum(size for _, size in encoded)
            if used > max_bytes:
                _emit({"error": "too_big", "message": f"the result passed {max_bytes:,} bytes after {n} row(s)"})
                return 0
            _emit({"row": [v for v, _ in encoded]})
    except MemoryError:
        _emit({"error": "memory", "message": "the query ran out of its memory budget"})
        return 0
    except sqlite3.Error as exc:
        if time.monotonic() > deadline:
            _emit({"error": "timeout", "message": str(exc)})
        elif denied:
            _emit({"error": "denied", "message": ", ".join(denied)})
        else:
            kind = "too_big" if "too big" in str(exc) else "sqlite"
            _emit({"error": kind, "message": str(exc)})
        return 0
    _emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
