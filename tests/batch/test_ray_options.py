"""``RayExecutor`` before any Ray job: its actors run on the CPUs Ray reserved for them, and a cluster that is not
there is a typed error at once (no Ray cluster needed)."""

from __future__ import annotations

from structgen.batch.ray import RayExecutor


def test_an_actor_engine_takes_as_many_threads_as_cpus_reserved() -> None:
    assert RayExecutor(None, {"n_ctx": 2048}, cpus_per_worker=1)._engine() == {"n_ctx": 2048, "n_threads": 1}
    assert RayExecutor(None, {"n_threads": None}, cpus_per_worker=2)._engine()["n_threads"] == 2
    assert RayExecutor(None, {}, cpus_per_worker=0.5)._engine()["n_threads"] == 1   # a fraction still runs


def test_explicit_threads_win() -> None:
    assert RayExecutor(None, {"n_threads": 3}, cpus_per_worker=1)._engine()["n_threads"] == 3


def test_an_unreachable_cluster_is_a_typed_error_at_once() -> None:
    import socket
    import time

    import pytest

    import structgen

    with socket.socket() as s:        # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(structgen.BackendError, match="could not connect to the Ray cluster"):
            RayExecutor(None, {}, address=f"127.0.0.1:{port}")([object()], lambda o: None)  # type: ignore[list-item]
    assert time.monotonic() - started < 60    # Ray's own client would retry for minutes
    with pytest.raises(structgen.InvalidArgument, match="--address"):
        RayExecutor(None, {}, address="nowhere")([object()], lambda o: None)  # type: ignore[list-item]


class _ListedButGone:
    """What ``probe_nodes`` sees of a cluster just after a node was removed: Ray still lists it as alive, and a
    task pinned to it is unschedulable (the race a real cluster shows for a few seconds after ``remove_node``)."""

    def __init__(self) -> None:
        import ray.exceptions

        self.exceptions = ray.exceptions

    def nodes(self) -> list[dict[str, object]]:
        return [{"Alive": True, "Resources": {"CPU": 1}, "NodeID": node * 28, "NodeManagerAddress": "127.0.0.1"}
                for node in ("aa", "bb")]

    def remote(self, **_: object) -> object:
        class Probe:
            def options(self, *, scheduling_strategy: object) -> object:
                node = scheduling_strategy.node_id  # type: ignore[attr-defined]

                class Call:
                    def remote(self, model: object) -> tuple[str, object]:
                        return node, model

                return Call()

        return lambda fn: Probe()

    def get(self, ref: tuple[str, object]) -> str | None:
        node, model = ref
        if node.startswith("bb"):
            raise self.exceptions.TaskUnschedulableError("The node specified via NodeAffinitySchedulingStrategy "
                                                         "doesn't exist any more")
        return None if model == "here.gguf" else f"no model file at {model}"


def test_a_node_gone_before_its_probe_is_passed_over() -> None:
    import pytest

    import structgen
    from structgen.batch.ray import probe_nodes

    pytest.importorskip("ray")
    probe_nodes(_ListedButGone(), "here.gguf")          # the remaining node has it: no error
    with pytest.raises(structgen.ModelNotFound, match=r"every Ray node: node 127\.0\.0\.1 aaaaaaaaaaaa"):
        probe_nodes(_ListedButGone(), "missing.gguf")   # the remaining node lacks it: named, the gone one not
