"""``structgen bench serve``'s single-client pass: the plain request, as a new user sends it, against each server.

One client, one request at a time, non-streamed, greedy, a 256-token budget, every server started with its own
defaults (threads and port aside) and sent the same OpenAI body: the user message and ``response_format``
json_schema (strict; ``llama_cpp.server``, which refuses that form, gets its ``json_object`` + ``schema`` form).
No server is told anything extra: structgen adds what it adds by default, and so does each peer.

Three request sets:

* ``fresh``: real-world schemas, a new one each request (MaskBench dev-split objects, the text describing one of
  their valid instances: ``strategies.json_task``), so no server reuses a compiled grammar or a cached prompt;
* ``documents``: the extraction documents (``tasks/extraction.jsonl``), grouped by kind, so one schema repeats over
  several documents in a row (the batch case); scored by field accuracy against their gold values;
* ``grounded`` (structgen only): the documents again with structgen's ``source`` field (every plain string a span
  of the document).

Per server and set: wall time, valid rate (the bench validates every reply against its schema: jsonschema with
formats), invalid content returned with status 200, HTTP errors, output tokens (the model's own tokenizer) and,
for the documents, field accuracy; for structgen also its attempts and wasted tokens (failed attempts, tokens taken
back), from the ``structgen`` field of its replies, and their ratio to the valid replies' tokens.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from structgen_benchmarks.accuracy import field_correct, load_extraction_tasks, prompt_for
from structgen_benchmarks.checks import checked_value

__all__ = ["SETS", "PlainRequest", "documents", "fresh", "run_set"]

SETS = ("fresh", "documents", "grounded")


@dataclass(frozen=True, slots=True)
class PlainRequest:
    """One request of a set: the user message, the schema, and (documents) the source text and gold values."""

    name: str
    prompt: str
    schema: dict[str, Any]
    source: str | None = None
    gold: dict[str, Any] | None = None


def fresh(count: int) -> list[PlainRequest]:
    """``count`` MaskBench dev-split schemas, each with a text describing one of its valid instances."""
    from structgen_benchmarks.data import DEFAULT_DATA
    from structgen_benchmarks.strategies import json_task

    return [PlainRequest(item.name, item.prompt, item.schema) for item in json_task(DEFAULT_DATA, count).items]


def documents(limit: int | None = None) -> list[PlainRequest]:
    """The extraction documents, grouped by kind (each kind's schema repeated over its documents in a row)."""
    tasks = sorted(load_extraction_tasks(), key=lambda t: t["kind"])[:limit]
    return [PlainRequest(t["id"], prompt_for(t), t["schema"], source=t["text"], gold=t["gold"]) for t in tasks]


def _body(server: str, r: PlainRequest, max_tokens: int, grounded: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": r.prompt}],
                            "temperature": 0.0, "max_tokens": max_tokens, "seed": 0}
    if server == "llama_cpp.server":   # it refuses the json_schema form
        body["response_format"] = {"type": "json_object", "schema": r.schema}
    else:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "extraction", "schema": r.schema, "strict": True}}
    if grounded:
        body["source"] = r.source
    return body


def _post(url: str, body: dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(content, error, structgen's own account of the reply: attempts and timings; {} from a peer)."""
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            reply = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return None, f"HTTP {exc.code}", {}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, type(exc).__name__, {}
    choice = (reply.get("choices") or [{}])[0]
    content = (choice.get("message") or {}).get("content")
    if not isinstance(content, str):
        return None, "no content", {}
    ours = ((reply.get("structgen") or {}).get("choices") or [{}])[0]
    return content, None, ours if isinstance(ours, dict) else {}


def run_set(server: str, url: str, name: str, requests: list[PlainRequest], *, max_tokens: int,
            count: Callable[[str], int]) -> dict[str, Any]:
    """Send ``requests`` one after another (after one untimed warm-up); the row of set ``name``."""
    grounded = name == "grounded"
    _post(url, _body(server, requests[0], max_tokens, grounded))
    t0 = time.perf_counter()
    valid = invalid_200 = errors = tokens = attempts = wasted = 0
    fields: list[bool] = []
    kinds: set[str] = set()
    for r in requests:
        content, error, ours = _post(url, _body(server, r, max_tokens, grounded))
        attempts += int(ours.get("attempts") or 0)
        wasted += int((ours.get("timings") or {}).get("wasted_tokens") or 0)
        value = None
        if error is not None:
            errors += 1
            kinds.add(error)
        else:
            assert content is not None
            tokens += count(content)
            try:
                value = checked_value(content, r.schema)
                valid += 1
            except ValueError:
                invalid_200 += 1
        if r.gold is not None:
            fields += [isinstance(value, dict) and field_correct(value.get(k), g) for k, g in r.gold.items()]
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"server": server, "set": name, "requests": len(requests),
                           "wall_s": round(wall, 2), "valid_rate": round(valid / len(requests), 3),
                           "invalid_200": invalid_200, "errors": errors, "error_kinds": sorted(kinds),
                           "tokens": tokens, "tok_s": round(tokens / wall, 1) if wall else None}
    if fields:
        row["field_accuracy"] = round(sum(fields) / len(fields), 4)
    if attempts:   # structgen says what each reply cost: attempts, and tokens lost to failed ones or taken back
        row |= {"attempts": attempts, "wasted_tokens": wasted,
                "wasted_vs_valid_tokens": round(wasted / tokens, 3) if tokens else None}
    return row
