"""The window's plan before it runs: which script becomes which on which hosts, or why not."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mwctl.errors import UsageError
from mwctl.project import Project

_FILTER = Path("plugins") / "filter" / "mw_manifest.py"
_DEFAULT_SCRIPTS_DIR = "scripts/validation"


@dataclass(frozen=True)
class PlannedRename:
    """One rename of the batch."""

    protocol: int
    old: str
    new: str


@dataclass
class WindowPlan:
    """The batch the window would apply, the hosts it would apply it on, and any no-go."""

    manifest: Path | None
    inventory: Path
    protocols: list[int]
    hosts: list[str] = field(default_factory=list)
    renames: list[PlannedRename] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def go(self) -> bool:
        """True when nothing stands in the way of the window."""
        return not self.problems


def default_manifest(project: Project, inventory: Path) -> Path | None:
    """The manifest that goes with `inventory`: the lab's world, or manifest.yml beside it."""
    if inventory.resolve() == project.lab_inventory.resolve():
        return project.world_dir / "manifest.yml"
    beside = (inventory if inventory.is_dir() else inventory.parent) / "manifest.yml"
    return beside if beside.is_file() else None


def _manifest_filter(project: Project) -> Any:  # noqa: ANN401 - a function of a plugin module
    """The project's own manifest validation, so the plan and the playbooks agree."""
    path = project.root / _FILTER
    spec = importlib.util.spec_from_file_location("mw_manifest", path)
    if spec is None or spec.loader is None or not path.is_file():
        msg = f"the manifest filter {path} is missing from the checkout"
        raise UsageError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mw_manifest_batch


def _group_hosts(groups: Mapping[str, Any], name: str) -> set[str]:
    group = groups.get(name) or {}
    hosts = set(group.get("hosts") or [])
    for child in group.get("children") or []:
        hosts |= _group_hosts(groups, child)
    return hosts


def protocol_hosts(project: Project, inventory: Path) -> list[str]:
    """The hosts of the `protocol_hosts` group, as ansible reads the inventory.

    Raises:
        UsageError: ansible-inventory cannot read the inventory.
    """
    beside = Path(sys.executable).parent / "ansible-inventory"
    command = str(beside) if beside.is_file() else shutil.which("ansible-inventory")
    if command is None:
        msg = "ansible-inventory is not installed beside mwctl nor on PATH"
        raise UsageError(msg)
    result = subprocess.run(
        [command, "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **project.env()},
    )
    if result.returncode:
        msg = f"ansible-inventory cannot read {inventory}: {result.stderr.strip()[-500:]}"
        raise UsageError(msg)
    return sorted(_group_hosts(json.loads(result.stdout), "protocol_hosts"))


def _read_manifest(path: Path) -> object:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, Mapping) and "mw_rename_manifest" in data:
        return data["mw_rename_manifest"]
    return data


def make_plan(
    project: Project,
    inventory: Path,
    *,
    manifest: Path | None = None,
    protocols: Sequence[int] = (),
) -> WindowPlan:
    """Work out the window's batch and hosts; every reason for a no-go goes in `problems`."""
    manifest = manifest or default_manifest(project, inventory)
    plan = WindowPlan(manifest=manifest, inventory=inventory, protocols=sorted(set(protocols)))
    try:
        plan.hosts = protocol_hosts(project, inventory)
    except UsageError as error:
        plan.problems.append(str(error))
    else:
        if not plan.hosts:
            plan.problems.append(f"the inventory {inventory} has no host in protocol_hosts")
    if manifest is None or not manifest.is_file():
        plan.problems.append(
            f"no manifest: {manifest or 'none beside the inventory'}; pass --manifest FILE"
        )
        return plan
    batch_of = _manifest_filter(project)
    try:
        entries = _read_manifest(manifest)
        known = sorted({e["protocol"] for e in batch_of(entries, _DEFAULT_SCRIPTS_DIR)})
        batch = batch_of(entries, _DEFAULT_SCRIPTS_DIR, plan.protocols)
    except yaml.YAMLError as error:
        plan.problems.append(f"{manifest} is not valid YAML: {error}")
        return plan
    except Exception as error:  # noqa: BLE001 - the filter raises ansible's error type
        plan.problems.append(f"{manifest}: {error}")
        return plan
    unknown = [p for p in plan.protocols if p not in known]
    if unknown:
        plan.problems.append(f"protocols {unknown} have no entry in the manifest (it has {known})")
    if not batch:
        plan.problems.append("the batch is empty: nothing to rename")
    plan.renames = [PlannedRename(e["protocol"], e["from"], e["to"]) for e in batch]
    return plan


def render_plan(plan: WindowPlan) -> str:
    """The plan as a table, followed by its verdict."""
    hosts = ", ".join(plan.hosts) or "-"
    rows = [f"| {r.protocol} | {r.old} -> {r.new} | {hosts} |" for r in plan.renames]
    lines = [
        f"manifest: {plan.manifest or 'none'}",
        f"inventory: {plan.inventory}",
        f"protocols: {', '.join(map(str, plan.protocols)) or 'all of the manifest'}",
        "",
        "| protocol | old -> new | hosts |",
        "|---|---|---|",
        *rows,
        "",
    ]
    if plan.problems:
        lines.append("NO-GO:")
        lines += [f"  - {problem}" for problem in plan.problems]
    else:
        lines.append(f"go: {len(plan.renames)} renames on {len(plan.hosts)} hosts")
    return "\n".join(lines)
