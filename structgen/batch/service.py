"""OpenAI's Batch endpoints for ``structgen serve --data-dir DIR``, so the openai SDK's batch client works unchanged.

``POST /v1/files`` (purpose ``batch``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/batches``, ``POST /v1/batches/{id}/cancel``. Files and batch state live under
the data directory; a batch runs on the server's own model with the batch runner's journal (``journal.py``), so a
batch in progress when the server stops resumes where it was when the server starts again, each ``custom_id``
exactly once. Batch work takes at most half the model's sequences (``n_seq_max // 2``, at least 1), so interactive
requests always find room on the engine, and runs at a less urgent engine priority (``BATCH_PRIORITY``): while an
interactive request prefills its prompt, the batch's requests wait (see ``structgen.local.scheduler``).

Layout: ``DIR/files/<file-id>`` (the bytes) and ``<file-id>.json`` (its object); ``DIR/batches/<batch-id>.json``
(the batch object) and ``DIR/batches/<batch-id>/{output,errors}.jsonl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..errors import InvalidArgument
from .executors import run_window
from .journal import Journal
from .lines import read_batch_file
from .plans import check_lines
from .results import Outcome

__all__ = ["BATCH_PRIORITY", "BatchService", "add_batch_routes"]

BATCH_PRIORITY = 1
"""The engine priority of a batch's requests: less urgent than an interactive request's default 0."""

_ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class BatchService:
    """The files and batches under ``data_dir``, run on ``model`` (served as ``name``)."""

    def __init__(self, model: Any, data_dir: Path, *, name: str) -> None:
        self.model, self.name = model, name
        self.files, self.batches = data_dir / "files", data_dir / "batches"
        self.files.mkdir(parents=True, exist_ok=True)
        self.batches.mkdir(parents=True, exist_ok=True)
        self.window = max(1, int(getattr(model, "n_seq_max", 2)) // 2)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ---- files ----------------------------------------------------------------------------------------

    def add_file(self, data: bytes, filename: str, purpose: str, file_id: str | None = None) -> dict[str, Any]:
        """Store a file; its OpenAI file object."""
        fid = file_id or f"file-{secrets.token_hex(12)}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": filename,
               "purpose": purpose, "status": "processed", "status_details": None}
        _atomic(self.files / fid, data)
        _atomic(self.files / f"{fid}.json", json.dumps(obj).encode())
        return obj

    def file(self, fid: str) -> dict[str, Any]:
        """A file's object (``InvalidArgument`` if there is none)."""
        return _load(self.files / f"{_safe(fid)}.json", f"no file {fid!r}")

    def file_path(self, fid: str) -> Path:
        """Where a file's bytes are."""
        self.file(fid)
        return self.files / _safe(fid)

    # ---- batches --------------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a batch from ``{"input_file_id", "endpoint", "completion_window", "metadata"}`` and start it."""
        endpoint = body.get("endpoint")
        if endpoint not in ("/v1/chat/completions", "/v1/completions"):
            raise InvalidArgument(f"endpoint must be /v1/chat/completions or /v1/completions, got {endpoint!r}")
        fid = body.get("input_file_id")
        if not isinstance(fid, str):
            raise InvalidArgument("input_file_id is required")
        self.file(fid)
        bid = f"batch_{secrets.token_hex(12)}"
        batch = {"id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
                 "completion_window": body.get("completion_window", "24h"), "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                 "in_progress_at": None, "expires_at": None, "finalizing_at": None, "completed_at": None,
                 "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        self._save(batch)
        self.start(bid)
        return batch

    def get(self, bid: str) -> dict[str, Any]:
        """A batch's object."""
        return _load(self.batches / f"{_safe(bid)}.json", f"no batch {bid!r}")

    def list(self) -> list[dict[str, Any]]:
        """Every batch, newest first."""
        found = [json.loads(p.read_text()) for p in self.batches.glob("batch_*.json")]
        return sorted(found, key=lambda b: b["created_at"], reverse=True)

    def cancel(self, bid: str) -> dict[str, Any]:
        """Stop a batch: what finished stays in its output; the batch ends ``cancelled``."""
        batch = self.get(bid)
        if batch["status"] in _ACTIVE:
            batch.update(status="cancelling", cancelling_at=int(time.time()))
            self._save(batch)
            task = self._tasks.get(bid)
            if task is not None and not task.done():
                task.cancel()
            else:
                self._finish(batch, "cancelled")
        return self.get(bid)

    def start(self, bid: str) -> None:
        """Run (or resume) a batch on the running event loop."""
        if bid not in self._tasks or self._tasks[bid].done():
            self._tasks[bid] = asyncio.get_running_loop().create_task(self._run(bid))

    def resume_all(self) -> None:
        """Start every batch that was in progress (a server restart)."""
        for batch in self.list():
            if batch["status"] == "cancelling":
                self._finish(batch, "cancelled")
            elif batch["status"] in _ACTIVE:
                self.start(batch["id"])

    async def stop(self) -> None:
        """Stop the running batches (they resume at the next start)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, bid: str) -> None:
        batch = self.get(bid)
        folder = self.batches / bid
        lines, problems = read_batch_file(self.files / batch["input_file_id"])
        wrong = [f"line {x.line}: url {x.url} is not this batch's endpoint" for x in lines
                 if x.url != batch["endpoint"]]
        planned, bad = check_lines([x for x in lines if x.url == batch["endpoint"]])
        reasons = [f"line {p.line}: {p.reason}" for p in sorted([*problems, *bad], key=lambda p: p.line)] + wrong
        if reasons:
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": [
                {"code": "invalid_request", "message": r, "param": None, "line": None} for r in reasons]})
            self._save(batch)
            return
        journal = Journal(folder / "output.jsonl", folder / "errors.jsonl").open()
        done = journal.done
        counts = batch["request_counts"]
        counts.update(total=len(planned), completed=len(journal.succeeded), failed=len(journal.failed))
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        self._save(batch)

        def emit(outcome: Outcome) -> None:
            if outcome.custom_id in journal.done:
                return
            journal.write(outcome.record, ok=outcome.ok)
            counts["completed" if outcome.ok else "failed"] += 1
            self._save(batch)

        try:
            await run_window(self.model, [p for p in planned if p.line.custom_id not in done], emit,
                             window=self.window, priority=BATCH_PRIORITY)
        except asyncio.CancelledError:
            journal.close()
            if self.get(bid)["status"] == "cancelling":
                self._finish(batch, "cancelled")
            raise
        journal.close()
        batch.update(status="finalizing", finalizing_at=int(time.time()))
        self._finish(batch, "completed")

    def _finish(self, batch: dict[str, Any], status: str) -> None:
        """Register the result files and end the batch with ``status``."""
        folder = self.batches / batch["id"]
        for kind, key in (("output", "output_file_id"), ("errors", "error_file_id")):
            path = folder / f"{kind}.jsonl"
            if path.exists() and path.stat().st_size:
                fid = f"file-{batch['id']}-{kind}"
                self.add_file(path.read_bytes(), f"{batch['id']}_{kind}.jsonl", "batch_output", file_id=fid)
                batch[key] = fid
        batch.update(status=status, **{f"{status}_at": int(time.time())})
        self._save(batch)

    def _save(self, batch: dict[str, Any]) -> None:
        _atomic(self.batches / f"{batch['id']}.json", json.dumps(batch).encode())


def add_batch_routes(app: FastAPI, model: Any, data_dir: Path, *, name: str,
                     api_key: str | None = None) -> BatchService:
    """Add the Files and Batch endpoints to ``structgen serve``'s app; batches in progress resume when it starts."""
    service = BatchService(model, data_dir, name=name)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            service.resume_all()
            try:
                yield state
            finally:
                await service.stop()

    app.router.lifespan_context = lifespan

    def answer(request: Request, make: Any) -> Response:
        if api_key is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {api_key}".encode()):
                return _error(401, "a valid API key is required (Authorization: Bearer <key>)", "AuthenticationError")
        try:
            return JSONResponse(make())
        except InvalidArgument as exc:
            return _error(404 if str(exc).startswith("no ") else 400, str(exc), "InvalidArgument")

    @app.post("/v1/files")
    async def upload(request: Request) -> Response:
        async with request.form() as form:
            upload = form.get("file")
            purpose = str(form.get("purpose") or "batch")
            if upload is None or isinstance(upload, str):
                return _error(400, "a multipart 'file' field is required", "InvalidArgument")
            data, filename = await upload.read(), upload.filename or "input.jsonl"
        return answer(request, lambda: service.add_file(data, filename, purpose))

    @app.get("/v1/files/{fid}")
    async def file_object(fid: str, request: Request) -> Response:
        return answer(request, lambda: service.file(fid))

    @app.get("/v1/files/{fid}/content")
    async def file_content(fid: str, request: Request) -> Response:
        try:
            path = service.file_path(fid)
        except InvalidArgument as exc:
            return _error(404, str(exc), "InvalidArgument")
        return Response(path.read_bytes(), media_type="application/jsonl")

    @app.post("/v1/batches")
    async def create(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the request body is not JSON", "InvalidArgument")
        return answer(request, lambda: service.create(body if isinstance(body, dict) else {}))

    @app.get("/v1/batches")
    async def listing(request: Request) -> Response:
        return answer(request, lambda: {"object": "list", "data": service.list(), "has_more": False})

    @app.get("/v1/batches/{bid}")
    async def get(bid: str, request: Request) -> Response:
        return answer(request, lambda: service.get(bid))

    @app.post("/v1/batches/{bid}/cancel")
    async def cancel(bid: str, request: Request) -> Response:
        return answer(request, lambda: service.cancel(bid))

    return service


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                        status_code=status)


def _safe(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise InvalidArgument(f"no such id {name!r}")
    return name


def _load(path: Path, missing: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(missing) from None
    return data


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
