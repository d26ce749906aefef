"""Grammar engines behind one Matcher contract; pick one by name with ``get_backend``."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import InvalidArgument
from .base import Backend, Matcher, MatcherFactory, Vocab


def _llguidance() -> Backend:
    from .llguidance import LLGuidanceBackend

    return LLGuidanceBackend()


def _outlines_core() -> Backend:
    from .outlines_core import OutlinesCoreBackend

    return OutlinesCoreBackend()


BACKENDS: dict[str, Callable[[], Backend]] = {
    "llguidance": _llguidance,
    "outlines-core": _outlines_core,
}


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise InvalidArgument(f"unknown matcher backend {name!r}; choose from {sorted(BACKENDS)}") from None


__all__ = ["BACKENDS", "Backend", "Matcher", "MatcherFactory", "Vocab", "get_backend"]
