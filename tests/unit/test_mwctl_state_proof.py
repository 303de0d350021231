"""The pre-window state and the proofs built on it, with a tiny state playbook on localhost.

The project's playbooks/state.yml here records one file, world.txt, as the whole state;
the phases and the rollback change that file, so each proof can be made to hold or fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mwctl.project import Project
from mwctl.report import render_markdown
from mwctl.window import PRE_WINDOW_STATE, Phase, rollback_run, run_window
from tests.unit.mwctl_helpers import POLICY, inventory, make_project, phase, playbook

STATE_PLAYBOOK = """---
- name: Record the state
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the manifest
      ansible.builtin.copy:
        dest: "{{ state_manifest_out }}"
        content: >-
          {{ {'format': 1, 'taken_at': now(utc=true).isoformat(),
              'hosts': {'localhost': {'files': {'world.txt': lookup('file', world)}}}}
             | to_json }}
        mode: "0600"
      vars:
        world: "{{ playbook_dir }}/../world.txt"
"""
FAIL = "- ansible.builtin.fail:\n        msg: broken on purpose"
UNREHEARSABLE = (
    "- name: say\n"
    "      ansible.builtin.debug:\n"
    "        msg: 'Check mode: the suite is not run'\n"
    "      when: ansible_check_mode\n"
    "    - name: suite\n"
    "      ansible.builtin.command: /bin/true\n"
    "      changed_when: false\n"
    "      when: not ansible_check_mode"
)


def write_world(project: Project, content: str, *, in_check_mode: bool = False) -> str:
    """Tasks that set world.txt; `in_check_mode` makes them do it in a rehearsal too."""
    check = "\n      check_mode: false" if in_check_mode else ""
    return (
        "- ansible.builtin.copy:\n"
        f"        dest: {project.root / 'world.txt'}\n"
        f"        content: {content}\n"
        f"        mode: '0600'{check}"
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, monkeypatch)
    (project.root / "playbooks").mkdir()
    (project.root / "playbooks" / "state.yml").write_text(STATE_PLAYBOOK, encoding="utf-8")
    (project.root / "world.txt").write_text("seed", encoding="utf-8")
    return project


def rollback_to(project: Project, content: str) -> Phase:
    return Phase("rollback", playbook(project, "rollback", write_world(project, content)), "Back")


def captured(project: Project, run_id: str, name: str) -> str:
    data = json.loads((project.runs_dir / run_id / "state" / name).read_text(encoding="utf-8"))
    content: str = data["hosts"]["localhost"]["files"]["world.txt"]
    return content


def test_a_rollback_to_the_pre_window_state_is_reported_exact(project: Project) -> None:
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[
            phase(project, "preflight", no_go=True),
            phase(project, "execute", write_world(project, "renamed")),
            phase(project, "validate", FAIL),
        ],
        policy=POLICY,
        rollback=rollback_to(project, "seed"),
    )
    assert record.outcome == "rolled-back"
    # Captured after the checks that change nothing and before the first change.
    assert captured(project, record.run_id, "pre-window.json") == "seed"
    assert [(c.after, c.equal, c.differences) for c in record.state_checks] == [
        ("rollback 1", True, [])
    ]
    assert record.decisions[-1].kind == "restored-exactly"


def test_a_rollback_that_misses_something_lists_each_difference(project: Project) -> None:
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[
            phase(project, "execute", write_world(project, "renamed")),
            phase(project, "v", FAIL),
        ],
        policy=POLICY,
        rollback=rollback_to(project, "half-restored"),
    )
    assert record.outcome == "rolled-back-with-differences"
    (check,) = record.state_checks
    assert check.equal is False
    assert len(check.differences) == 1
    assert "world.txt" in check.differences[0]
    assert "half-restored" in check.differences[0]
    assert record.decisions[-1].kind == "restored-with-differences"

    # The operator's own rollback is judged the same way, against the same pre-window state.
    again = rollback_run(project, record.run_id, rollback=rollback_to(project, "seed"))
    assert again.outcome == "rolled-back"
    assert [c.equal for c in again.state_checks] == [False, True]
    assert captured(project, record.run_id, "pre-window.json") == "seed"


def test_a_rehearsal_that_changes_the_state_fails(project: Project) -> None:
    honest = run_window(
        project,
        inventory=inventory(project),
        check=True,
        phases=[
            phase(project, "execute", write_world(project, "renamed")),
            phase(project, "validate", UNREHEARSABLE, hosts="localhost,local2"),
        ],
        policy=POLICY,
    )
    assert honest.outcome == "succeeded"
    assert [(c.after, c.equal) for c in honest.state_checks] == [("rehearsal", True)]
    # What check mode ran without doing it is listed, once per task, with its hosts.
    assert honest.phases[0].rehearsal_notes == []
    assert [
        (n["task"], n["msg"], sorted(n["hosts"])) for n in honest.phases[1].rehearsal_notes
    ] == [("say", "Check mode: the suite is not run", ["local2", "localhost"])]
    report = render_markdown(honest)
    assert "## Not carried out by the rehearsal" in report
    assert "| validate | say | " in report
    assert "Check mode: the suite is not run |" in report
    assert "| rehearsal | state unchanged |" in report

    leaky = run_window(
        project,
        inventory=inventory(project),
        check=True,
        phases=[phase(project, "execute", write_world(project, "renamed", in_check_mode=True))],
        policy=POLICY,
    )
    assert leaky.outcome == "failed"
    assert leaky.state_checks[-1].equal is False
    assert "the rehearsal changed the state" in leaky.decisions[-1].reason


def test_without_a_pre_window_state_nothing_changes(project: Project) -> None:
    (project.root / "playbooks" / "state.yml").write_text(
        STATE_PLAYBOOK.replace('world.txt"', 'missing.txt"'), encoding="utf-8"
    )
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[
            phase(project, "preflight", no_go=True),
            phase(project, "execute", write_world(project, "renamed")),
        ],
        policy=POLICY,
    )
    assert record.outcome == "no-go"
    assert [p.name for p in record.phases] == ["preflight"]
    assert "pre-window state could not be recorded" in record.decisions[-1].reason
    assert (project.root / "world.txt").read_text(encoding="utf-8") == "seed"
    assert not (project.runs_dir / record.run_id / PRE_WINDOW_STATE).exists()
