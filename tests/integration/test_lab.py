"""The built-in lab: real systemd hosts with their services, seeded with the reference world."""

from __future__ import annotations

import json
import subprocess

from mwctl.lab import GROUP_UNITS, lab_hosts, lab_status
from mwctl.project import Project


def podman_exec(host: str, *argv: str) -> str:
    result = subprocess.run(
        ["podman", "exec", f"mwlab-{host}", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_every_host_boots_systemd(lab: Project) -> None:
    for host in lab_hosts(lab):
        assert podman_exec(host, "systemctl", "is-system-running").strip() == "running", host


def test_every_group_runs_its_units(lab: Project) -> None:
    statuses = {status.host: status for status in lab_status(lab)}
    for host, group in lab_hosts(lab).items():
        expected = set(GROUP_UNITS[group])
        assert set(statuses[host].units) == expected
        assert set(statuses[host].units.values()) == {"active"}, statuses[host]


def test_the_world_is_seeded_as_generated(lab: Project) -> None:
    world = json.loads((lab.world_dir / "world.json").read_text(encoding="utf-8"))
    registered = podman_exec(
        "registry1", "mariadb", "-N", "-e", "SELECT COUNT(*) FROM script_registry.scripts"
    )
    assert int(registered) == world["script_count"]
    for host in ("proto1", "proto2"):
        protocols = podman_exec(host, "ls", "/opt/project/.cursor/ai-driven-workflow").split()
        assert protocols == [f"protocol-{n}" for n in world["protocols"]]
        assert podman_exec(host, "git", "-C", "/opt/project", "status", "--porcelain") == ""


def test_runners_reach_the_registry_and_the_checkout(lab: Project) -> None:
    world = json.loads((lab.world_dir / "world.json").read_text(encoding="utf-8"))
    answer = podman_exec(
        "runner1", "curl", "-sf", f"http://registry1:8080/scripts?protocol={world['protocols'][0]}"
    )
    assert json.loads(answer), "the registry service listed no script"
    assert "HEAD" in podman_exec("runner1", "git", "ls-remote", "git://proto1/project")
