"""A window whose control node dies in phase 3, against the lab.

While the window runs, a second `mwctl run` is refused and names the holder. The window is
then killed with SIGKILL, mwctl and its playbook processes alike, as when the control node
goes down, once phase 3 has started. `mwctl resume` takes the stale lock over only when
told to, carries on from phase 3 under the same run id without repeating phases 1 and 2,
and `mwctl rollback` of that run brings the lab back to its state before the window.

Runs after test_window.py, on the lab that test rolled back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mwctl.errors import LockHeldError, StaleLockError
from mwctl.lock import LOCK_NAME
from mwctl.playbook import _marked_processes
from mwctl.project import Project
from tests.integration.conftest import REPO
from tests.integration.lab_state import differences, fingerprint

MWCTL = Path(sys.executable).parent / "mwctl"
# Phases 1 and 2 take about two minutes on the lab; this bounds the wait for phase 3.
PHASE_WAIT_SECONDS = 900


def mwctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MWCTL), *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def running_phase(run_dir: Path) -> str | None:
    """The phase run.json shows running, if any."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    running = [p["name"] for p in record["phases"] if p["status"] == "running"]
    return running[-1] if running else None


def kill_everything(window: subprocess.Popen[str]) -> None:
    """SIGKILL mwctl and every playbook process, with no chance to clean up.

    Ansible puts its workers in sessions of their own, out of reach of a process-group
    kill; they are found by the marker mwctl sets in their environment, as mwctl does.
    """
    os.killpg(window.pid, signal.SIGKILL)
    window.wait(timeout=30)
    for pid in _marked_processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 30
    while _marked_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _marked_processes() == []


def record_of(project: Project, run_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (project.runs_dir / run_id / "run.json").read_text(encoding="utf-8")
    )
    return loaded


@pytest.fixture(scope="module")
def killed_run(lab: Project) -> dict[str, Any]:
    """Start the window, try a second one, kill the first in phase 3; what was seen."""
    before = fingerprint()
    window = subprocess.Popen(
        [str(MWCTL), "run", "-q"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen: dict[str, Any] = {"before": before}
    try:
        lock = lab.runs_dir / LOCK_NAME
        deadline = time.monotonic() + 120
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        seen["run_id"] = json.loads(lock.read_text(encoding="utf-8"))["run_id"]
        seen["second"] = mwctl("run", "-q")

        run_dir = lab.runs_dir / seen["run_id"]
        deadline = time.monotonic() + PHASE_WAIT_SECONDS
        while running_phase(run_dir) != "validate":
            ended = window.poll()
            assert ended is None, f"the window ended (rc {ended}) before phase 3"
            assert time.monotonic() < deadline, "phase 3 did not start in time"
            time.sleep(0.5)
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


@pytest.mark.usefixtures("lab")
def test_rollback_of_the_resumed_run_restores_the_lab(killed_run: dict[str, Any]) -> None:
    result = mwctl("rollback", killed_run["run_id"], "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert differences(killed_run["before"], fingerprint()) == []
