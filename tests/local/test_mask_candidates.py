"""``decode.candidates``: a token bitmask as the shorter of its allowed and blocked id lists."""

from __future__ import annotations

import numpy as np
import pytest

from structgen.local.decode import candidates

N_VOCAB = 49_152 + 17     # not a multiple of 32: the last word has padding bits


def _mask(allowed: np.ndarray) -> np.ndarray:
    bits = np.zeros(((N_VOCAB + 31) // 32) * 32, dtype=np.uint8)
    bits[allowed] = 1
    return np.packbits(bits, bitorder="little").view(np.int32).copy()


@pytest.mark.parametrize("share", [0.0, 0.0001, 0.01, 0.3, 0.6, 0.97, 0.9999, 1.0])
def test_candidates_are_exactly_the_mask(share: float) -> None:
    rng = np.random.default_rng(int(share * 10_000))
    allowed = np.flatnonzero(rng.random(N_VOCAB) < share)
    mask = _mask(allowed)
    if share == 1.0:
        mask[-1] = -1    # padding bits set too (as a full row may be): they are not tokens
    ids, blocked = candidates(mask, N_VOCAB)
    if blocked is None:
        assert ids is not None
        assert np.array_equal(ids, allowed), "allowed ids ascend and are exactly the mask's"
    else:
        assert ids is None
        assert np.array_equal(blocked, np.setdiff1d(np.arange(N_VOCAB), allowed)), "blocked: every other id"
    if share >= 0.9999:
        assert blocked is not None, "a mostly-open mask is given by its blocked ids"
    if share <= 0.3:
        assert ids is not None


def test_a_string_body_mask_lists_few_blocked_ids() -> None:
    allowed = np.setdiff1d(np.arange(N_VOCAB), [34, 92, 10, 13, 40_000])    # all but quote, backslash, ...
    ids, blocked = candidates(_mask(allowed), N_VOCAB)
    assert ids is None and blocked is not None
    assert blocked.tolist() == [10, 13, 34, 92, 40_000]
