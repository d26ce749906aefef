"""Flash attention: off by default on CPU (llama.cpp's CPU kernel is the slower one), on where a cache needs it."""

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


def test_cpu_default_is_off_and_a_quantised_cache_keeps_it_on(model: structgen.LlamaCpp) -> None:
    assert model.n_gpu_layers == 0 and model.flash_attn is False
    with pytest.raises(structgen.InvalidArgument, match="flash attention"):
        structgen.LlamaCpp(model.path, deterministic=True, flash_attn=False, n_ctx=512)
    det = structgen.LlamaCpp(model.path, deterministic=True, n_ctx=512, n_seq_max=1)
    try:
        assert det.flash_attn is True
    finally:
        det.close()
