"""Experiments on top of the engine: option probabilities (``probs``) and determinism reports."""

from .probs import OptionProbs, probs

__all__ = ["OptionProbs", "probs"]
