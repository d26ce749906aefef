"""A lone request on a small context makes room by evicting idle prefix-cache entries (found by the serve bench:
with n_ctx 1024 the cache's entries filled the KV and the next request's decode failed)."""

from __future__ import annotations

import structgen

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}


def test_a_small_context_serves_request_after_request_with_the_cache_on(model: structgen.LlamaCpp) -> None:
    small = structgen.LlamaCpp(model.path, n_ctx=512, n_seq_max=1, prefix_cache=8)
    try:
        for i in range(8):
            text = f"Request {i}: the parcel {'goes ' * (10 + 7 * i)}to Lisbon. Where does it go?"
            r = structgen.generate(text, SCHEMA, model=small, temperature=0, max_tokens=40)
            assert isinstance(r.value["city"], str)
        assert small.scheduler.cache.cells <= 512
    finally:
        small.close()
