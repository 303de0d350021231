"""The command line over a throwaway project: run, runs, status, report, approve, rollback, plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mwctl.cli import main
from mwctl.lock import LOCK_NAME
from tests.unit.mwctl_helpers import REPO, make_project, playbook

MARKER_TASK = (
    "- ansible.builtin.copy:\n"
    "        dest: {marker}\n"
    '        content: "{{{{ mw_run_id }}}} {{{{ restore_run_id }}}}"\n'
    "        mode: '0600'"
)


def test_run_prints_the_lines_tools_parse_and_writes_every_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path, monkeypatch)
    # No phase playbook exists in this project: every phase is reported as not implemented.
    assert main(["run", "-q", "-i", str(project.root / "hosts"), "--protocols", "18-19,21"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"^report: (.*)/report\.md$", out, re.MULTILINE)
    assert match
    run_dir = Path(match.group(1))
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert re.search(rf"^run {record['run_id']}: incomplete$", out, re.MULTILINE)
    assert record["protocols"] == [18, 19, 21]
    assert {"run_id", "mode", "outcome", "phases", "inventory_sha256", "decisions"} <= set(record)
    for name in ("report.md", "report.html", "report.junit.xml", "report.json"):
        assert (run_dir / name).is_file()
    assert not (project.runs_dir / LOCK_NAME).exists()

    assert main(["runs"]) == 0
    assert record["run_id"] in capsys.readouterr().out
    assert main(["status", record["run_id"]]) == 0
    assert "not-implemented" in capsys.readouterr().out
    (run_dir / "report.junit.xml").unlink()
    assert main(["report", record["run_id"], "--format", "junit"]) == 0
    assert (run_dir / "report.junit.xml").is_file()
    assert main(["approve", record["run_id"], "--role", "change-manager", "--name", "Ada"]) == 0
    approvals = json.loads((run_dir / "approvals.json").read_text(encoding="utf-8"))
    assert [(a["role"], a["name"]) for a in approvals] == [("change-manager", "Ada")]

    marker = project.root / "rollback.marker"
    playbook(project, "rollback", MARKER_TASK.format(marker=marker))
    assert main(["rollback", "-q", record["run_id"]]) == 0
    assert marker.read_text(encoding="utf-8") == f"{record['run_id']} {record['run_id']}"
    stored = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert [(r["trigger"], r["status"]) for r in stored["rollbacks"]] == [
        ("operator", "successful")
    ]
    assert stored["outcome"] == "rolled-back"
    assert f"run {record['run_id']}: rolled-back" in capsys.readouterr().out


def test_refusals_exit_non_zero_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_project(tmp_path, monkeypatch)
    assert main(["run", "-q", "--window", "2000-01-01T00:00Z/4h"]) == 2  # lab inventory absent
    hosts = str(tmp_path / "project" / "hosts")
    assert main(["run", "-q", "-i", hosts, "--window", "2000-01-01T00:00Z/4h"]) == 5
    assert "closed" in caplog.text
    assert main(["status", "no-such-run"]) == 2


def _plan_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = make_project(tmp_path, monkeypatch)
    (project.root / "plugins").symlink_to(REPO / "plugins")
    inventory = project.root / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  children:\n    protocol_hosts:\n      hosts:\n"
        "        build-01:\n        build-02:\n"
        "    registry:\n      hosts:\n        reg-01:\n",
        encoding="utf-8",
    )
    (inventory / "manifest.yml").write_text(
        "mw_rename_manifest:\n"
        "  - {protocol: 18, from: validate-p19-a.sh, to: validate-p18-a.sh}\n"
        "  - {protocol: 19, from: validate-p18-b.sh, to: validate-p19-b.sh}\n",
        encoding="utf-8",
    )
    return inventory


def test_plan_shows_the_batch_per_protocol_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = _plan_project(tmp_path, monkeypatch)
    assert main(["plan", "-i", str(inventory), "--protocols", "19"]) == 0
    out = capsys.readouterr().out
    assert "| 19 | validate-p18-b.sh -> validate-p19-b.sh | build-01, build-02 |" in out
    assert "validate-p19-a.sh" not in out
    assert "go: 1 renames on 2 hosts" in out

    assert main(["plan", "-i", str(inventory), "--protocols", "19,30"]) == 1
    assert "protocols [30] have no entry" in capsys.readouterr().out

    bad = inventory / "bad.yml"
    bad.write_text("mw_rename_manifest:\n  - {protocol: 18, from: a.sh, to: a.sh}\n", "utf-8")
    assert main(["plan", "-i", str(inventory), "--manifest", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "NO-GO" in out
    assert "renames 'a.sh' to itself" in out
