"""Driving mwctl against the lab from tests: run it, watch a window, kill it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mwctl.lock import LOCK_NAME
from mwctl.playbook import _marked_processes
from mwctl.project import Project
from tests.integration.conftest import REPO
from tests.integration.lab_state import podman_exec

MWCTL = Path(sys.executable).parent / "mwctl"
SCRIPTS = "/opt/project/scripts/validation"
# Phases 1 and 2 take two to three minutes on the lab; this bounds any wait for a phase.
PHASE_WAIT_SECONDS = 900


def mwctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MWCTL), *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def new_names(project: Project) -> list[str]:
    """Targets of the lab's manifest that no script has before the window."""
    manifest = (project.world_dir / "manifest.yml").read_text(encoding="utf-8")
    present = set(podman_exec("proto1", f"ls {SCRIPTS}").split())
    return sorted(set(re.findall(r"to: (\S+)", manifest)) - present)


def record_of(project: Project, run_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (project.runs_dir / run_id / "run.json").read_text(encoding="utf-8")
    )
    return loaded


def running_phase(run_dir: Path) -> str | None:
    """The phase run.json shows running, if any."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    running = [p["name"] for p in record["phases"] if p["status"] == "running"]
    return running[-1] if running else None


def start_window(project: Project) -> tuple[subprocess.Popen[str], str]:
    """Start `mwctl run` in a session of its own; return it and its run id, once locked."""
    window = subprocess.Popen(
        [str(MWCTL), "run", "-q"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lock = project.runs_dir / LOCK_NAME
    deadline = time.monotonic() + 120
    while not lock.exists():
        assert window.poll() is None, "mwctl run ended before it took the lock"
        assert time.monotonic() < deadline, "mwctl run did not take the lock in time"
        time.sleep(0.5)
    return window, str(json.loads(lock.read_text(encoding="utf-8"))["run_id"])


def wait_for_phase(window: subprocess.Popen[str], run_dir: Path, phase: str) -> None:
    deadline = time.monotonic() + PHASE_WAIT_SECONDS
    while running_phase(run_dir) != phase:
        ended = window.poll()
        assert ended is None, f"the window ended (rc {ended}) before phase {phase}"
        assert time.monotonic() < deadline, f"phase {phase} did not start in time"
        time.sleep(0.5)


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
