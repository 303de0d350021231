"""A window whose control node dies in the middle of phase 2, then rolled back.

The window is killed (SIGKILL, mwctl and its playbook processes alike) as soon as the
first protocol host holds a renamed script: the renames are under way and the registry
is not synchronised yet. `mwctl rollback` of that run must bring back exactly the state
captured before phase 1.

Runs after test_window_interrupted.py, on the lab that test rolled back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mwctl.project import Project
from tests.integration.lab_state import differences, fingerprint, podman_exec
from tests.integration.window_runs import (
    SCRIPTS,
    kill_everything,
    mwctl,
    new_names,
    record_of,
    running_phase,
    start_window,
    wait_for_phase,
)


@pytest.fixture(scope="module")
def killed_run(lab: Project) -> dict[str, Any]:
    """Start the window and kill it once a renamed script shows up on proto1."""
    before = fingerprint()
    names = new_names(lab)
    assert names, "the manifest renames nothing to a new name"
    probe = f"ls {SCRIPTS}/{names[0]} 2>/dev/null || true"
    window, run_id = start_window(lab)
    try:
        wait_for_phase(window, lab.runs_dir / run_id, "execute")
        deadline = time.monotonic() + 120
        while not podman_exec("proto1", probe).strip():
            assert window.poll() is None, "the window ended before a script was renamed"
            assert time.monotonic() < deadline, "no script was renamed in time"
            time.sleep(0.2)
        seen = {
            "before": before,
            "run_id": run_id,
            "killed_in": running_phase(lab.runs_dir / run_id),
        }
    finally:
        kill_everything(window)
    seen["after_kill"] = fingerprint()
    return seen


def test_the_window_died_half_way_through_phase_2(killed_run: dict[str, Any]) -> None:
    assert killed_run["killed_in"] == "execute"
    # Something was renamed: there is a half-done window to roll back.
    assert differences(killed_run["before"], killed_run["after_kill"]) != []


def test_rollback_restores_exactly_the_pre_window_state(
    lab: Project, killed_run: dict[str, Any]
) -> None:
    result = mwctl("rollback", killed_run["run_id"], "-q", "--take-over-stale-lock")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = record_of(lab, killed_run["run_id"])
    assert record["outcome"] == "rolled-back", record["decisions"]
    # The attempt the kill cut short is recorded as such, not as still running.
    assert [(p["name"], p["status"]) for p in record["phases"]][-1] == ("execute", "interrupted")
    assert [(c["after"], c["equal"]) for c in record["state_checks"]] == [("rollback 1", True)]
    assert "state after rollback 1: restored exactly" in result.stdout
    assert differences(killed_run["before"], fingerprint()) == []
