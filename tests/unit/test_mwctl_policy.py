"""The policy file: the plan's rules, declared and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from mwctl.errors import UsageError
from mwctl.policy import (
    CRITICAL,
    DEFAULT_POLICY_YAML,
    NO_GO,
    PARTIAL,
    Policy,
    load_policy,
    parse_policy,
)
from mwctl.project import Project
from mwctl.window import PHASES, apply_policy


def test_the_default_policy_is_the_plan() -> None:
    policy = parse_policy(DEFAULT_POLICY_YAML)
    assert policy.extend_allowed
    assert policy.extend_threshold == 0.8
    assert policy.required_approvals == ()
    assert policy.progress_interval_seconds == 1800
    phases = {p.name: p for p in apply_policy(PHASES, policy)}
    assert {n: p.budget_seconds / 60 for n, p in phases.items()} == {
        "preflight": 30,
        "prepare": 30,
        "execute": 60,
        "validate": 60,
        "recover": 60,
    }
    assert {n: p.on_failure for n, p in phases.items()} == {
        "preflight": NO_GO,
        "prepare": CRITICAL,
        "execute": CRITICAL,
        "validate": CRITICAL,
        "recover": PARTIAL,
    }
    # The built-in phases carry the same defaults without any policy.
    assert apply_policy(PHASES, Policy()) == list(PHASES)


def test_a_project_policy_file_overrides_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text(
        "phases:\n  recover: {on_failure: critical, budget_minutes: 5}\n"
        "required_approvals: [change-manager]\nextend_allowed: false\n",
        encoding="utf-8",
    )
    policy = load_policy(Project(tmp_path))
    assert policy.source == str(tmp_path / "policy.yml")
    assert policy.required_approvals == ("change-manager",)
    recover = {p.name: p for p in apply_policy(PHASES, policy)}["recover"]
    assert (recover.on_failure, recover.budget_seconds) == (CRITICAL, 300)
    assert load_policy(Project(tmp_path / "elsewhere")).source is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("extend_threshold: 1.5\n", "extend_threshold"),
        ("phases:\n  execute: {on_failure: maybe}\n", "on_failure"),
        ("phases:\n  execute: {budget_minutes: -1}\n", "budget_minutes"),
        ("required_approvals: change-manager\n", "required_approvals"),
        ("extend: true\n", "unknown keys"),
    ],
)
def test_an_invalid_policy_is_refused_naming_the_key(text: str, complaint: str) -> None:
    with pytest.raises(UsageError, match=complaint):
        parse_policy(text, "policy.yml")
