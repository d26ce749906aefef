"""What the prefix cache keeps: whole recent prompts while short, heads and shared starts of older ones, never a
pinned entry's cells; on a stand-in KV store that tracks which positions each sequence holds."""

from __future__ import annotations

import structgen
from structgen import generate
from structgen.generate import build_request
from structgen.local.engine import Job, prepare, shared_head
from structgen.local.prefix_cache import TAIL_CELLS, PrefixCache


class FakeKv:
    """Each sequence's held positions, as llama.cpp's seq_rm / seq_cp leave them."""

    def __init__(self) -> None:
        self.held: dict[int, int] = {}

    def seq_remove(self, seq: int, start: int, end: int = -1) -> None:
        assert end == -1
        self.held[seq] = min(self.held.get(seq, 0), start)

    def seq_copy(self, src: int, dst: int, start: int = 0, end: int = -1) -> None:
        assert start == 0 and end <= self.held.get(src, 0)
        self.held[dst] = end


def _prompt(head: list[int], text_id: int, length: int) -> list[int]:
    return head + [1000 * text_id + i for i in range(length)]


def _insert(cache: PrefixCache, kv: FakeKv, seq: int, tokens: list[int], shared: int = 0) -> list[int]:
    """Decode ``tokens`` into ``seq`` (as a request's prefill would) and offer them to the cache."""
    kv.held[seq] = len(tokens)
    cache.insert(tokens, seq, shared=shared)
    return tokens


HEAD_A = list(range(100))            # template + system prompt + schema hint of one schema
HEAD_B = list(range(20)) + list(range(500, 560))   # same template, another hint


def test_the_newest_prompt_stays_whole_and_older_ones_keep_their_heads() -> None:
    kv = FakeKv()
    cache = PrefixCache(kv, [10, 11, 12])
    first = _insert(cache, kv, 0, _prompt(HEAD_A, 1, 40), len(HEAD_A))
    entry, hit = cache.lookup(first)
    assert hit == len(first) and kv.held[entry.seq] == len(first)      # asked again: a full hit
    second = _insert(cache, kv, 1, _prompt(HEAD_B, 2, 40), len(HEAD_B))
    older = next(e for e in cache.entries if e.tokens[20] == HEAD_A[20])
    assert len(older.tokens) == len(HEAD_A) == kv.held[older.seq]       # its own text dropped, its head kept
    assert cache.lookup(_prompt(HEAD_A, 3, 40))[1] == len(HEAD_A)
    assert cache.lookup(second)[1] == len(second)


def test_a_start_shared_by_two_prompts_is_kept_past_the_head() -> None:
    kv = FakeKv()
    cache = PrefixCache(kv, [10, 11, 12])
    instruction = [7, 7, 7, 8, 9]     # "Extract the data ... Text:" opening both texts
    _insert(cache, kv, 0, _prompt(HEAD_A + instruction, 1, 30), len(HEAD_A))
    _insert(cache, kv, 1, _prompt(HEAD_A + instruction, 2, 30), len(HEAD_A))
    three = _insert(cache, kv, 2, _prompt(HEAD_B, 3, 30), len(HEAD_B))
    # the two A prompts became one entry holding the head and the instruction; the newest stays whole
    kept = sorted(len(e.tokens) for e in cache.entries)
    assert kept == [len(HEAD_A) + len(instruction), len(three)]
    assert cache.lookup(_prompt(HEAD_A + instruction, 4, 30))[1] == len(HEAD_A) + len(instruction)
    assert len(cache._free) == 1


def test_a_long_text_is_not_kept_past_its_head() -> None:
    kv = FakeKv()
    cache = PrefixCache(kv, [10, 11])
    _insert(cache, kv, 0, _prompt(HEAD_A, 1, TAIL_CELLS + 1), len(HEAD_A))
    assert [len(e.tokens) for e in cache.entries] == [len(HEAD_A)]
    short = _insert(cache, kv, 1, _prompt(HEAD_B, 2, TAIL_CELLS), len(HEAD_B))
    assert sorted(len(e.tokens) for e in cache.entries) == [len(HEAD_A), len(short)]


def test_a_pinned_entry_is_cut_no_shorter_than_what_live_requests_copied() -> None:
    kv = FakeKv()
    cache = PrefixCache(kv, [10, 11, 12])
    first = _insert(cache, kv, 0, _prompt(HEAD_A, 1, 40), len(HEAD_A))
    entry, hit = cache.lookup(first)
    cache.reuse(entry, 5, hit)                      # a live request copied all of it
    _insert(cache, kv, 1, _prompt(HEAD_B, 2, 40), len(HEAD_B))
    assert len(entry.tokens) == len(first) == kv.held[entry.seq]
    cache.unpin(entry)
    cache.reuse(entry, 6, 30)                       # another copies only the template's start
    _insert(cache, kv, 2, _prompt(HEAD_B, 3, 40), len(HEAD_B))
    assert len(entry.tokens) == len(HEAD_A) == kv.held[entry.seq]   # cut while in use, not below its head
    assert entry in cache.entries
    cache.unpin(entry)


def test_raw_prompts_with_nothing_shared_leave_no_empty_entries() -> None:
    kv = FakeKv()
    cache = PrefixCache(kv, [10, 11, 12])
    _insert(cache, kv, 0, [1, 2, 3])
    _insert(cache, kv, 1, [4, 5, 6])
    assert [e.tokens.tolist() for e in cache.entries] == [[4, 5, 6]]
    assert len(cache._free) == 2


def test_a_prompts_shared_head_ends_where_its_last_text_begins(model: structgen.LlamaCpp) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    text = "Alice Moreau, 34, lives in Lyon."
    job = prepare(model, build_request(model, text, schema, system="You extract people."))
    n = shared_head(model, job.request, job.tokens)
    head, tail = model.detokenize(job.tokens[:n]), model.detokenize(job.tokens[n:])
    assert "You extract people." in head and schema_hint_start(job) in head
    assert text in tail and "You extract" not in tail

    turns = [{"role": "user", "content": "Who is in the text?"}, {"role": "assistant", "content": "Alice."},
             {"role": "user", "content": text}]
    job = prepare(model, build_request(model, turns, schema))
    n = shared_head(model, job.request, job.tokens)
    head, tail = model.detokenize(job.tokens[:n]), model.detokenize(job.tokens[n:])
    assert "Who is in the text?" in head and "Alice." in head
    assert text in tail

    raw = prepare(model, build_request(model, text, None, chat=False))
    assert shared_head(model, raw.request, raw.tokens) == 0


def schema_hint_start(job: Job) -> str:
    hint = job.request.schema.prompt_hint
    assert hint
    return hint[:20]


def test_a_warm_prefill_is_never_a_batch_llama_cpp_runs_slowly(model: structgen.LlamaCpp) -> None:
    cached = structgen.LlamaCpp(model.path, n_ctx=2048, n_seq_max=2, prefix_cache=2, kv_unified=True)
    assert cached.min_prefill == 64     # CPU, flash attention on (the unified cache keeps it)
    schema = structgen.Choice(["Amsterdam", "Lisbon", "Rome"])
    system = "You read short travel notes and say which city they are about. " * 3
    notes = ["We walked along the canals, ate stroopwafels, visited the flower market and rented bikes near the "
             "central station for the whole sunny day.",
             "The yellow tram climbed past tiled houses to the old castle; at night we heard fado in a small, "
             "crowded bar in Alfama."]
    try:
        first, second = (generate(n, schema, model=cached, system=system, seed=1, max_tokens=64) for n in notes)
        heads = [e.shared for e in cached.scheduler.cache.entries]
    finally:
        cached.close()
    rest = second.timings.prompt_tokens - second.timings.prefix_hit_tokens
    assert second.timings.prefix_hit_tokens > 0 and first.timings.prompt_tokens > 64
    assert not 32 <= rest < 64, rest           # 32-63 tokens: re-decode some cached ones, send 64
    # submit worked out each prompt's head (template, system prompt, hint), shorter than the prompt
    assert heads and all(0 < h < first.timings.prompt_tokens for h in heads), heads
