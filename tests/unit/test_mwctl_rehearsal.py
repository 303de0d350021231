"""A run repeats a rehearsal: same manifest, inventory, code and scope, and its approvals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mwctl.approvals import approve, load_approvals
from mwctl.errors import RefusedError, UsageError
from mwctl.policy import Policy
from mwctl.provenance import REDACTED, inventory_sha256
from mwctl.report import write_reports
from mwctl.window import run_window
from tests.unit.mwctl_helpers import POLICY, inventory, make_project, phase

SECRET = "hunter2-do-not-record"  # noqa: S105 - a test value, never a credential
# Checks the scope and the secret reach the playbook, and prints the secret as a failing
# playbook would.
USES_VARS = (
    "- ansible.builtin.assert:\n"
    "        that:\n"
    "          - mw_window_protocols == [18, 19]\n"
    "          - registry_password == 'hunter2-do-not-record'\n"
    "    - ansible.builtin.debug:\n"
    '        msg: "connecting with {{ registry_password }}"'
)


@pytest.fixture
def rehearsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    project = make_project(tmp_path, monkeypatch)
    manifest = project.root / "manifest.yml"
    manifest.write_text("mw_rename_manifest: []\n", encoding="utf-8")
    phases = [phase(project, "only", USES_VARS)]
    record = run_window(
        project,
        inventory=inventory(project),
        manifest=manifest,
        check=True,
        phases=phases,
        policy=POLICY,
        protocols=[19, 18],
        extravars={"registry_password": SECRET},
    )
    assert record.outcome == "succeeded", record
    assert record.mode == "rehearsal"
    return {"project": project, "manifest": manifest, "phases": phases, "rehearsal": record}


def _run(setup: dict[str, object], **overrides: object) -> object:
    options: dict[str, object] = {
        "inventory": inventory(setup["project"]),  # type: ignore[arg-type]
        "manifest": setup["manifest"],
        "phases": setup["phases"],
        "policy": POLICY,
        "protocols": [18, 19],
        "extravars": {"registry_password": SECRET},
        "from_rehearsal": setup["rehearsal"].run_id,  # type: ignore[attr-defined]
    }
    options.update(overrides)
    return run_window(setup["project"], **options)  # type: ignore[arg-type]


def test_a_changed_manifest_is_refused(rehearsed: dict[str, object]) -> None:
    manifest: Path = rehearsed["manifest"]  # type: ignore[assignment]
    manifest.write_text(
        "mw_rename_manifest:\n  - {protocol: 19, from: a.sh, to: b.sh}\n", encoding="utf-8"
    )
    with pytest.raises(RefusedError, match="manifest sha256 was"):
        _run(rehearsed)


def test_a_changed_inventory_or_scope_is_refused(rehearsed: dict[str, object]) -> None:
    with pytest.raises(RefusedError, match="protocols was"):
        _run(rehearsed, protocols=[18])
    hosts = inventory(rehearsed["project"])  # type: ignore[arg-type]
    hosts.write_text(hosts.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    with pytest.raises(RefusedError, match="inventory sha256 was"):
        _run(rehearsed)


def test_only_a_successful_rehearsal_can_be_run_from(
    rehearsed: dict[str, object], tmp_path: Path
) -> None:
    project = rehearsed["project"]
    failing = [phase(project, "broken", "- ansible.builtin.fail:\n        msg: no")]  # type: ignore[arg-type]
    bad = run_window(
        project,  # type: ignore[arg-type]
        inventory=inventory(project),  # type: ignore[arg-type]
        check=True,
        phases=failing,
        policy=POLICY,
    )
    assert bad.outcome == "failed"
    with pytest.raises(RefusedError, match="that failed"):
        _run(rehearsed, from_rehearsal=bad.run_id)
    with pytest.raises(UsageError, match="no run 'nonexistent'"):
        _run(rehearsed, from_rehearsal="nonexistent")
    del tmp_path


def test_required_approvals_are_enforced_then_used(rehearsed: dict[str, object]) -> None:
    policy = Policy(required_approvals=("change-manager", "service-owner"))
    with pytest.raises(RefusedError, match="change-manager, service-owner"):
        _run(rehearsed, policy=policy)
    with pytest.raises(RefusedError, match="no --from-rehearsal"):
        _run(rehearsed, policy=policy, from_rehearsal=None)
    project = rehearsed["project"]
    rehearsal_dir = project.runs_dir / rehearsed["rehearsal"].run_id  # type: ignore[attr-defined]
    approve(rehearsal_dir, role="change-manager", name="Ada")
    with pytest.raises(RefusedError, match=r"missing approvals .*: service-owner\. "):
        _run(rehearsed, policy=policy)
    approve(rehearsal_dir, role="service-owner", name="Grace")
    assert [a.name for a in load_approvals(rehearsal_dir)] == ["Ada", "Grace"]

    record = _run(rehearsed, policy=policy)
    assert record.outcome == "succeeded"  # type: ignore[attr-defined]
    run_dir = project.runs_dir / record.run_id  # type: ignore[attr-defined]
    data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert [a["role"] for a in data["approvals"]] == ["change-manager", "service-owner"]
    assert data["from_rehearsal"] == rehearsed["rehearsal"].run_id  # type: ignore[attr-defined]
    assert data["protocols"] == [18, 19]
    assert data["inventory_sha256"] == inventory_sha256(inventory(project))  # type: ignore[arg-type]

    # Secrets reach the playbooks (the assert above passed) but no record or report.
    assert data["extravars"] == {"registry_password": REDACTED}
    write_reports(record, run_dir)  # type: ignore[arg-type]
    for name in ("run.json", "report.md", "report.html", "report.junit.xml", "report.json"):
        assert SECRET not in (run_dir / name).read_text(encoding="utf-8"), name


def test_approve_needs_an_existing_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no run"):
        approve(tmp_path / "missing", role="change-manager", name="Ada")
