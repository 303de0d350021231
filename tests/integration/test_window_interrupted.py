"""A window whose control node dies in phase 3, against the lab.

While the window runs, a second `mwctl run` is refused and names the holder. The window is
then killed with SIGKILL, mwctl and its playbook processes alike, as when the control node
goes down, once phase 3 has started. `mwctl resume` takes the stale lock over only when
told to, carries on from phase 3 under the same run id without repeating phases 1 and 2,
and `mwctl rollback` of that run brings the lab back to its state before the window.

Runs after test_window.py, on the lab that test rolled back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mwctl.errors import LockHeldError, StaleLockError
from mwctl.lock import LOCK_NAME
from mwctl.project import Project
from tests.integration.lab_state import differences, fingerprint
from tests.integration.window_runs import (
    kill_everything,
    mwctl,
    record_of,
    running_phase,
    start_window,
    wait_for_phase,
)


@pytest.fixture(scope="module")
def killed_run(lab: Project) -> dict[str, Any]:
    """Start the window, try a second one, kill the first in phase 3; what was seen."""
    before = fingerprint()
    window, run_id = start_window(lab)
    seen: dict[str, Any] = {"before": before, "run_id": run_id}
    try:
        seen["second"] = mwctl("run", "-q")

        run_dir = lab.runs_dir / run_id
        wait_for_phase(window, run_dir, "validate")
        # Into the phase, with its playbook at work on the hosts.
        time.sleep(5)
        seen["killed_in"] = running_phase(run_dir)
    finally:
        kill_everything(window)
    return seen


def test_a_second_run_is_refused_while_one_holds_the_lock(killed_run: dict[str, Any]) -> None:
    second = killed_run["second"]
    assert second.returncode == LockHeldError.exit_code, second.stderr[-2000:]
    assert "another window is running" in second.stderr
    assert killed_run["run_id"] in second.stderr


def test_resume_needs_consent_to_take_over_the_dead_runs_lock(
    lab: Project, killed_run: dict[str, Any]
) -> None:
    assert killed_run["killed_in"] == "validate"
    result = mwctl("resume", killed_run["run_id"], "-q")
    assert result.returncode == StaleLockError.exit_code, result.stderr[-2000:]
    assert "--take-over-stale-lock" in result.stderr
    # Refused before anything ran: the killed phase is still the last one recorded.
    phases = record_of(lab, killed_run["run_id"])["phases"]
    assert [p["name"] for p in phases][-1] == "validate"


def test_resume_finishes_the_run_from_phase_3(lab: Project, killed_run: dict[str, Any]) -> None:
    result = mwctl("resume", killed_run["run_id"], "-q", "--take-over-stale-lock")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = record_of(lab, killed_run["run_id"])
    assert record["outcome"] == "succeeded", record["decisions"]
    attempts = [(p["name"], p["attempt"], p["status"]) for p in record["phases"]]
    assert attempts == [
        ("preflight", 1, "successful"),
        ("prepare", 1, "successful"),
        ("execute", 1, "successful"),
        ("validate", 1, "interrupted"),
        ("validate", 2, "successful"),
        ("recover", 1, "successful"),
    ]
    assert not (lab.runs_dir / LOCK_NAME).exists()


def test_rollback_of_the_resumed_run_restores_the_lab(
    lab: Project, killed_run: dict[str, Any]
) -> None:
    result = mwctl("rollback", killed_run["run_id"], "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Judged against the state captured before phase 1 of the first attempt.
    checks = record_of(lab, killed_run["run_id"])["state_checks"]
    assert [(c["after"], c["equal"]) for c in checks] == [("rollback 1", True)], checks
    assert differences(killed_run["before"], fingerprint()) == []
