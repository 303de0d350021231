"""The window's decision rules, declared in a policy file rather than buried in code."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mwctl.errors import UsageError
from mwctl.project import Project

# What a failed phase means for the window.
NO_GO = "no-go"  # nothing was changed yet: stop, do not roll back, reschedule
CRITICAL = "critical"  # stop and roll back to the verified backups
PARTIAL = "partial"  # carry on, and list what failed as follow-up work
FAILURE_CLASSES = (NO_GO, CRITICAL, PARTIAL)

# The policy the plan describes, as a file ops can copy to <project root>/policy.yml
# and edit. Loading this text gives exactly the built-in defaults.
DEFAULT_POLICY_YAML = """\
---
# mwctl policy: how the maintenance window decides. Every key is optional; a missing
# key keeps the default shown here.

# Per phase: its time budget in minutes and what a failure of the phase means:
#   no-go     nothing was changed yet: stop, no rollback, reschedule the window
#   critical  stop and run the rollback playbook at once
#   partial   carry on, and report the failed hosts and tasks as follow-up work
phases:
  preflight: {budget_minutes: 30, on_failure: no-go}
  prepare: {budget_minutes: 30, on_failure: critical}   # includes the backup verification
  execute: {budget_minutes: 60, on_failure: critical}
  validate: {budget_minutes: 60, on_failure: critical}
  recover: {budget_minutes: 60, on_failure: partial}

# When a phase overruns its budget: extend (let the phase finish) if extending is
# allowed and more than extend_threshold of the window's work is done; otherwise roll
# back and reschedule.
extend_allowed: true
extend_threshold: 0.8

# Roles that must approve (mwctl approve) the rehearsal a run starts from.
# A production policy names them, for example [change-manager, service-owner].
required_approvals: []

# How often a running window prints a progress update (the plan: every 30 minutes).
progress_interval_seconds: 1800

# In a phase whose failures are partial, a failure on more than this fraction of the
# phase's hosts is critical after all.
critical_failure_threshold: 0.5
"""


@dataclass(frozen=True)
class PhaseRule:
    """The policy for one phase; None keeps the phase's own default."""

    budget_seconds: float | None = None
    on_failure: str | None = None


@dataclass(frozen=True)
class Policy:
    """How the window decides, as loaded from a policy file.

    Attributes:
        phases: per phase name, its budget and failure class (`phases.<name>.budget_minutes`
            and `phases.<name>.on_failure` in the file); phases not named keep their defaults.
        extend_allowed: whether an overrunning phase may be extended at all.
        extend_threshold: fraction of the window's work (0..1) that must be done, at the
            moment a phase overruns, for the phase to be extended rather than rolled back.
        required_approvals: roles that must have approved the rehearsal a run starts from.
        progress_interval_seconds: seconds between two progress updates during a run.
        critical_failure_threshold: in a phase whose failures are partial, the fraction of
            failed hosts above which the failure is critical.
        source: the file the policy was loaded from, or None for the built-in defaults.
    """

    phases: Mapping[str, PhaseRule] = field(default_factory=dict)
    extend_allowed: bool = True
    extend_threshold: float = 0.8
    required_approvals: tuple[str, ...] = ()
    progress_interval_seconds: float = 1800.0
    critical_failure_threshold: float = 0.5
    source: str | None = None

    def rule(self, phase: str) -> PhaseRule:
        """The rule for `phase`; an empty rule when the policy does not name it."""
        return self.phases.get(phase, PhaseRule())

    def summary(self) -> dict[str, Any]:
        """The policy as recorded in run.json."""
        return {
            "source": self.source,
            "extend_allowed": self.extend_allowed,
            "extend_threshold": self.extend_threshold,
            "required_approvals": list(self.required_approvals),
            "progress_interval_seconds": self.progress_interval_seconds,
            "critical_failure_threshold": self.critical_failure_threshold,
            "phases": {
                name: {"budget_seconds": rule.budget_seconds, "on_failure": rule.on_failure}
                for name, rule in sorted(self.phases.items())
            },
        }


_TOP_KEYS = {
    "phases",
    "extend_allowed",
    "extend_threshold",
    "required_approvals",
    "progress_interval_seconds",
    "critical_failure_threshold",
}


def _fraction(data: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        msg = f"{where}: {key} must be a number from 0 to 1, got {value!r}"
        raise UsageError(msg)
    return float(value)


def _phase_rules(raw: object, where: str) -> dict[str, PhaseRule]:
    if not isinstance(raw, Mapping):
        msg = f"{where}: phases must map phase names to {{budget_minutes, on_failure}}"
        raise UsageError(msg)
    rules = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping) or set(spec) - {"budget_minutes", "on_failure"}:
            msg = f"{where}: phases.{name} may set only budget_minutes and on_failure, got {spec!r}"
            raise UsageError(msg)
        minutes = spec.get("budget_minutes")
        if minutes is not None and (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not math.isfinite(minutes)
            or minutes <= 0
        ):
            msg = (
                f"{where}: phases.{name}.budget_minutes must be a positive number, got {minutes!r}"
            )
            raise UsageError(msg)
        on_failure = spec.get("on_failure")
        if on_failure is not None and on_failure not in FAILURE_CLASSES:
            msg = (
                f"{where}: phases.{name}.on_failure must be one of {', '.join(FAILURE_CLASSES)}, "
                f"got {on_failure!r}"
            )
            raise UsageError(msg)
        rules[str(name)] = PhaseRule(
            budget_seconds=None if minutes is None else float(minutes) * 60,
            on_failure=on_failure,
        )
    return rules


def parse_policy(text: str, source: str | None = None) -> Policy:
    """Parse a policy file's text.

    Raises:
        UsageError: the text is not a valid policy; the message names the bad key.
    """
    where = source or "policy"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        msg = f"{where} is not valid YAML: {error}"
        raise UsageError(msg) from error
    if not isinstance(data, Mapping):
        msg = f"{where} must be a mapping of policy keys, got {type(data).__name__}"
        raise UsageError(msg)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        msg = f"{where}: unknown keys {unknown}; allowed are {sorted(_TOP_KEYS)}"
        raise UsageError(msg)
    approvals = data.get("required_approvals") or []
    if not isinstance(approvals, list) or not all(isinstance(a, str) and a for a in approvals):
        msg = f"{where}: required_approvals must be a list of role names, got {approvals!r}"
        raise UsageError(msg)
    interval = data.get("progress_interval_seconds", 1800)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        msg = f"{where}: progress_interval_seconds must be a positive number, got {interval!r}"
        raise UsageError(msg)
    extend = data.get("extend_allowed", True)
    if not isinstance(extend, bool):
        msg = f"{where}: extend_allowed must be true or false, got {extend!r}"
        raise UsageError(msg)
    return Policy(
        phases=_phase_rules(data.get("phases") or {}, where),
        extend_allowed=extend,
        extend_threshold=_fraction(data, "extend_threshold", 0.8, where),
        required_approvals=tuple(approvals),
        progress_interval_seconds=float(interval),
        critical_failure_threshold=_fraction(data, "critical_failure_threshold", 0.5, where),
        source=source,
    )


def load_policy(project: Project, path: Path | None = None) -> Policy:
    """Load `path`, else `<project root>/policy.yml` if present, else the built-in defaults.

    Raises:
        UsageError: `path` does not exist, or the file is not a valid policy.
    """
    if path is not None and not path.is_file():
        msg = f"policy file {str(path)!r} does not exist"
        raise UsageError(msg)
    chosen = path or project.root / "policy.yml"
    if not chosen.is_file():
        return parse_policy(DEFAULT_POLICY_YAML)
    return parse_policy(chosen.read_text(encoding="utf-8"), source=str(chosen))
