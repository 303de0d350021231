"""The whole window against the lab: rehearse, run, rerun, roll back, roll back again.

The steps share one lab and run in order; each test checks one property of the sequence.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from mwctl.project import Project
from tests.integration.conftest import REPO, run_playbook_cli
from tests.integration.lab_state import PROTOCOL_HOSTS, differences, fingerprint, podman_exec
from tests.integration.window_runs import mwctl

RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
    re.MULTILINE,
)

# The run ids of the rehearsal and of the window, for the steps that build on them.
REHEARSAL: list[str] = []
WINDOW_RUN: list[str] = []


def changed_hosts(output: str) -> dict[str, int]:
    """Hosts of a play recap with changed tasks, ignoring the control node's run records."""
    return {
        host: int(changed)
        for host, changed, _, _ in RECAP.findall(output)
        if int(changed) and host != "localhost"
    }


def run_file(output: str, name: str) -> dict[str, Any]:
    """A JSON file of the run directory that mwctl's output names."""
    match = re.search(r"^report: (.*)/report\.md$", output, re.MULTILINE)
    assert match, output[-2000:]
    loaded: dict[str, Any] = json.loads((Path(match.group(1)) / name).read_text(encoding="utf-8"))
    return loaded


def run_record(output: str) -> dict[str, Any]:
    return run_file(output, "run.json")


@pytest.fixture(scope="module")
def pre_window(request: pytest.FixtureRequest) -> dict[str, str]:
    # The fingerprint is only meaningful once the lab is up and seeded.
    request.getfixturevalue("lab")
    return fingerprint()


@pytest.mark.usefixtures("lab")
def test_rehearsal_changes_nothing(pre_window: dict[str, str]) -> None:
    result = mwctl("rehearse", "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    record = run_record(result.stdout)
    assert record["mode"] == "rehearsal"
    assert record["outcome"] == "succeeded", record
    REHEARSAL.append(str(record["run_id"]))
    assert differences(pre_window, fingerprint()) == []
    # mwctl's own proof, from its state manifests: taken before phase 1 and after phase 4.
    assert [(c["after"], c["equal"]) for c in record["state_checks"]] == [("rehearsal", True)]


@pytest.mark.usefixtures("lab")
def test_window_runs_what_was_rehearsed() -> None:
    assert REHEARSAL, "the rehearsal did not succeed"
    result = mwctl("run", "-q", "--from-rehearsal", REHEARSAL[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = run_record(result.stdout)
    WINDOW_RUN.append(str(record["run_id"]))
    assert record["outcome"] == "succeeded", record
    assert record["from_rehearsal"], record
    assert [phase["status"] for phase in record["phases"]] == ["successful"] * 5
    report = run_file(result.stdout, "report.json")
    unmet = [metric for metric in report["metrics"] if not metric["met"]]
    assert report["metrics"], report
    assert unmet == []


def test_window_renamed_every_script_and_reference(lab: Project) -> None:
    manifest = (lab.world_dir / "manifest.yml").read_text(encoding="utf-8")
    targets = re.findall(r"to: (\S+)", manifest)
    for host in PROTOCOL_HOSTS:
        listing = podman_exec(host, "ls /opt/project/scripts/validation").split()
        assert set(targets) <= set(listing), host
        failing = podman_exec(
            host,
            "cd /opt/project && for f in scripts/validation/*.sh; do "
            "sh $f --self-test >/dev/null 2>&1 || echo $f; done",
        )
        assert failing == "", f"{host}: self-tests fail after the window: {failing}"
    registered = podman_exec(
        "registry1", "mariadb -N -B -e 'SELECT name FROM script_registry.scripts'"
    ).split()
    assert set(targets) <= set(registered)


def lab_secrets() -> list[str]:
    """The lab inventory's secret values: what no file of a run may hold."""
    settings = yaml.safe_load(
        (REPO / "inventory" / "lab" / "group_vars" / "lab.yml").read_text(encoding="utf-8")
    )
    keys = [k for k in settings if any(w in k for w in ("password", "token", "secret"))]
    return [str(settings[k]) for k in keys if settings[k]]


def files_holding(root: Path, secrets: list[str]) -> list[str]:
    """Files under root, and members of the archives among them, that hold a secret."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blobs = [(str(path), path.read_bytes())]
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                blobs += [
                    (f"{path}:{member.name}", archive.extractfile(member).read())  # type: ignore[union-attr]
                    for member in archive.getmembers()
                    if member.isfile()
                ]
        found += [name for name, blob in blobs if any(s.encode() in blob for s in secrets)]
    return found


def test_no_file_of_the_runs_holds_a_secret(lab: Project) -> None:
    assert REHEARSAL, "the rehearsal did not succeed"
    assert WINDOW_RUN, "the window did not run"
    secrets = lab_secrets()
    assert secrets, "the lab inventory names no secret; this test would prove nothing"
    checked = [lab.runs_dir / run for run in (*REHEARSAL, *WINDOW_RUN)]
    assert all(run.is_dir() for run in checked)
    assert [f for run in checked for f in files_holding(run, secrets)] == []


def test_execute_phase_rerun_changes_nothing(lab: Project) -> None:
    # The phase run again as part of the same run, as after an interrupted window.
    assert WINDOW_RUN, "the window did not run"
    result = run_playbook_cli(lab, "playbooks/execute.yml", "-e", f"mw_run_id={WINDOW_RUN[0]}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert changed_hosts(result.stdout) == {}


def test_rollback_restores_the_pre_window_state(lab: Project, pre_window: dict[str, str]) -> None:
    assert WINDOW_RUN, "the window did not run"
    result = mwctl("rollback", "-q", WINDOW_RUN[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = run_record(result.stdout)
    assert record["outcome"] == "rolled-back", record["decisions"]
    # The state manifest after the rollback equals the one taken before phase 1.
    (check,) = record["state_checks"]
    assert (check["after"], check["equal"], check["differences"]) == ("rollback 1", True, [])
    assert record["decisions"][-1]["kind"] == "restored-exactly"
    report = (lab.runs_dir / WINDOW_RUN[0] / "report.md").read_text(encoding="utf-8")
    assert "| rollback 1 | restored exactly |" in report
    assert differences(pre_window, fingerprint()) == []


def test_second_rollback_changes_nothing(lab: Project, pre_window: dict[str, str]) -> None:
    # As ops run it by hand: the latest verified backup on each host.
    result = run_playbook_cli(lab, "rollback.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert {
        h: c
        for h, c in changed_hosts(result.stdout).items()
        if h in ("proto1", "proto2", "registry1")
    } == {}
    assert differences(pre_window, fingerprint()) == []
