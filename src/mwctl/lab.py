"""The built-in lab: systemd containers seeded with a generated reference world."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mwctl.errors import PlaybookFailedError, UsageError
from mwctl.playbook import PlaybookResult, run_playbook
from mwctl.project import Project
from mwctl.world import generate_world, write_world

log = logging.getLogger(__name__)

CONTAINER_PREFIX = "mwlab-"

# The units each group's hosts run; `lab status` reports them.
GROUP_UNITS: dict[str, tuple[str, ...]] = {
    "ci_runners": ("ci-runner.service", "ci-scheduler.timer"),
    "registry": ("mariadb.service", "registry-service.service"),
    "cache": ("redis-server.service",),
    "protocol_hosts": ("git-daemon.service",),
    "monitoring": ("prometheus-alertmanager.service", "prometheus-node-exporter.service"),
}


@dataclass(frozen=True)
class LabSpec:
    """The parameters of a reference world: same spec, same world."""

    protocols: tuple[int, ...] = tuple(range(18, 24))
    scripts: int = 96
    seed: int = 1

    @classmethod
    def parse(cls, protocols: str, scripts: int, seed: int) -> LabSpec:
        """Build a spec from command-line text such as `18-23` or `3,5,7`.

        Raises:
            UsageError: the protocol list is malformed or empty.
        """
        numbers: set[int] = set()
        for part in protocols.split(","):
            first, dash, last = part.strip().partition("-")
            try:
                low, high = int(first), int(last if dash else first)
            except ValueError:
                msg = f"--protocols {protocols!r}: use a range like 18-23 or a list like 18,19,21"
                raise UsageError(msg) from None
            if low < 0 or high < low:
                msg = f"--protocols {protocols!r}: {part!r} is not an ascending range of numbers"
                raise UsageError(msg)
            numbers.update(range(low, high + 1))
        return cls(protocols=tuple(sorted(numbers)), scripts=scripts, seed=seed)


@dataclass(frozen=True)
class HostStatus:
    """One lab host: its container's state and its units' states."""

    host: str
    group: str
    container: str
    units: dict[str, str]


def lab_hosts(project: Project) -> dict[str, str]:
    """Map each lab host to its group, read from the lab inventory."""
    inventory: dict[str, Any] = yaml.safe_load(project.lab_inventory.read_text(encoding="utf-8"))
    groups: dict[str, Any] = inventory["all"]["children"]["lab"]["children"]["window"]["children"]
    return {
        host: group
        for group, body in groups.items()
        for host in (body or {}).get("hosts", {}) or {}
    }


def _spec_file(project: Project) -> Path:
    return project.lab_dir / "spec.json"


def seeded_spec(project: Project) -> LabSpec | None:
    """The spec of the world the lab was last brought up with, if any."""
    path = _spec_file(project)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return LabSpec(protocols=tuple(data["protocols"]), scripts=data["scripts"], seed=data["seed"])


def _podman(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **project.env()},
    )


def running_containers(project: Project) -> dict[str, str]:
    """Container name -> podman state, for the lab's containers that exist."""
    if shutil.which("podman") is None:
        return {}
    listing = _podman(project, "ps", "-a", "--filter", "label=io.mwctl.lab", "--format", "json")
    if listing.returncode != 0:
        return {}
    return {entry["Names"][0]: entry["State"] for entry in json.loads(listing.stdout or "[]")}


def lab_up(project: Project, spec: LabSpec, *, quiet: bool = False) -> PlaybookResult:
    """Generate the reference world for `spec` and bring the lab up with it.

    Raises:
        UsageError: the lab already holds a different world; nothing was changed.
        PlaybookFailedError: the lab playbook failed.
    """
    previous = seeded_spec(project)
    if previous is not None and previous != spec and running_containers(project):
        msg = (
            f"the lab already holds another world ({_describe(previous)}); "
            f"run `mwctl lab down` before `mwctl lab up` with {_describe(spec)}"
        )
        raise UsageError(msg)

    world = generate_world(spec.protocols, spec.scripts, spec.seed)
    staging = project.lab_dir / "world.new"
    shutil.rmtree(staging, ignore_errors=True)
    write_world(world, staging)
    shutil.rmtree(project.world_dir, ignore_errors=True)
    staging.rename(project.world_dir)
    _spec_file(project).write_text(json.dumps(asdict(spec)) + "\n", encoding="utf-8")
    log.info("generated the reference world: %s", _describe(spec))

    result = run_playbook(
        project,
        "playbooks/lab/up.yml",
        private_dir=project.lab_dir / "runner",
        extravars={"lab_world_dir": str(project.world_dir)},
        quiet=quiet,
    )
    if not result.succeeded:
        msg = (
            f"lab up failed on {', '.join(result.failed_hosts) or 'the control node'}; "
            f"see {result.artifact_dir / 'stdout'}"
        )
        raise PlaybookFailedError(msg)
    return result


def lab_down(project: Project, *, quiet: bool = False) -> PlaybookResult:
    """Remove the lab's containers and network, and forget its world.

    Raises:
        PlaybookFailedError: the containers could not be removed.
    """
    result = run_playbook(
        project, "playbooks/lab/down.yml", private_dir=project.lab_dir / "runner", quiet=quiet
    )
    if not result.succeeded:
        msg = f"lab down failed; see {result.artifact_dir / 'stdout'}"
        raise PlaybookFailedError(msg)
    shutil.rmtree(project.world_dir, ignore_errors=True)
    _spec_file(project).unlink(missing_ok=True)
    return result


def lab_status(project: Project) -> list[HostStatus]:
    """Report each lab host's container state and the state of its group's units."""
    containers = running_containers(project)
    statuses = []
    for host, group in lab_hosts(project).items():
        name = CONTAINER_PREFIX + host
        state = containers.get(name, "absent")
        units: dict[str, str] = {}
        if state == "running":
            for unit in GROUP_UNITS.get(group, ()):
                probe = _podman(project, "exec", name, "systemctl", "is-active", unit)
                units[unit] = probe.stdout.strip() or "unknown"
        statuses.append(HostStatus(host=host, group=group, container=state, units=units))
    return statuses


def _describe(spec: LabSpec) -> str:
    protocols = spec.protocols
    span = (
        f"{protocols[0]}-{protocols[-1]}"
        if protocols == tuple(range(protocols[0], protocols[-1] + 1))
        else ",".join(map(str, protocols))
    )
    return f"--protocols {span} --scripts {spec.scripts} --seed {spec.seed}"
