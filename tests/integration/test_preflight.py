"""Preflight against a lab with bad input and broken hosts: one no-go names every problem.

The faults are planted together, so one preflight run must list each of them with its
host and its fix, leave the lab as it found it, and keep the password it was given out
of its output and its records.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from mwctl.project import Project
from tests.integration.conftest import REPO, run_playbook_cli
from tests.integration.lab_state import differences, fingerprint, podman_exec

WRONG_PASSWORD = "preflight-wrong-password-4711"  # noqa: S105 - a test value, meant to be hunted
OTHER_RUN = "20261201T020000Z-42424"
LOCK_FILE = "/var/lib/maintenance-window/protocol.lock"
# The containers' /dev/shm is a real 64 MiB tmpfs: filled, it is a full disk.
SMALL_FS = "/dev/shm"  # noqa: S108 - a path inside a lab container
FILLER = f"{SMALL_FS}/preflight-filler"


def write_inventory(directory: Path, hosts: dict[str, Any]) -> Path:
    """An inventory beside the lab's group_vars, so its hosts get the lab's settings."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "group_vars"
    if not link.exists():
        link.symlink_to(REPO / "inventory" / "lab" / "group_vars")
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(hosts), encoding="utf-8")
    return path


def lab_inventory() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO / "inventory" / "lab" / "hosts.yml").read_text(encoding="utf-8")
    )
    return loaded


def window_groups(inventory: dict[str, Any]) -> dict[str, Any]:
    groups: dict[str, Any] = inventory["all"]["children"]["lab"]["children"]["window"]["children"]
    return groups


@pytest.fixture
def keep_current_run() -> Iterator[None]:
    """A preflight opens a run; the lab's open run is put back as it was."""
    current = REPO / ".runs" / "current"
    before = current.read_bytes() if current.exists() else None
    yield
    if before is None:
        current.unlink(missing_ok=True)
    else:
        current.write_bytes(before)


@pytest.fixture
def faults(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Plant the faults; take them away again whatever the test found."""
    request.getfixturevalue("lab")
    edited = podman_exec("proto1", "ls /opt/project/scripts/validation | sort | head -n 1").strip()
    now = datetime.now(UTC)
    lock = {
        "owner": "alice",
        "run_id": OTHER_RUN,
        "host": "proto2",
        "started": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (now + timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    inventory = lab_inventory()
    # A host of the inventory whose container does not exist.
    window_groups(inventory)["protocol_hosts"]["hosts"]["ghost1"] = {"ansible_host": "mwlab-ghost1"}
    try:
        podman_exec(
            "proto1",
            f"echo '# edited during the freeze' >> /opt/project/scripts/validation/{edited}",
        )
        podman_exec(
            "proto2",
            f"mkdir -p {Path(LOCK_FILE).parent} && "
            f"printf '%s' {shlex.quote(json.dumps(lock))} > {LOCK_FILE} && "
            # All but 16 KiB of the tmpfs.
            f"fallocate -l $(( $(df --output=avail -B1 {SMALL_FS} | tail -n 1) - 16384 )) {FILLER}",
        )
        yield {
            "edited": edited,
            "inventory": write_inventory(tmp_path / "inventory", inventory),
            "before": fingerprint(),
        }
    finally:
        podman_exec("proto1", f"cd /opt/project && git checkout -- scripts/validation/{edited}")
        podman_exec("proto2", f"rm -f {LOCK_FILE} {FILLER}")


def findings(run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    decision = json.loads((REPO / ".runs" / run_id / "preflight.json").read_text(encoding="utf-8"))
    assert decision["go"] is False, decision
    return {(item["host"], item["check"]): item for item in decision["findings"]}


@pytest.mark.usefixtures("keep_current_run")
def test_one_no_go_names_every_fault_and_changes_nothing(
    lab: Project, faults: dict[str, Any]
) -> None:
    run_id = f"preflight-faults-{uuid.uuid4().hex[:6]}"
    result = run_playbook_cli(
        lab,
        "playbooks/preflight.yml",
        f"--inventory={faults['inventory']}",
        "--extra-vars",
        json.dumps(
            {
                "mw_run_id": run_id,
                "mw_backup_dir": f"{SMALL_FS}/mw-backups",
                "preflight_min_free_mb": 2,
                "mw_registry_admin_user": "mw_intruder",
                "mw_registry_admin_password": WRONG_PASSWORD,
            }
        ),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    found = findings(run_id)
    failing = {key: item["detail"] for key, item in found.items() if not item["ok"]}

    assert set(failing) == {
        ("proto1", "protocol freeze"),
        ("proto2", "protocol freeze"),
        ("proto2", "disk space"),
        ("proto2", "backups verifiable"),
        ("registry1", "registry reachable"),
        ("registry1", "registry knows every script"),
        ("registry1", "backups verifiable"),
        ("ghost1", "host reachable"),
    }, failing
    assert faults["edited"] in failing["proto1", "protocol freeze"]
    assert "commit or revert" in failing["proto1", "protocol freeze"]
    assert OTHER_RUN in failing["proto2", "protocol freeze"]
    assert "alice" in failing["proto2", "protocol freeze"]
    assert SMALL_FS in failing["proto2", "disk space"]
    assert "not enough free space" in failing["proto2", "backups verifiable"]
    assert "mw_backup_dir" in failing["proto2", "backups verifiable"]
    assert "mw_registry_admin_user" in failing["registry1", "registry reachable"]
    assert "mw_intruder" in failing["registry1", "backups verifiable"]
    assert "fix its connection" in failing["ghost1", "host reachable"]
    # Every host with a finding appears in the one NO-GO message that stops the run.
    no_go = next(line for line in output.splitlines() if "NO-GO:" in line)
    for host in ("proto1", "proto2", "registry1", "ghost1"):
        assert f"{host}:" in no_go, no_go
    assert "Nothing was changed" in no_go

    assert differences(faults["before"], fingerprint()) == []
    assert podman_exec("proto1", f"ls {SMALL_FS}") == ""
    assert WRONG_PASSWORD not in output
    leaking = [
        str(path)
        for path in (REPO / ".runs" / run_id).rglob("*")
        if path.is_file() and WRONG_PASSWORD.encode() in path.read_bytes()
    ]
    assert leaking == []


@pytest.mark.usefixtures("keep_current_run")
def test_an_inventory_without_a_required_group_is_a_no_go(lab: Project, tmp_path: Path) -> None:
    inventory = lab_inventory()
    del window_groups(inventory)["cache"]
    run_id = f"preflight-groups-{uuid.uuid4().hex[:6]}"
    result = run_playbook_cli(
        lab,
        "playbooks/preflight.yml",
        f"--inventory={write_inventory(tmp_path / 'inventory', inventory)}",
        "--extra-vars",
        f"mw_run_id={run_id}",
    )
    assert result.returncode != 0, result.stdout[-3000:]
    failing = {key: item["detail"] for key, item in findings(run_id).items() if not item["ok"]}
    assert failing == {
        (
            "inventory",
            "group cache",
        ): "cache: 0 hosts (add the group and its hosts to the inventory)"
    }


@pytest.mark.usefixtures("keep_current_run")
def test_a_manifest_file_that_is_not_there_is_named_before_the_run_opens(lab: Project) -> None:
    run_id = f"preflight-manifest-{uuid.uuid4().hex[:6]}"
    result = run_playbook_cli(
        lab,
        "playbooks/preflight.yml",
        "--extra-vars",
        json.dumps({"mw_run_id": run_id, "mw_rename_manifest_file": "/nowhere/manifest.yml"}),
    )
    assert result.returncode != 0, result.stdout[-3000:]
    assert "The rename manifest /nowhere/manifest.yml (mw_rename_manifest_file)" in result.stdout
    assert "Point mw_rename_manifest_file at the YAML file" in result.stdout
    assert not (REPO / ".runs" / run_id).exists()
