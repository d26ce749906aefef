"""Flash attention: off by default on CPU with one KV stream per sequence (llama.cpp's CPU kernel is the slower one),
on for a unified cache (where it keeps a sequence's logits independent of where its cells sit) and a quantised one."""

from __future__ import annotations

import numpy as np
import pytest

import structgen
from structgen.local.binding import LlamaContext, LlamaModel
from structgen.local.llamacpp import KV_STREAMS_BUDGET, STREAMS_PREFIX_CACHE, STREAMS_SEQ_MAX


def _last_logits(model: LlamaModel, tokens: list[int], *, flash_attn: bool | None) -> np.ndarray:
    ctx = LlamaContext(model, n_ctx=512, n_batch=128, flash_attn=flash_attn)
    try:
        # a prompt past 64 tokens and a short continuation: both of llama.cpp's CPU flash-attention paths
        ctx.decode_sequence(tokens[:80], 0)
        ctx.decode_sequence(tokens[80:], 80)
        return np.array(ctx.logits(-1))
    finally:
        ctx.close()


def test_the_flag_changes_the_kernel_not_the_answer(model: structgen.LlamaCpp) -> None:
    llama = LlamaModel(model.path)
    try:
        text = "The invoice lists ten reams of paper, one stapler and a box of pens. " * 6
        tokens = llama.tokenize(text, add_special=False, parse_special=False)[:100]
        with_fa = _last_logits(llama, tokens, flash_attn=True)
        without = _last_logits(llama, tokens, flash_attn=False)
    finally:
        llama.close()
    assert not np.array_equal(with_fa, without)        # a different kernel ran
    p, q = _softmax(with_fa), _softmax(without)
    assert float((p * (np.log(p) - np.log(q))).sum()) < 0.05   # the same attention, to rounding (KL ~1e-4 here)
    assert int(with_fa.argmax()) == int(without.argmax())


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64) - logits.max())
    return e / e.sum()


def test_cpu_default_is_off_only_with_one_stream_per_sequence(model: structgen.LlamaCpp) -> None:
    # The default on CPU: one KV stream per sequence (it fits the budget), flash attention off.
    assert model.n_gpu_layers == 0 and not model.kv_unified and model.flash_attn is False
    assert model.min_prefill == 1 and model.n_seq_max == STREAMS_SEQ_MAX
    per_stream = model._model.kv_bytes_per_token * (STREAMS_SEQ_MAX + STREAMS_PREFIX_CACHE)
    big = structgen.LlamaCpp(model.path, n_ctx=KV_STREAMS_BUDGET // per_stream + 512)   # too much for a stream each
    try:   # a shared cache then, with llama.cpp's choice of flash attention (on)
        assert big.kv_unified and big.flash_attn is None and big.min_prefill == 64 and big.n_seq_max == 16
    finally:
        big.close()
    with pytest.raises(structgen.InvalidArgument, match="flash attention"):
        structgen.LlamaCpp(model.path, deterministic=True, flash_attn=False, n_ctx=512)
    streams = structgen.LlamaCpp(model.path, kv_unified=False, n_ctx=512, n_seq_max=2, prefix_cache=0)
    det = structgen.LlamaCpp(model.path, deterministic=True, n_ctx=512, n_seq_max=1)
    fast = structgen.LlamaCpp(model.path, flash_attn=False, n_ctx=512, n_seq_max=2, kv_unified=True)   # allowed
    try:
        assert streams.flash_attn is False and det.flash_attn is True
        assert fast.kv_unified and fast.flash_attn is False and fast.min_prefill == 1
        assert structgen.generate("Is the sky blue?", structgen.Choice(["yes", "no"]), model=fast).value in {"yes", "no"}
    finally:
        streams.close()
        det.close()
        fast.close()


# Where a sequence's cells sit in the cache: right after its prompt (alone), one to five cells later because
# another sequence's tokens took the cells first (decoded before it, or in the same batch), or sharing the
# prompt's cells with a sibling decoded beside it.
PLACEMENTS = ("after another sequence", "beside a sibling", "beside a sibling sharing the prompt")


def _continuation_logits(llama: LlamaModel, *, kv_unified: bool, flash_attn: bool | None,
                         placement: str | None) -> np.ndarray:
    ctx = LlamaContext(llama, n_ctx=512, n_seq_max=3, n_threads=1, kv_unified=kv_unified, flash_attn=flash_attn)
    try:
        prompt = llama.tokenize("Is the sky blue? Answer:", add_special=False, parse_special=False)
        mine = llama.tokenize(" yes, it is", add_special=False, parse_special=False)
        other = llama.tokenize(" no", add_special=False, parse_special=False)
        ctx.decode_sequence(prompt, 0, 0)
        items = [(t, len(prompt) + i, 0, i == len(mine) - 1) for i, t in enumerate(mine)]
        if placement == "after another sequence":
            ctx.decode_sequence(other, 0, 2)
        elif placement == "beside a sibling":
            items = [(t, i, 2, False) for i, t in enumerate(other)] + items
        elif placement == "beside a sibling sharing the prompt":
            ctx.seq_copy(0, 2, 0, len(prompt))
            items = [(t, len(prompt) + i, 2, False) for i, t in enumerate(other)] + items
        ctx.decode(items)
        return np.array(ctx.logits(len(items) - 1))
    finally:
        ctx.close()


def _alone_and_moved(model: structgen.LlamaCpp, *, kv_unified: bool, flash_attn: bool | None,
                     placement: str) -> tuple[np.ndarray, np.ndarray]:
    """The continuation's logits right after its prompt, and at ``placement``, in fresh contexts."""
    llama = LlamaModel(model.path)
    try:
        alone = _continuation_logits(llama, kv_unified=kv_unified, flash_attn=flash_attn, placement=None)
        return alone, _continuation_logits(llama, kv_unified=kv_unified, flash_attn=flash_attn, placement=placement)
    finally:
        llama.close()


@pytest.mark.parametrize(("kv_unified", "flash_attn"), [(True, None), (False, False)])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_where_a_sequences_cells_sit_does_not_change_its_logits(model: structgen.LlamaCpp, kv_unified: bool,
                                                                 flash_attn: bool | None, placement: str) -> None:
    # The defaults: flash attention on a unified cache, one stream per sequence without it.
    alone, moved = _alone_and_moved(model, kv_unified=kv_unified, flash_attn=flash_attn, placement=placement)
    assert np.array_equal(alone, moved)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_without_flash_attention_a_unified_cache_rounds_by_placement(model: structgen.LlamaCpp,
                                                                      placement: str) -> None:
    # flash_attn=False on a unified cache: the sum over cells runs in SIMD lanes picked by cell index, so a shift
    # of a few cells rounds differently (~0.5 on a logit with this model) -- rounding, not another sequence's
    # content: the distribution stays the same to a KL of ~1e-3 and the top token does not move.
    alone, moved = _alone_and_moved(model, kv_unified=True, flash_attn=False, placement=placement)
    p, q = _softmax(alone), _softmax(moved)
    assert float((p * (np.log(p) - np.log(q))).sum()) < 0.02
    assert int(alone.argmax()) == int(moved.argmax())
