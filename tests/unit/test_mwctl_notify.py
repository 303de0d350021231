"""mwctl's own notifications go through the project's notify playbook, with tiny playbooks.

The project's playbooks/notify.yml here appends each notification to notified.log, so a
test sees what the channels would have been told, and when.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mwctl.policy import Policy
from mwctl.project import Project
from mwctl.window import run_window
from tests.unit.mwctl_helpers import POLICY, inventory, make_project, phase, rollback_phase

NOTIFY_PLAYBOOK = """---
- name: Notify
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Append the notification
      ansible.builtin.lineinfile:
        path: "{{ playbook_dir }}/../notified.log"
        line: "{{ [mw_run_id, notify_event, notify_status, notify_phase, notify_closes_window,
                   notify_message] | join(' | ') }}"
        create: true
        mode: "0600"
"""
FAIL = "- ansible.builtin.fail:\n        msg: broken on purpose"
PAUSE = "- ansible.builtin.pause:\n        seconds: {}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, monkeypatch)
    (project.root / "playbooks").mkdir()
    (project.root / "playbooks" / "notify.yml").write_text(NOTIFY_PLAYBOOK, encoding="utf-8")
    return project


def notified(project: Project) -> list[list[str]]:
    log = project.root / "notified.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [line.split(" | ") for line in lines]


def test_a_critical_failure_is_announced_with_its_reason(project: Project) -> None:
    rollback, _ = rollback_phase(project)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "execute", FAIL)],
        policy=POLICY,
        rollback=rollback,
    )
    assert record.outcome == "rolled-back"
    ((run_id, event, status, where, closes, message),) = notified(project)
    assert (run_id, event, status, where, closes) == (
        record.run_id,
        "issue",
        "critical",
        "execute",
        "False",
    )
    assert message.startswith("Decision rollback: execute failed")
    assert "broken on purpose" in message


def test_a_no_go_is_announced_and_closes_the_window(project: Project) -> None:
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "preflight", FAIL, no_go=True), phase(project, "never")],
        policy=POLICY,
    )
    assert record.outcome == "no-go"
    ((_, event, status, where, closes, message),) = notified(project)
    assert (event, status, where, closes) == ("issue", "failed", "preflight", "True")
    assert message.startswith("Decision no-go:")


def test_progress_is_sent_at_the_policys_interval(project: Project) -> None:
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "execute", PAUSE.format(6))],
        policy=Policy(progress_interval_seconds=2),
    )
    assert record.outcome == "succeeded"
    sent = notified(project)
    assert sent, "no progress notification in a 6 s phase at a 2 s interval"
    assert {(event, status, where) for _, event, status, where, _, _ in sent} == {
        ("progress", "running", "execute")
    }
    assert all(message.startswith("Progress: execute running for") for *_, message in sent)


def test_a_failing_notification_does_not_stop_the_window(project: Project) -> None:
    (project.root / "playbooks" / "notify.yml").write_text(
        f"---\n- name: Notify\n  hosts: localhost\n  gather_facts: false\n  tasks:\n    {FAIL}\n",
        encoding="utf-8",
    )
    rollback, marker = rollback_phase(project)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "execute", FAIL)],
        policy=POLICY,
        rollback=rollback,
    )
    assert record.outcome == "rolled-back"
    assert marker.exists()
