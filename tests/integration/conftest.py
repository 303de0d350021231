"""Integration tests run against the built-in lab; they fail, never skip, when it is down."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mwctl.lab import lab_status
from mwctl.project import Project

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def project() -> Project:
    return Project(REPO)


@pytest.fixture(scope="session")
def lab(project: Project) -> Project:
    down = [
        f"{status.host} ({status.container}, {status.units})"
        for status in lab_status(project)
        if status.container != "running"
        or any(state != "active" for state in status.units.values())
    ]
    if down:
        pytest.fail(f"the lab is not up and healthy: {'; '.join(down)}; run `make lab` first")
    return project


def run_playbook_cli(
    project: Project, playbook: str | Path, *args: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook as ops would, from the checkout, and return its output."""
    command: Sequence[str] = [str(BIN / "ansible-playbook"), str(playbook), *args]
    result = subprocess.run(
        command,
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **project.env()},
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
        )
    return result
