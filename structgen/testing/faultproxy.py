"""A loopback HTTP proxy that injects faults: a test utility shipped as real code (like httpx's MockTransport).

``FaultProxy`` listens on 127.0.0.1, forwards every request to a real upstream server and, for the
requests you choose, breaks the exchange in one of the ways real endpoints break: a delay, an error status
(with ``Retry-After``), an HTML error page, a body cut mid-JSON, an empty ``choices`` list, a response that
stops halfway, or a connection closed without a reply. Faults are queued and used one per request, so a
test can script "503, then 429, then pass through"::

    with FaultProxy("http://127.0.0.1:8080") as proxy:
        proxy.inject(Fault.status(503), Fault.status(429, retry_after=0.2))
        model = OpenAICompatible(base_url=proxy.url + "/v1", max_retries=2)
        generate("...", schema=Invoice, model=model)      # retried twice, then served
        assert [r.fault for r in proxy.log] == ["status", "status", None]

Bodies are relayed whole (streams included) with a ``Content-Length`` and ``Connection: close``, so a
fault can cut them at an exact byte. Standard library only; every connection is handled in its own thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from ..errors import InvalidArgument

__all__ = ["Fault", "FaultProxy", "ProxyRecord"]

FaultKind = Literal["delay", "status", "html", "cut", "truncated_json", "empty_choices", "content", "stall", "reset"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                         "proxy-connection", "te", "trailer", "upgrade", "host", "accept-encoding"})
_HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
              b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n")


@dataclass(frozen=True, slots=True)
class Fault:
    """One way to break one exchange; build it with the class methods (``Fault.status(503)``, ...)."""

    kind: FaultKind
    status_code: int = 200
    seconds: float = 0.0
    keep: float = 0.5                 # fraction of the upstream body sent before a cut or a stall
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds``, then forward (dropped as soon as the client hangs up)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def status(cls, code: int, *, retry_after: float | str | None = None, body: bytes | None = None) -> Fault:
        """Answer ``code`` without forwarding, with an OpenAI-style JSON error and an optional ``Retry-After``."""
        headers = [("Content-Type", "application/json")]
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        payload = body if body is not None else json.dumps(
            {"error": {"message": f"injected {code}", "type": "fault_proxy", "code": code}}).encode()
        return cls("status", status_code=code, headers=tuple(headers), body=payload)

    @classmethod
    def html(cls, code: int = 502) -> Fault:
        """Answer ``code`` with an HTML error page (what a reverse proxy in front of a dead server sends)."""
        return cls("html", status_code=code, headers=(("Content-Type", "text/html"),), body=_HTML_PAGE)

    @classmethod
    def cut(cls, keep: float = 0.5) -> Fault:
        """Forward, announce the full length, send only ``keep`` of the body, then close the connection."""
        return cls("cut", keep=keep)

    @classmethod
    def truncated_json(cls, keep: float = 0.5) -> Fault:
        """Forward; reply 200 with the body cut mid-JSON and a ``Content-Length`` that matches the cut body."""
        return cls("truncated_json", keep=keep)

    @classmethod
    def empty_choices(cls) -> Fault:
        """Forward, then rewrite the completion (or every streamed chunk) to carry ``"choices": []``."""
        return cls("empty_choices")

    @classmethod
    def content(cls, text: str) -> Fault:
        """Forward, then replace the text of every choice with ``text``: a server that ignores a constraint,
        or a model that writes garbage, on demand (non-streamed replies)."""
        return cls("content", body=text.encode())

    @classmethod
    def stall(cls, keep: float = 0.5) -> Fault:
        """Forward, send ``keep`` of the body, then stop sending and hold the connection open until the client
        hangs up."""
        return cls("stall", keep=keep)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without sending a byte."""
        return cls("reset")


@dataclass(frozen=True, slots=True)
class ProxyRecord:
    """One request the proxy handled and the fault it applied (None = passed through)."""

    method: str
    path: str
    fault: FaultKind | None
    status_code: int | None
    seconds: float                    # until the reply began (until the end where none was sent)
    body: bytes = b""                 # the request body as the client sent it

    def json(self) -> Any:
        """The request body parsed as JSON (None if it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(eq=False)
class _State:
    upstream: urllib.parse.SplitResult
    upstream_timeout: float
    queue: deque[Fault] = field(default_factory=deque)
    default: Fault | None = None
    log: list[ProxyRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.queue.popleft() if self.queue else self.default


class FaultProxy:
    """A fault-injecting HTTP proxy on 127.0.0.1 in front of ``upstream`` (e.g. ``http://127.0.0.1:8080``).

    ``inject(*faults)`` queues faults, one per request, in order; ``always(fault)`` applies one to every
    request once the queue is empty (``always(None)`` stops it); ``log`` lists what was done. Use it as a
    context manager, or call ``start()`` and ``close()``.
    """

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0,
                 upstream_timeout: float = 300.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise InvalidArgument(f"upstream must be an http:// URL, got {upstream!r}")
        self._state = _State(upstream=parts, upstream_timeout=upstream_timeout)
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.state = self._state  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where clients should connect, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def log(self) -> list[ProxyRecord]:
        """A copy of the requests handled so far."""
        with self._state.lock:
            return list(self._state.log)

    def inject(self, *faults: Fault) -> None:
        """Queue faults: the next requests get them in order, one each."""
        with self._state.lock:
            self._state.queue.extend(faults)

    def always(self, fault: Fault | None) -> None:
        """Apply ``fault`` to every request once the queue is empty; None passes requests through."""
        with self._state.lock:
            self._state.default = fault

    def reset(self) -> None:
        """Drop queued faults, the ``always`` fault and the log."""
        with self._state.lock:
            self._state.queue.clear()
            self._state.default = None
            self._state.log.clear()

    def start(self) -> FaultProxy:
        """Start serving in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="structgen-faultproxy",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled and delayed connections are released."""
        self._state.closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "structgen-faultproxy"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy keeps its own ``log``."""

    def do_GET(self) -> None:
        """Forward a GET."""
        self._handle()

    def do_POST(self) -> None:
        """Forward a POST."""
        self._handle()

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def _handle(self) -> None:
        self._started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        self._fault = self.state.next_fault()
        self._logged = False
        try:
            self._serve(self._fault, self._body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client gave up first: exactly what several faults provoke
        finally:
            self.close_connection = True
            self._log(None)

    def _log(self, status: int | None) -> None:
        """Record this exchange once — before the client sees any byte of the reply, so a client that has
        its answer always finds the record in ``log``."""
        if self._logged:
            return
        self._logged = True
        fault = self._fault
        with self.state.lock:
            self.state.log.append(ProxyRecord(self.command, self.path, fault.kind if fault else None, status,
                                              time.monotonic() - self._started, self._body))

    def _serve(self, fault: Fault | None, body: bytes) -> None:
        kind = fault.kind if fault else None
        if fault is None or kind in ("cut", "truncated_json", "empty_choices", "content", "stall"):
            status, headers, payload = self._forward(body)
        elif kind == "delay":
            assert fault is not None
            if not self._hold(fault.seconds):
                return
            status, headers, payload = self._forward(body)
            fault = None
        elif kind == "reset":
            self._log(None)
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        else:  # status, html: answered here, never forwarded
            assert fault is not None
            self._send(fault.status_code, list(fault.headers), fault.body)
            return
        if fault is None:
            self._send(status, headers, payload)
        elif fault.kind == "empty_choices":
            self._send(status, headers, _empty_choices(payload))
        elif fault.kind == "content":
            self._send(status, headers, _replace_content(payload, fault.body.decode()))
        elif fault.kind == "truncated_json":
            self._send(status, headers, payload[: int(len(payload) * fault.keep)])
        else:  # cut / stall: announce the full body, send part of it
            self._send(status, headers, payload, send=int(len(payload) * fault.keep))
            if fault.kind == "stall":
                self.wfile.flush()
                self._hold(None)
            else:
                self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        up = self.state.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80,
                                          timeout=self.state.upstream_timeout)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"
        try:
            conn.request(self.command, up.path.rstrip("/") + self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            return resp.status, kept, payload
        except (OSError, http.client.HTTPException) as exc:
            return 502, [("Content-Type", "text/plain")], f"fault proxy: upstream failed: {exc}".encode()
        finally:
            conn.close()

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes, send: int | None = None) -> None:
        self._log(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload if send is None else payload[:send])

    def _hold(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: for ever); False as soon as the client hangs up or the proxy closes."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            step = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            if self.state.closing.wait(step) or self._client_gone():
                return False
        return True

    def _client_gone(self) -> bool:
        """True when the client has closed its end (readable with nothing to read)."""
        sock: socket.socket = self.connection
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""


def _empty_choices(payload: bytes) -> bytes:
    """The body with every ``choices`` list emptied: one JSON document, or each ``data:`` event of a stream."""
    with contextlib.suppress(ValueError):
        doc = json.loads(payload)
        if isinstance(doc, dict):
            doc["choices"] = []
        return json.dumps(doc).encode()
    lines = []
    for line in payload.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
            with contextlib.suppress(ValueError):
                event = json.loads(line[5:])
                if isinstance(event, dict):
                    event["choices"] = []
                line = b"data: " + json.dumps(event).encode() + (b"\r" if line.endswith(b"\r") else b"")
        lines.append(line)
    return b"\n".join(lines)


def _replace_content(payload: bytes, text: str) -> bytes:
    """A chat completion with every choice's message text replaced (the body unchanged if it is not one)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    for choice in doc.get("choices", []) if isinstance(doc, dict) else []:
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            choice["message"]["content"] = text
            choice["logprobs"] = None
    return json.dumps(doc).encode()
