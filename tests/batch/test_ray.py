"""``--ray`` on a real local Ray cluster: ``ray.cluster_utils.Cluster`` with a head and a second node of 1 CPU each.

Slow (a cluster takes ~20 s to start on 2 cores, and every actor loads the model): ``make test-slow``. Never under
pytest-xdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import structgen
from structgen.batch import AsyncExecutor, JobOptions, read_batch_file, run_job

from .conftest import PERSON, people_file, read_lines

# Ray Data warns about its own deprecated settings as it reads its context (DeprecationWarning from ray.data).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ray = pytest.importorskip("ray", reason="structgen[ray] is not installed")

ENGINE: dict[str, Any] = {"n_ctx": 1024, "n_seq_max": 2, "deterministic": True}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def contents(path: Path) -> dict[str, str]:
    return {r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in read_lines(path)}


def test_rows_run_on_both_nodes_and_match_the_local_run(tmp_path: Path, cluster: Any) -> None:
    from structgen.batch.ray import RayExecutor

    src = people_file(tmp_path / "in.jsonl", 6)
    lines, problems = read_batch_file(src)
    summary = run_job(lines, problems, source=str(src), manifest={"m": 1},
                      executor=RayExecutor(None, ENGINE, workers=2, batch_size=1),
                      options=JobOptions(tmp_path / "ray.jsonl"))
    assert summary.valid == 6
    results = read_lines(tmp_path / "ray.jsonl")
    nodes = {r["response"]["body"]["structgen"]["node_id"] for r in results}
    assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}   # the work spread over both nodes
    local = structgen.LlamaCpp(**ENGINE)
    try:
        run_job(lines, problems, source=str(src), manifest={"m": 1}, executor=AsyncExecutor(local),
                options=JobOptions(tmp_path / "local.jsonl"))
    finally:
        local.close()
    assert contents(tmp_path / "ray.jsonl") == contents(tmp_path / "local.jsonl")   # deterministic mode: same bytes


def test_a_node_removed_mid_job_loses_and_doubles_nothing(tmp_path: Path, cluster: Any) -> None:
    from structgen.batch.ray import RayExecutor

    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    n = 10
    src = people_file(tmp_path / "in.jsonl", n)
    out = tmp_path / "out.jsonl"
    lines, problems = read_batch_file(src)

    def remove_once_work_is_flowing() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(read_lines(out)) < 2:
            time.sleep(0.2)
        cluster.remove_node(extra, allow_graceful=False)

    killer = threading.Thread(target=remove_once_work_is_flowing, daemon=True)
    killer.start()
    summary = run_job(lines, problems, source=str(src), manifest={"m": 1},
                      executor=RayExecutor(None, ENGINE, workers=2, batch_size=1), options=JobOptions(out))
    killer.join(timeout=60)
    results, errors = read_lines(out), read_lines(tmp_path / "out.errors.jsonl")
    assert sorted(r["custom_id"] for r in results + errors) == sorted(f"p{i}" for i in range(n))
    assert summary.valid == len(results) == n
    for r in results:
        jsonschema.validate(json.loads(r["response"]["body"]["choices"][0]["message"]["content"]), PERSON)


def test_a_model_missing_on_the_nodes_fails_early(tmp_path: Path, cluster: Any) -> None:
    from structgen.batch.ray import RayExecutor

    src = people_file(tmp_path / "in.jsonl", 1)
    lines, problems = read_batch_file(src)
    with pytest.raises(structgen.ModelNotFound, match="every Ray node"):
        run_job(lines, problems, source=str(src), manifest={"m": 1},
                executor=RayExecutor(str(tmp_path / "missing.gguf"), ENGINE), options=JobOptions(tmp_path / "o.jsonl"))


def _cluster_env(mode: str, token: str = "") -> dict[str, str]:
    """The environment of a process of the test cluster, with Ray's token authentication set explicitly: ``ray
    start`` turns it on by itself when ``~/.ray/auth_token`` exists, so leaving it to the machine would make the
    test depend on what ran there before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = mode
    if token:
        env["RAY_AUTH_TOKEN"] = token
    return env


def test_cli_on_a_cluster_started_with_ray_start(tmp_path: Path) -> None:
    """``ray start --head`` and a worker node on 127.0.0.1 with token authentication (each ``--block``, so ending
    them stops their processes), then ``structgen batch run --ray --address``: without the token a typed error that
    says what to set, with it the job on both nodes."""
    import secrets

    from structgen.testing.llama_server import free_port

    bin_dir = Path(sys.executable).parent
    port = free_port()
    address = f"127.0.0.1:{port}"
    secure = _cluster_env("token", secrets.token_hex(32))
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen([str(bin_dir / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                             str(port), "--include-dashboard", "false", *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=secure)
    nodes = [head]
    try:
        _wait_for_nodes(address, 1, secure)
        nodes.append(subprocess.Popen([str(bin_dir / "ray"), "start", "--address", address, "--node-ip-address",
                                       "127.0.0.1", *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=secure))
        _wait_for_nodes(address, 2, secure)
        src = people_file(tmp_path / "in.jsonl", 4)
        out = tmp_path / "out.jsonl"
        command = [str(bin_dir / "structgen"), "batch", "run", str(src), "-o", str(out), "--ray", "--address", address,
                   "--workers", "2", "--ray-batch-size", "1", "--n-ctx", "1024", "--n-seq-max", "2", "--json"]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_cluster_env("disabled"))
        assert refused.returncode != 0
        assert "requires token authentication" in refused.stderr and "RAY_AUTH_MODE=token" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not out.exists() or read_lines(out) == []
        r = subprocess.run(command, capture_output=True, text=True, timeout=600, env=secure)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads(r.stdout)
        assert summary["valid"] == 4
        results = read_lines(out)
        assert sorted(x["custom_id"] for x in results) == ["p0", "p1", "p2", "p3"]
    finally:
        for proc in reversed(nodes):
            proc.send_signal(2)   # SIGINT: ``ray start --block`` stops the processes it started
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_nodes(address: str, n: int, env: dict[str, str], deadline_s: float = 300) -> None:
    """Wait until the cluster at ``address`` answers with ``n`` alive nodes (an event, not a guess of how long
    ``ray start`` takes on a busy machine)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False); "
             "print(sum(1 for x in ray.nodes() if x['Alive']))")
    deadline = time.monotonic() + deadline_s
    while True:
        r = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True, timeout=120,
                           env=env)
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        assert time.monotonic() < deadline, f"the Ray cluster at {address} never had {n} alive nodes: {r.stderr[-500:]}"
        time.sleep(1)
