"""A stand-in model that writes a script: logits over the real vocabulary that favour the script's next token."""

from __future__ import annotations

import numpy as np

from structgen.testing.random_logits import RandomLogitsModel


class ScriptedModel(RandomLogitsModel):
    """Logits that favour the next token of ``script`` by how many tokens the sequence has generated (so a model
    taken back replays its script from there), with ``fallback`` as the second choice everywhere."""

    def __init__(self, script: list[int], fallback: list[int]) -> None:
        super().__init__(seed=0)
        self.script, self.fallback = script, fallback
        self.origin = 0
        self.generated: dict[int, int] = {}

    def _row(self, n: int) -> np.ndarray:
        row = np.zeros(self.n_vocab, dtype=np.float32)
        for i, token in enumerate(self.fallback):
            row[token] = 10.0 - i
        if n < len(self.script):
            row[self.script[n]] = 20.0
        return row

    def prefill(self, tokens: list[int]) -> np.ndarray:   # type: ignore[override]
        self.origin = len(tokens)
        self.generated = {0: 0}
        return self._row(0)

    def decode(self, items):  # type: ignore[no-untyped-def]
        out = []
        for seq, tokens, start, *_rows in items:
            self.generated[seq] = start + len(tokens) - self.origin
            out.append(self._row(self.generated[seq]))
        return out

    def tokens(self, text: str) -> list[int]:
        """``text`` in this vocabulary's tokens."""
        return list(self._model.tokenize(text, add_special=False, parse_special=False))
