"""Goals in plain words: phrasings a user would write, and ones that must be refused."""

from __future__ import annotations

import pytest
from _cli import QUICK, run_cli

from edgenas.cli._goal import parse_goal
from edgenas.cost import Constraints
from edgenas.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "objective", "limits"),
    [
        ("maximize accuracy with at most 30 ms latency and 200 MB memory", "accuracy",
         {"max_latency": 30.0, "max_memory": 200.0}),
        ("Best accuracy under 5ms, model size below 2 MB", "accuracy",
         {"max_latency": 5.0, "max_size": 2.0}),
        ("latency <= 30ms, memory <= 200MB", None, {"max_latency": 30.0, "max_memory": 200.0}),
        ("I want the highest accuracy with latency under 45 ms on the device and at most 25 MB "
         "model size", "accuracy", {"max_latency": 45.0, "max_size": 25.0}),
        ("trade off accuracy against latency with at most 1 GB of memory", "pareto",
         {"max_memory": 1000.0}),
        ("accuracy vs latency under 20 ms", "pareto", {"max_latency": 20.0}),
        ("maximise accuracy, at most 100M MACs", "accuracy", {"max_macs": 1e8}),
        ("maximize accuracy with no more than 2mJ energy per inference", "accuracy",
         {"max_energy": 2.0}),
        ("under 0.5 s", None, {"max_latency": 500.0}),
        ("Maximize accuracy.", "accuracy", {}),
    ],
)  # fmt: skip
def test_phrasings_a_user_would_write(text: str, objective: str | None, limits: dict) -> None:
    goal = parse_goal(text)
    assert goal.objective == objective
    parsed = Constraints.parse(**goal.limits)
    fields = {"max_latency": "max_latency_ms", "max_memory": "max_memory_mb",
              "max_size": "max_size_mb", "max_macs": "max_macs", "max_energy": "max_energy_mj"}  # fmt: skip
    assert parsed.active() == {fields[k]: pytest.approx(v) for k, v in limits.items()}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("make it fast", "'make it fast'"),
        ("maximize accuracy with at most 30 parrots", "'at most 30 parrots'"),
        ("latency under banana ms", "'latency under banana ms'"),
        ("maximize accuracy with latency under 30 kg", "'latency under 30 kg'"),
        ("minimize cost and at most 30 ms latency", "'minimize cost'"),
    ],
)
def test_goals_it_must_refuse_name_what_was_not_understood(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match="not understood") as info:
        parse_goal(text)
    assert named in str(info.value)


def test_a_limit_given_twice_or_nothing_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse_goal("at most 30 ms latency and latency under 20 ms")
    with pytest.raises(ConfigError, match="says nothing"):
        parse_goal("  ")


def test_describe_echoes_the_goal_as_understood() -> None:
    goal = parse_goal("maximize accuracy with at most 30 ms latency and 200 MB memory")
    assert goal.describe() == ("maximize accuracy subject to latency ≤ 30 ms, peak memory ≤ 200 MB")


def test_the_cli_echoes_the_goal_and_refuses_one_it_does_not_understand(tmp_path) -> None:
    proc = run_cli("search", "synthetic", "--goal", "best accuracy with at most 30 parrots",
                   "--out", str(tmp_path / "r"), *QUICK)  # fmt: skip
    assert proc.returncode == 2
    assert "'at most 30 parrots'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_search_runs_under_the_goal(tmp_path) -> None:
    import json

    out = tmp_path / "r"
    proc = run_cli("search", "synthetic", "--goal", "accuracy vs latency under 50 ms",
                   "--trials", "1", "--out", str(out), *QUICK)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "goal understood: trade accuracy against latency" in proc.stderr
    spec = json.loads((out / "spec.json").read_text())
    assert spec["objective"]["kind"] == "pareto"
    assert spec["constraints"] == {"max_latency_ms": 50.0}
