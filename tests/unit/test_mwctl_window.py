"""The window's rules with real tiny playbooks: time window, budgets, failures, resume."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from mwctl.errors import RefusedError, UsageError
from mwctl.playbook import _marked_processes, run_playbook
from mwctl.policy import Policy
from mwctl.progress import StreamProgress
from mwctl.schedule import TimeWindow
from mwctl.window import load_record, resume_window, run_window
from tests.unit.mwctl_helpers import (
    POLICY,
    inventory,
    make_project,
    phase,
    playbook,
    rollback_phase,
)

PAUSE = "- ansible.builtin.pause:\n        seconds: {}"
FAIL = "- ansible.builtin.fail:\n        msg: broken on purpose"


def _run_json(project_root: Path, run_id: str) -> dict[str, object]:
    path = project_root / ".runs" / run_id / "run.json"
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_window_parsing() -> None:
    window = TimeWindow.parse("2026-12-05T02:00Z/4h")
    assert window.as_dict()["start"] == "2026-12-05T02:00:00Z"
    assert window.as_dict()["end"] == "2026-12-05T06:00:00Z"
    assert TimeWindow.parse("now/1h30m", now=100.0) == TimeWindow(100.0, 100.0 + 5400)
    for bad in ("2026-12-05T02:00/4h", "tomorrow/4h", "now/4d", "now", "now/0m"):
        with pytest.raises(UsageError):
            TimeWindow.parse(bad)


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ("2000-01-01T00:00Z/4h", "closed"),
        ("2999-01-01T00:00Z/4h", "opens"),
        ("now/1m", "budgeted"),
    ],
)
def test_a_run_outside_the_window_or_too_short_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str, reason: str
) -> None:
    project = make_project(tmp_path, monkeypatch)
    marker = project.root / "ran.marker"
    task = f"- ansible.builtin.file:\n        path: {marker}\n        state: touch"
    with pytest.raises(RefusedError, match=reason):
        run_window(
            project,
            inventory=inventory(project),
            phases=[phase(project, "a", task, budget=120)],
            policy=POLICY,
            window=TimeWindow.parse(window),
        )
    assert not marker.exists()
    assert not project.runs_dir.exists() or not any(project.runs_dir.iterdir())


def test_an_overrun_with_most_of_the_work_done_is_extended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    shown = io.StringIO()
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "big", budget=9), phase(project, "slow", PAUSE.format(3), budget=1)],
        policy=POLICY,
        window=TimeWindow.parse("now/1h"),
        progress=StreamProgress(shown, task_interval=0),
    )
    assert record.outcome == "succeeded"
    assert [(d.kind, d.phase) for d in record.decisions] == [("extend", "slow")]
    assert "90%" in record.decisions[0].reason
    assert record.rollbacks == []
    data = _run_json(project.root, record.run_id)
    assert data["window"]["duration_seconds"] == 3600  # type: ignore[index]
    assert data["decisions"][0]["kind"] == "extend"  # type: ignore[index]
    lines = shown.getvalue()
    assert "phase big starts" in lines
    assert "phase slow ended: successful" in lines
    assert "decision: extend" in lines
    assert "slow: " in lines  # the current task and host


def test_an_overrun_with_little_work_done_rolls_back_and_reschedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    rollback, marker = rollback_phase(project)
    started = time.monotonic()
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "slow", PAUSE.format(30), budget=1), phase(project, "never")],
        policy=POLICY,
        rollback=rollback,
    )
    assert time.monotonic() - started < 20, "the overrunning phase was not stopped"
    assert record.outcome == "rolled-back"
    assert [d.kind for d in record.decisions] == ["rollback-and-reschedule"]
    assert [p.status for p in record.phases] == ["canceled"]
    assert marker.read_text(encoding="utf-8") == f"{record.run_id} {record.run_id}"
    stored = load_record(project.runs_dir / record.run_id)
    assert [(r.trigger, r.status) for r in stored.rollbacks] == [("overrun", "successful")]


def test_no_extension_when_the_policy_forbids_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "slow", PAUSE.format(30), budget=1)],
        policy=Policy(extend_allowed=False),
        rollback=None,
    )
    assert [d.kind for d in record.decisions] == ["rollback-and-reschedule"]
    assert "not allowed" in record.decisions[0].reason
    assert record.outcome == "failed"
    # A stopped phase leaves no process behind: ansible's workers run in sessions of their
    # own, out of reach of ansible-runner's process-group kill.
    ident = record.phases[0].ident
    assert ident
    assert _marked_processes(ident) == []


def test_a_critical_failure_stops_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    rollback, marker = rollback_phase(project)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "execute", FAIL), phase(project, "never")],
        policy=POLICY,
        rollback=rollback,
    )
    assert record.outcome == "rolled-back"
    assert [p.name for p in record.phases] == ["execute"]
    assert marker.read_text(encoding="utf-8") == f"{record.run_id} {record.run_id}"
    decision = record.decisions[-1]
    assert (decision.kind, decision.phase) == ("rollback", "execute")
    assert "critical" in decision.reason
    # The failure itself is quoted, so the record says why without the artifacts.
    assert "localhost: broken on purpose" in decision.reason
    data = _run_json(project.root, record.run_id)
    assert data["rollbacks"][0]["trigger"] == "critical-failure"  # type: ignore[index]
    assert data["rollbacks"][0]["ident"] != data["phases"][0]["ident"]  # type: ignore[index]


def test_a_partial_failure_carries_on_and_lists_the_failed_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    rollback, marker = rollback_phase(project)
    fail_one = (
        "- name: Restart the runner\n"
        "      ansible.builtin.fail:\n"
        "        msg: runner did not come back\n"
        "      when: inventory_hostname == 'local2'"
    )
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[
            phase(project, "recover", fail_one, critical=False, hosts="all"),
            phase(project, "after"),
        ],
        policy=POLICY,
        rollback=rollback,
    )
    assert record.outcome == "succeeded-with-follow-up"
    assert [(p.name, p.status) for p in record.phases] == [
        ("recover", "failed"),
        ("after", "successful"),
    ]
    assert not marker.exists()
    data = _run_json(project.root, record.run_id)
    assert data["failed_items"] == [
        {
            "phase": "recover",
            "host": "local2",
            "task": "Restart the runner",
            "msg": "runner did not come back",
        }
    ]
    assert [d["kind"] for d in data["decisions"]] == ["continue"]  # type: ignore[index]


def test_a_partial_failure_on_most_hosts_is_critical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    rollback, marker = rollback_phase(project)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "recover", FAIL, critical=False, hosts="all")],
        policy=Policy(critical_failure_threshold=0.5),
        rollback=rollback,
    )
    assert record.outcome == "rolled-back"
    assert "2 of 2 hosts failed" in record.decisions[-1].reason
    assert marker.exists()


def test_a_no_go_stops_without_rollback_and_resume_continues_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    rollback, rolled = rollback_phase(project)
    ready = project.root / "ready.marker"
    check = (
        f"- ansible.builtin.stat:\n        path: {ready}\n      register: ready\n"
        "    - ansible.builtin.assert:\n        that: ready.stat.exists"
    )
    phases = [phase(project, "preflight", check, no_go=True, critical=False), phase(project, "go")]
    first = run_window(
        project, inventory=inventory(project), phases=phases, policy=POLICY, rollback=rollback
    )
    assert first.outcome == "no-go"
    assert [d.kind for d in first.decisions] == ["no-go"]
    assert not rolled.exists()

    ready.touch()
    resumed = resume_window(project, first.run_id, phases=phases, policy=POLICY, rollback=rollback)
    assert resumed.run_id == first.run_id
    assert resumed.outcome == "succeeded"
    stored = load_record(project.runs_dir / first.run_id)
    assert [(p.name, p.status, p.attempt) for p in stored.phases] == [
        ("preflight", "failed", 1),
        ("preflight", "successful", 2),
        ("go", "successful", 1),
    ]
    assert len({p.ident for p in stored.phases}) == 3
    assert [d.kind for d in stored.decisions] == ["no-go", "resume"]
    assert sorted(p.name for p in project.runs_dir.iterdir()) == [first.run_id]
    with pytest.raises(RefusedError, match="nothing to resume"):
        resume_window(project, first.run_id, phases=phases, policy=POLICY)


def test_a_daemon_started_by_a_task_outlives_its_playbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers of a stopped playbook are ended, but not what a task meant to leave running
    # (podman's DNS server is started this way by the lab's first container).
    project = make_project(tmp_path, monkeypatch)
    pidfile = tmp_path / "daemon.pid"
    name = playbook(
        project,
        "daemon",
        "- ansible.builtin.shell: setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $! > "
        f"{pidfile}\n      changed_when: true",
    )
    result = run_playbook(
        project, name, private_dir=tmp_path / "runner", inventory=inventory(project)
    )
    assert result.succeeded
    pid = int(pidfile.read_text(encoding="utf-8"))
    try:
        # A killed daemon may linger as a zombie until init reaps it: read its state.
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
        assert state not in {"Z", "X"}, f"the daemon was ended with the playbook ({state})"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_resume_marks_an_attempt_cut_short_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    phases = [phase(project, "preflight"), phase(project, "go")]
    first = run_window(project, inventory=inventory(project), phases=phases, policy=POLICY)
    assert first.outcome == "succeeded"
    # What a run killed during "go" leaves behind: the phase and the run still running.
    path = project.runs_dir / first.run_id / "run.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["outcome"] = "running"
    data["phases"][-1].update(status="running", finished=None, rc=None)
    path.write_text(json.dumps(data), encoding="utf-8")

    resumed = resume_window(project, first.run_id, phases=phases, policy=POLICY)

    assert resumed.outcome == "succeeded"
    stored = load_record(project.runs_dir / first.run_id)
    assert [(p.name, p.status, p.attempt) for p in stored.phases] == [
        ("preflight", "successful", 1),
        ("go", "interrupted", 1),
        ("go", "successful", 2),
    ]
