"""An idle engine lays its prefix cache's entries at the start of a shared KV cache (so that a burst of clients
does not leave every later step attending over the burst's span), and the cache still serves them afterwards."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pydantic import BaseModel

import structgen
from structgen import generate

SYSTEM = "You are a careful assistant of the records office. Answer in JSON with the fields asked for."


class Person(BaseModel):
    name: str
    age: int


def test_an_idle_engine_compacts_the_kv_and_the_prefix_cache_still_hits() -> None:
    m = structgen.LlamaCpp(n_ctx=2048, kv_unified=True, flash_attn=True, prefix_cache=2)
    compacted = threading.Event()
    kept: list[list[int]] = []
    compact = m.compact

    def watched(keep: Sequence[int]) -> list[int]:
        out = compact(keep)
        kept.append(out)
        compacted.set()
        return out

    m.compact = watched  # type: ignore[method-assign]
    try:
        prompt = "Dana is 55 years old. Extract the person."
        first = generate(prompt, Person, model=m, system=SYSTEM, max_tokens=48)
        assert compacted.wait(60), "the idle engine never compacted its KV"
        assert kept[0] and len(kept[0]) == len(m.scheduler.cache.entries)   # every entry put back
        again = generate(prompt, Person, model=m, system=SYSTEM, max_tokens=48)
        assert again.timings.prefix_hit_tokens == first.timings.prompt_tokens   # the whole prompt, from the cache
        assert again.value == first.value
        other = generate("Emil is 38 years old. Extract the person.", Person, model=m, system=SYSTEM,
                         max_tokens=48)
        assert other.timings.prefix_hit_tokens > 0    # the shared head, from the moved entry
    finally:
        m.close()
