"""Flash attention: off by default on CPU with one KV stream per sequence (llama.cpp's CPU kernel is the slower one),
on where a unified cache or a quantised one needs it."""

from __future__ import annotations

import numpy as np
import pytest

import structgen
from structgen.local.binding import LlamaContext, LlamaModel


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
    assert model.n_gpu_layers == 0 and model.kv_unified and model.flash_attn is None   # llama.cpp's choice: on
    with pytest.raises(structgen.InvalidArgument, match="kv_unified=False"):
        structgen.LlamaCpp(model.path, flash_attn=False, n_ctx=512)
    with pytest.raises(structgen.InvalidArgument, match="flash attention"):
        structgen.LlamaCpp(model.path, deterministic=True, flash_attn=False, n_ctx=512)
    streams = structgen.LlamaCpp(model.path, kv_unified=False, n_ctx=512, n_seq_max=2, prefix_cache=0)
    det = structgen.LlamaCpp(model.path, deterministic=True, n_ctx=512, n_seq_max=1)
    try:
        assert streams.flash_attn is False and det.flash_attn is True
    finally:
        streams.close()
        det.close()


@pytest.mark.parametrize(("kv_unified", "flash_attn"), [(True, None), (False, False)])
def test_a_co_batched_sibling_does_not_move_a_sequences_logits(model: structgen.LlamaCpp, kv_unified: bool,
                                                               flash_attn: bool | None) -> None:
    # Why the unified cache keeps flash attention: without it llama.cpp let a sibling sharing the prompt's cells,
    # decoded in the same batch, move this sequence's logits by ~0.5.
    llama = LlamaModel(model.path)
    ctx = LlamaContext(llama, n_ctx=512, n_seq_max=3, n_threads=1, kv_unified=kv_unified, flash_attn=flash_attn)
    try:
        prompt = llama.tokenize("Is the sky blue? Answer:", add_special=False, parse_special=False)
        mine = llama.tokenize(" yes, it is", add_special=False, parse_special=False)
        sibling = llama.tokenize(" no", add_special=False, parse_special=False)
        ctx.decode_sequence(prompt + mine, 0, 0)
        alone = np.array(ctx.logits(-1))
        ctx.clear()
        ctx.decode_sequence(prompt, 0, 0)
        ctx.seq_copy(0, 1, 0, len(prompt))
        ctx.seq_copy(0, 2, 0, len(prompt))
        items = [(t, len(prompt) + i, 2, False) for i, t in enumerate(sibling)]
        items += [(t, len(prompt) + i, 1, i == len(mine) - 1) for i, t in enumerate(mine)]
        ctx.decode(items)
        together = np.array(ctx.logits(len(items) - 1))
    finally:
        ctx.close()
        llama.close()
    assert np.abs(alone - together).max() < 1e-3
