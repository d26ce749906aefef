"""The determinism report, the selection rules of best-of / self-consistency, and the two CLI commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import structgen
from structgen import Choice
from structgen.analysis.determinism import ModeStats, cluster_count, plot, run_experiment, summarise
from structgen.local.engine import choose

FIELDS = {"runs", "distinct_texts", "distinct_values", "distinct_logprob_vectors", "first_divergence", "p_first_token"}


def result(value: Any, logprobs: list[float], text: str | None = None) -> structgen.Result[Any]:
    return structgen.Result(value=value, text=text if text is not None else str(value), tokens=list(range(len(logprobs))),
                            logprobs=logprobs, seed=0, strategy="test", forced=[False] * len(logprobs))


def test_self_consistency_returns_the_majority_on_a_constructed_case() -> None:
    confident = result("Paris", [-0.01, -0.02])            # the best average logprob, but alone
    votes = [result("lyon", [-1.0, -1.2]), result(" Lyon ", [-0.5, -0.7], text=" Lyon "),
             result("LYON", [-2.0, -2.0])]                  # one answer, written three ways
    candidates = [confident, *votes]
    assert choose(candidates, "best_of") is confident
    assert choose(candidates, "best_of", "first_valid") is confident
    assert choose(candidates, "self_consistency") is votes[1]      # majority; ties inside it by avg logprob
    # A tie in votes goes to the better average logprob.
    tie = [result("a", [-3.0]), result("b", [-0.1]), result("a", [-2.0]), result("b", [-4.0])]
    assert choose(tie, "self_consistency") is tie[1]
    assert choose(tie, "self_consistency", "first_valid") is tie[0]   # ... or, asked to, to the earliest
    assert choose(candidates, "self_consistency", "first_valid") is votes[0]
    with pytest.raises(structgen.InvalidArgument):
        choose([], "self_consistency")


def test_self_consistency_end_to_end_is_the_majority_of_its_candidates(invariant: structgen.LlamaCpp) -> None:
    r = structgen.generate("My favourite animal is the", Choice([" cat", " dog", " bird"]), model=invariant,
                           strategy="self_consistency", n=7, temperature=1.5, seed=2, chat=False)
    votes = [c.value for c in r.candidates]
    assert len(votes) == 7 and votes.count(r.value) == max(votes.count(v) for v in set(votes))


def test_counting_helpers() -> None:
    assert cluster_count([(0.0, -1.0), (0.0, -1.0 + 1e-9), (0.0, -1.1), (0.0,)], tolerance=1e-6) == 3
    assert cluster_count([(0.0, -1.0), (0.0, -1.0 + 1e-9)], tolerance=0.0) == 2
    runs = [result("heads", [-0.2, -0.5]), result("heads", [-0.2, -0.5]), result("heads", [-0.2, -0.6])]
    stats = summarise("alone", [*runs, structgen.TruncatedOutput("cut", partial_text="")], tolerance=1e-6)
    assert (stats.runs, stats.errors, stats.distinct_texts, stats.distinct_values) == (4, 1, 1, 1)
    assert (stats.distinct_logprob_vectors, stats.first_divergence, stats.first_token_divergence) == (2, 1, None)
    assert stats.distinct_p_first_token == 1 and len(stats.p_first_token) == 3
    # Hosted replies carry logprobs but no token ids.
    hosted = [result("heads", [-0.2, -0.5]), result("heads", [-0.2, -0.5]), result("heads", [-0.3, -0.5])]
    for r in hosted:
        r.tokens = []
    stats = summarise("hosted", hosted, tolerance=1e-6, wall_s=2.0)
    assert (stats.first_divergence, stats.first_token_divergence, stats.tokens_per_second) == (0, None, 3.0)


def test_experiment_counts_what_changes_per_mode(plain: structgen.LlamaCpp, invariant: structgen.LlamaCpp,
                                                 tmp_path: Path) -> None:
    report = run_experiment("I flipped a coin and it landed on", Choice([" heads", " tails"]),
                            models={"default": plain, "deterministic": invariant}, runs=3, batch_sizes=(1, 4),
                            temperature=0.0, seed=42, chat=False)
    assert list(report.modes) == ["alone", "batched-4", "alone (deterministic)", "batched-4 (deterministic)"]
    for stats in report.modes.values():
        assert set(vars_of(stats)) >= FIELDS and stats.runs == 3 and stats.errors == 0
        assert len(stats.p_first_token) == 3 and all(0.0 < p <= 1.0 for p in stats.p_first_token)
    for name in ("alone", "alone (deterministic)", "batched-4 (deterministic)"):
        stats = report.modes[name]
        assert (stats.distinct_logprob_vectors_exact, stats.first_divergence, stats.distinct_p_first_token) == (1, None, 1)
    # The batch-invariant mode gives the lone run's bytes in every batch.
    assert report.modes["alone (deterministic)"].p_first_token == report.modes["batched-4 (deterministic)"].p_first_token
    assert report.reference is not None and sum(report.reference["sampler"].values()) == pytest.approx(1.0)
    data = report.to_dict()
    json.dumps(data)
    assert set(data["modes"]["batched-4"]) >= FIELDS
    assert "| batched-4 (deterministic) | 3 |" in report.to_markdown()
    plot(report, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def vars_of(stats: ModeStats) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(stats)


def test_cli_probs_and_determinism(tmp_path: Path) -> None:
    from cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["probs", "I flipped a coin and it landed on", "--choice", " heads, tails", "--raw",
                              "--n-threads", "1", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data["probs"]) == {"heads", "tails"} and sum(data["probs"].values()) == pytest.approx(1.0)
    out = runner.invoke(app, ["probs", "Pick a number.", "--regex", "[0-9]", "--method", "sampler", "--n-threads", "1"])
    assert out.exit_code == 0 and out.stdout.count("\n") == 11, out.output   # ten digits and the unexplored mass
    report, png = tmp_path / "r.json", tmp_path / "r.png"
    out = runner.invoke(app, ["determinism", "Heads or tails?", "--choice", "heads,tails", "--runs", "2", "--batch",
                              "1,2", "--deterministic", "on", "--n-threads", "1", "--json", str(report), "--plot",
                              str(png)])
    assert out.exit_code == 0, out.output
    modes = json.loads(report.read_text())["modes"]
    assert set(modes) == {"alone (deterministic)", "batched-2 (deterministic)"}
    assert all(set(m) >= FIELDS and m["distinct_logprob_vectors"] == 1 for m in modes.values())
    assert png.stat().st_size > 1000
    bad = runner.invoke(app, ["determinism", "x", "--batch", "1,two"])
    assert bad.exit_code != 0 and isinstance(bad.exception, structgen.InvalidArgument)


@pytest.mark.slow
def test_hosted_mode_against_a_real_llama_cpp_server(server_url: str, plain: structgen.LlamaCpp) -> None:
    from structgen.hosted import OpenAICompatible

    hosted = OpenAICompatible(server_url, logprobs=True)
    report = run_experiment("Flip a coin.", Choice(["heads", "tails"]), models={"default": plain}, hosted=hosted,
                            runs=5, batch_sizes=(1,), temperature=0.0, seed=42)
    stats = report.modes["hosted"]
    assert stats.runs == 5 and stats.errors == 0, stats.error_messages
    assert len(stats.p_first_token) == 5 and stats.distinct_values >= 1
    assert set(report.to_dict()["modes"]["hosted"]) >= FIELDS
