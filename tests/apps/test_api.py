"""The public surface of ``structgen.apps``."""

from __future__ import annotations

import inspect

import structgen
import structgen.apps as apps


def test_all_is_sorted_complete_and_documented() -> None:
    assert apps.__all__ == sorted(apps.__all__)
    public = {n for n in dir(apps) if not n.startswith("_") and (n[0].isupper() or n.startswith(("text_", "verify_")))}
    assert public == set(apps.__all__)
    for name in apps.__all__:
        assert (getattr(apps, name).__doc__ or "").strip(), name


def test_signatures_match_the_issue() -> None:
    assert list(inspect.signature(apps.text_to_regex).parameters)[:5] == [
        "description", "examples", "counters", "n", "model"]
    assert list(inspect.signature(apps.text_to_sql).parameters)[:5] == ["question", "db", "n", "execute", "model"]


def test_errors_are_typed_generation_errors() -> None:
    for err in (apps.RegexNotVerified, apps.SqlNotVerified):
        assert issubclass(err, structgen.GenerationError) and issubclass(err, structgen.StructgenError)
    assert issubclass(structgen.UnsafeSQL, structgen.StructgenError)
    assert issubclass(structgen.DatabaseError, structgen.StructgenError)
