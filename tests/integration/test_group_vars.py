"""Every entry point loads the project-wide group_vars/, and refuses to run without them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mwctl.project import Project
from tests.integration.conftest import REPO, run_playbook_cli

ENTRY_POINTS = [
    "maintenance.yml",
    "rollback.yml",
    *sorted(str(path.relative_to(REPO)) for path in REPO.glob("playbooks/*.yml")),
    *sorted(str(path.relative_to(REPO)) for path in REPO.glob("playbooks/lab/*.yml")),
]

# Only tasks tagged `always` run: the settings check, and nothing that changes a host.
PROBE = ("--tags", "mw-settings-probe")


@pytest.mark.parametrize("playbook", ENTRY_POINTS)
def test_entry_point_loads_the_project_settings(lab: Project, playbook: str) -> None:
    assert (REPO / playbook).is_file(), f"{playbook} is missing"
    result = run_playbook_cli(lab, playbook, *PROBE)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Project settings loaded (lab, group_vars/all)" in result.stdout


def test_a_playbook_outside_the_tree_is_refused(lab: Project, tmp_path: Path) -> None:
    copy = tmp_path / "preflight.yml"
    shutil.copy(REPO / "playbooks" / "preflight.yml", copy)
    result = run_playbook_cli(lab, copy, *PROBE)
    assert result.returncode != 0
    assert "The project settings in group_vars/all were not loaded" in result.stdout
