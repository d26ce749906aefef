"""Run a batch on a Ray cluster with Ray Data (``pip install 'structgen[ray]'``).

The lines not yet done become a Ray Dataset; ``map_batches`` runs them over a pool of actors, each of which loads
the model once and runs its batch of lines concurrently on its own engine (``structgen.batch.executors``). A
line's failure comes back as an error row, never as an exception that fails the job; an actor or node that is
lost is restarted and its batch retried (``max_restarts`` / ``max_task_retries``). The rows come back to the driver,
which writes them like a local run (``structgen.batch.run``), so a resume works the same, and a line that a retried
batch ran twice is written once. Each success records the Ray node that made it (``body.structgen.node_id``).

The model must be reachable on every node: the bundled model comes with the package; a path must exist on each
node. Before the job, one probe task per node checks that it can open the model, so a node that cannot fails the job
at once with its name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, InvalidArgument, ModelNotFound
from .executors import run_window
from .lines import BatchLine
from .plans import PlannedLine, plan_line
from .results import Outcome, error_line

__all__ = ["RayExecutor", "require_ray"]

INSTALL = "pip install 'structgen[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or an ``InvalidArgument`` saying how to install it."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise InvalidArgument(f"--ray needs Ray Data, which is not installed: {INSTALL}")
    import ray
    import ray.data

    return ray


@dataclass
class RayExecutor:
    """Runs the lines over ``workers`` actors on the Ray cluster at ``address`` (None: start or join a local
    one; ``"auto"``: the cluster this machine belongs to). ``model``: a GGUF path that exists on every node, or
    None for the bundled model; ``engine``: ``LlamaCpp``'s keyword options. ``batch_size``: lines per actor call
    (each actor runs a call's lines together; a lost call is run again whole). Each actor's engine runs on as many
    threads as the CPUs Ray reserved for it (``cpus_per_worker``, at least 1) unless ``engine`` sets ``n_threads``:
    llama.cpp would otherwise take every core of its node, and two actors on one node would fight over them."""

    model: str | None
    engine: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 8
    max_tokens_cap: int = 2048
    timeout: float | None = None

    def __call__(self, pending: list[PlannedLine], emit: Callable[[Outcome], None]) -> None:
        """Run ``pending`` on the cluster; emit each row as it reaches the driver."""
        if not pending:
            return
        ray = require_ray()
        started = not ray.is_initialized()
        if started:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:   # no cluster there (yet), or a bad address
                raise _connect_error(ray, self.address, exc) from exc
        try:
            self._run(ray, pending, emit)
        except ray.exceptions.RayError as exc:   # the cluster failed the job (not a line: those are error rows)
            raise BackendError(f"the Ray job failed: {str(exc).splitlines()[0]}", retryable=True) from exc
        finally:
            if started:
                ray.shutdown()

    def _engine(self) -> dict[str, Any]:
        """The actors' ``LlamaCpp`` options: ``engine``, with ``n_threads`` the reserved CPUs when it is unset."""
        if self.engine.get("n_threads"):
            return dict(self.engine)
        return {**self.engine, "n_threads": max(1, int(self.cpus_per_worker))}

    def _run(self, ray: Any, pending: list[PlannedLine], emit: Callable[[Outcome], None]) -> None:
        probe_nodes(ray, self.model)
        from ray.data import ActorPoolStrategy, DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        rows = [{"line": p.line.line, "custom_id": p.line.custom_id, "url": p.line.url,
                 "body": json.dumps(p.line.body)} for p in pending]
        blocks = max(1, min(len(rows), -(-len(rows) // self.batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        version = _version(ray)
        pool: dict[str, Any] = ({"compute": ActorPoolStrategy(size=self.workers)} if version >= (2, 51)
                                else {"concurrency": self.workers})
        if version < (2, 60):   # from 2.60 these are an actor pool's defaults, and passing them is deprecated
            pool.update(max_restarts=-1, max_task_retries=-1)
        out = ds.map_batches(
            LineWorker, batch_size=self.batch_size, batch_format="pandas", num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker or None,
            fn_constructor_kwargs={"model": self.model, "engine": self._engine(), "max_tokens_cap": self.max_tokens_cap,
                                   "timeout": self.timeout}, **pool)
        for row in out.iter_rows():
            record = json.loads(row["record"])
            emit(Outcome(row["custom_id"], record, ok=bool(row["ok"]), prompt_tokens=int(row["prompt_tokens"]),
                         completion_tokens=int(row["completion_tokens"])))


def _check_reachable(address: str | None) -> None:
    """Fail at once, typed, when ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) takes no TCP connection: Ray's
    own client retries an unreachable cluster for minutes before it gives up."""
    if not address or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise BackendError(f"could not connect to the Ray cluster at {address}: {exc}", retryable=True) from exc


def _connect_error(ray: Any, address: str | None, exc: Exception) -> BackendError:
    """What ``ray.init`` failing to join the cluster means, typed. A cluster with token authentication is the case
    users meet: ``ray start`` turns it on once a token exists (``~/.ray/auth_token``), but a driver given an explicit
    address never does so by itself, and Ray then reports only that it failed to connect."""
    where = f"at {address}" if address else "on this machine"
    auth = getattr(ray.exceptions, "AuthenticationError", ())   # absent from older Ray
    chain: list[BaseException] = [exc]
    while len(chain) < 16 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)   # type: ignore[arg-type]
    # Ray 2.60 wraps the AuthenticationError's traceback as text in a RuntimeError: both forms are looked for.
    if any(isinstance(e, auth) or "AuthenticationError" in str(e) or "InvalidAuthToken" in str(e) for e in chain):
        return BackendError(f"the Ray cluster {where} requires token authentication and this process has no token "
                            "for it: set RAY_AUTH_MODE=token, with the cluster's token in RAY_AUTH_TOKEN or "
                            "~/.ray/auth_token (see Ray's token-auth docs)", retryable=False)
    return BackendError(f"could not connect to the Ray cluster {where}: {str(exc).splitlines()[0]}", retryable=True)


def _version(ray: Any) -> tuple[int, ...]:
    """Ray's (major, minor): 2.51+ prefers ``compute=ActorPoolStrategy(size=N)``, 2.9-2.50 ``concurrency=N``."""
    return tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())


def probe_nodes(ray: Any, model: str | None) -> None:
    """Check that every alive node with CPUs can find ``model``; raise ``ModelNotFound`` naming those that
    cannot. A node that leaves before its probe runs is passed over: no worker will be placed there either."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_find_model)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:12]: probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(model) for n in nodes}
    missing: dict[str, str] = {}
    for node, ref in refs.items():
        try:
            problem = ray.get(ref)
        except (ray.exceptions.TaskUnschedulableError, ray.exceptions.NodeDiedError):
            continue   # the node left between the listing and the probe (Ray lists a removed node for a while)
        if problem:
            missing[node] = problem
    if missing:
        said = "; ".join(f"node {node}: {problem}" for node, problem in missing.items())
        raise ModelNotFound(f"the model must exist on every Ray node: {said}")


def _find_model(model: str | None) -> str | None:
    """On a node: None if ``model`` can be found there, else why not."""
    from ..local.models import resolve_model_path

    try:
        path = resolve_model_path(model)
    except ModelNotFound as exc:
        return str(exc)
    return None if path.is_file() else f"no model file at {path}"


class LineWorker:
    """A Ray Data actor: loads the model once, then runs each batch of lines concurrently on its engine."""

    def __init__(self, model: str | None, engine: dict[str, Any], max_tokens_cap: int, timeout: float | None) -> None:
        import ray

        from ..local.llamacpp import LlamaCpp

        self.model = LlamaCpp(model, **engine)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.max_tokens_cap, self.timeout = max_tokens_cap, timeout

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        """Run one batch (a pandas frame of lines); one result row per line, errors included."""
        outcomes: list[Outcome] = []
        planned: list[PlannedLine] = []
        for row in batch.to_dict("records"):
            line = BatchLine(int(row["line"]), str(row["custom_id"]), str(row["url"]), json.loads(row["body"]))
            try:
                planned.append(PlannedLine(line, plan_line(line, max_tokens_cap=self.max_tokens_cap,
                                                           timeout=self.timeout)))
            except Exception as exc:   # checked on the driver already; a failure here is still a row, not a crash
                outcomes.append(Outcome(line.custom_id, error_line(line.custom_id, type(exc).__name__, str(exc)),
                                        ok=False))
        asyncio.run(run_window(self.model, planned, outcomes.append, window=self.model.n_seq_max,
                               extra={"node_id": self.node_id}))
        return {"custom_id": [o.custom_id for o in outcomes], "ok": [o.ok for o in outcomes],
                "record": [json.dumps(o.record, ensure_ascii=False) for o in outcomes],
                "prompt_tokens": [o.prompt_tokens for o in outcomes],
                "completion_tokens": [o.completion_tokens for o in outcomes]}
