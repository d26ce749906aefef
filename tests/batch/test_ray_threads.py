"""``RayExecutor``'s actors run on the CPUs Ray reserved for them (no Ray needed: the options the actors get)."""

from __future__ import annotations

from structgen.batch.ray import RayExecutor


def test_an_actor_engine_takes_as_many_threads_as_cpus_reserved() -> None:
    assert RayExecutor(None, {"n_ctx": 2048}, cpus_per_worker=1)._engine() == {"n_ctx": 2048, "n_threads": 1}
    assert RayExecutor(None, {"n_threads": None}, cpus_per_worker=2)._engine()["n_threads"] == 2
    assert RayExecutor(None, {}, cpus_per_worker=0.5)._engine()["n_threads"] == 1   # a fraction still runs


def test_explicit_threads_win() -> None:
    assert RayExecutor(None, {"n_threads": 3}, cpus_per_worker=1)._engine()["n_threads"] == 3
