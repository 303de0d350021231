"""The control node's lock: one window at a time, stale locks only taken over on request."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mwctl.errors import LockHeldError, StaleLockError
from mwctl.lock import LOCK_NAME, acquire, read_holder, release
from mwctl.window import load_record, run_window
from tests.unit.mwctl_helpers import POLICY, inventory, make_project, phase

HOLDER = """
import sys, time
from pathlib import Path
from mwctl.lock import acquire
acquire(Path(sys.argv[1]), "holder-run")
print("held", flush=True)
time.sleep(60)
"""


def _dead_pid() -> int:
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait()
    return probe.pid


def _write_lock(runs_dir: Path, pid: int) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / LOCK_NAME
    path.write_text(
        json.dumps(
            {"run_id": "crashed-run", "host": socket.gethostname(), "pid": pid, "started": 0.0}
        ),
        encoding="utf-8",
    )
    return path


def test_a_second_concurrent_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(runs)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError) as caught:
            acquire(runs, "second-run")
        message = str(caught.value)
        assert "holder-run" in message
        assert socket.gethostname() in message
        assert "started 19" in message or "started 20" in message
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_run_is_refused_while_another_holds_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    mine = acquire(project.runs_dir, "other-run")
    try:
        with pytest.raises(LockHeldError, match="other-run"):
            run_window(project, inventory=inventory(project), phases=[], policy=POLICY)
    finally:
        release(project.runs_dir, mine)
    assert [p.name for p in project.runs_dir.iterdir()] == []


def test_a_stale_lock_is_reported_and_kept_without_consent(tmp_path: Path) -> None:
    path = _write_lock(tmp_path, _dead_pid())
    with pytest.raises(StaleLockError, match="--take-over-stale-lock") as caught:
        acquire(tmp_path, "new-run")
    assert "crashed-run" in str(caught.value)
    holder = read_holder(path)
    assert holder is not None
    assert holder.run_id == "crashed-run"


def test_a_stale_lock_is_taken_over_when_asked_and_released_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    lock = _write_lock(project.runs_dir, _dead_pid())
    with pytest.raises(StaleLockError):
        run_window(project, inventory=inventory(project), phases=[], policy=POLICY)
    record = run_window(
        project,
        inventory=inventory(project),
        phases=[phase(project, "only")],
        policy=POLICY,
        take_over_stale_lock=True,
    )
    assert record.outcome == "succeeded"
    assert not lock.exists()
    kinds = [d.kind for d in load_record(project.runs_dir / record.run_id).decisions]
    assert kinds == ["take-over-stale-lock"]


def test_the_lock_is_released_when_the_run_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)

    class Broken:
        def phase_started(self, name: str, title: str, budget: float) -> None:
            raise RuntimeError(name, title, budget)

        def phase_ended(self, name: str, status: str, duration: float) -> None: ...
        def event(self, event: dict[str, object]) -> None: ...
        def note(self, text: str) -> None: ...

    with pytest.raises(RuntimeError):
        run_window(
            project,
            inventory=inventory(project),
            phases=[phase(project, "only")],
            policy=POLICY,
            progress=Broken(),
        )
    assert not (project.runs_dir / LOCK_NAME).exists()
    # The lock is free again: the next run gets it.
    release(project.runs_dir, acquire(project.runs_dir, "next-run"))


def test_release_leaves_a_lock_that_is_not_ours(tmp_path: Path) -> None:
    mine = acquire(tmp_path, "mine")
    (tmp_path / LOCK_NAME).unlink()
    theirs = acquire(tmp_path, "theirs")
    release(tmp_path, mine)
    assert read_holder(tmp_path / LOCK_NAME) == theirs
