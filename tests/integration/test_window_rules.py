"""The wrapper's rules on the lab: a critical failure and a budget overrun roll back by themselves.

Each test runs `mwctl run` as ops would and leaves the lab rolled back:

- a script appears under a name the batch renames to, on proto1, once phase 1 has backed
  it up and locked it: phase 1's final dependency check fails, which is critical, so
  mwctl rolls back at once and records why; the planted file is moved aside, not lost;
- a policy gives phase 3 a budget of a few seconds: at the overrun less than 80 % of the
  window's work is done, so mwctl stops the phase, rolls back and says to reschedule.

Both rollbacks must restore exactly the state captured before phase 1.

Runs after test_window_killed_in_execution.py, on the lab that test rolled back.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from mwctl.project import Project
from tests.integration.lab_state import differences, fingerprint, podman_exec
from tests.integration.window_runs import (
    MWCTL,
    PHASE_WAIT_SECONDS,
    REPO,
    SCRIPTS,
    new_names,
    record_of,
    start_window,
)

LOCK_RECORD = "/var/lib/maintenance-window/protocol.lock"


def notifications(project: Project, run_id: str) -> list[dict[str, Any]]:
    """The run's notification log, as the notify role writes it."""
    log = project.runs_dir / run_id / "notifications.jsonl"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def finish(window: subprocess.Popen[str]) -> int:
    try:
        return window.wait(timeout=PHASE_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        window.kill()
        raise


def test_a_critical_failure_in_phase_1_rolls_back_by_itself(lab: Project) -> None:
    before = fingerprint()
    planted = new_names(lab)[0]
    window, run_id = start_window(lab)
    deadline = time.monotonic() + PHASE_WAIT_SECONDS
    while not podman_exec("proto1", f"ls {LOCK_RECORD} 2>/dev/null || true").strip():
        assert window.poll() is None, "the window ended before proto1 was locked"
        assert time.monotonic() < deadline, "proto1 was not locked in time"
        time.sleep(0.5)
    podman_exec("proto1", f"echo planted > {SCRIPTS}/{planted}")

    assert finish(window) != 0
    record = record_of(lab, run_id)
    assert record["outcome"] == "rolled-back", record["decisions"]
    assert [(p["name"], p["status"]) for p in record["phases"]] == [
        ("preflight", "successful"),
        ("prepare", "failed"),
    ]
    decision = next(d for d in record["decisions"] if d["kind"] == "rollback")
    assert decision["phase"] == "prepare"
    assert "critical" in decision["reason"]
    # Why, from the failed task: the no-go of the final check, naming the host.
    assert "NO-GO: proto1" in decision["reason"], decision
    assert [r["trigger"] for r in record["rollbacks"]] == ["critical-failure"]
    # Told through the notify role's channels, with the same reason, before the rollback.
    assert any(
        n["event"] == "issue" and n["message"] == f"Decision rollback: {decision['reason']}"
        for n in notifications(lab, run_id)
    ), notifications(lab, run_id)
    assert [(c["after"], c["equal"]) for c in record["state_checks"]] == [("rollback 1", True)]
    assert differences(before, fingerprint()) == []
    # The file the rollback replaced is kept beside the run's backup.
    kept = podman_exec(
        "proto1",
        f"find /var/backups/maintenance-window/{run_id} -path '*/pre-rollback-*' -name {planted}",
    ).split()
    assert kept, f"the planted {planted} was not kept"
    assert podman_exec("proto1", f"cat {kept[0]}").strip() == "planted"


def test_an_overrun_with_little_work_done_rolls_back(lab: Project, tmp_path: Path) -> None:
    before = fingerprint()
    policy = tmp_path / "policy.yml"
    policy.write_text("phases:\n  validate: {budget_minutes: 0.05}\n", encoding="utf-8")
    result = subprocess.run(
        [str(MWCTL), "run", "-q", "--policy", str(policy)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=PHASE_WAIT_SECONDS,
    )
    assert result.returncode != 0, result.stdout[-3000:]
    run_id = next(
        line.split()[1].rstrip(":")
        for line in result.stdout.splitlines()
        if line.startswith("run ")
    )
    record = record_of(lab, run_id)
    assert record["outcome"] == "rolled-back", record["decisions"]
    decision = next(d for d in record["decisions"] if d["kind"] == "rollback-and-reschedule")
    assert decision["phase"] == "validate"
    assert "80%" in decision["reason"]
    assert [p["name"] for p in record["phases"]][-1] == "validate"
    assert [r["trigger"] for r in record["rollbacks"]] == ["overrun"]
    assert any(
        n["event"] == "issue" and n["message"].startswith("Decision rollback-and-reschedule:")
        for n in notifications(lab, run_id)
    ), notifications(lab, run_id)
    assert [(c["after"], c["equal"]) for c in record["state_checks"]] == [("rollback 1", True)]
    assert differences(before, fingerprint()) == []
