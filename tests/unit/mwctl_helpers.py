"""A throwaway project for mwctl's tests: tiny playbooks run on localhost for real."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mwctl.policy import Policy
from mwctl.project import Project
from mwctl.window import Phase

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

OK = "- ansible.builtin.debug:\n        msg: ok"


def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project root with the markers Project.locate looks for and a localhost inventory."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "ansible.cfg").write_text(
        "[defaults]\nretry_files_enabled = false\nlocal_tmp = .ansible/tmp\n"
        "interpreter_python = auto_silent\ndeprecation_warnings = false\n",
        encoding="utf-8",
    )
    (root / "maintenance.yml").write_text("---\n[]\n", encoding="utf-8")
    (root / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"local2 ansible_connection=local ansible_python_interpreter={sys.executable}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("MWCTL_PROJECT_DIR", str(root))
    # Whatever ansible or ansible-runner would keep under ~ stays in the test's directory.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return Project(root)


def inventory(project: Project) -> Path:
    return project.root / "hosts"


def playbook(project: Project, name: str, tasks: str, hosts: str = "localhost") -> str:
    """Write a one-play playbook with `tasks` (YAML, indented for the tasks list)."""
    path = project.root / f"{name}.yml"
    path.write_text(
        f"---\n- name: {name}\n  hosts: {hosts}\n  gather_facts: false\n  tasks:\n    {tasks}\n",
        encoding="utf-8",
    )
    return path.name


def phase(  # noqa: PLR0913 - a phase is spelled out in full in each test
    project: Project,
    name: str,
    tasks: str = OK,
    *,
    budget: float = 60.0,
    critical: bool = True,
    no_go: bool = False,
    hosts: str = "localhost",
) -> Phase:
    return Phase(
        name,
        playbook(project, name, tasks, hosts),
        f"Phase {name}",
        budget_seconds=budget,
        critical=critical,
        no_go=no_go,
    )


def rollback_phase(project: Project) -> tuple[Phase, Path]:
    """A rollback playbook that leaves a marker naming the run it restored."""
    marker = project.root / "rolled-back.marker"
    tasks = (
        "- ansible.builtin.copy:\n"
        f"        dest: {marker}\n"
        '        content: "{{ mw_run_id }} {{ restore_run_id }}"\n'
        "        mode: '0600'"
    )
    return Phase("rollback", playbook(project, "rollback", tasks), "Rollback"), marker


POLICY = Policy()
