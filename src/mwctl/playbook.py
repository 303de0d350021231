"""Run one playbook through ansible-runner and keep what it reports."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from mwctl.project import Project

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], bool]

# ansible-runner's summary keys, per host: how many tasks ended in each way.
_STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


@dataclass(frozen=True)
class HostStats:
    """What one playbook did to one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class PlaybookResult:
    """The outcome of one playbook run, as ansible-runner recorded it."""

    playbook: str
    ident: str
    status: str
    rc: int
    started: float
    finished: float
    artifact_dir: Path
    hosts: dict[str, HostStats] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """True when the playbook ran to its end with no failed or unreachable host."""
        return self.status == "successful" and self.rc == 0

    @property
    def duration(self) -> float:
        """Wall time in seconds."""
        return self.finished - self.started

    @property
    def changed(self) -> int:
        """Changed tasks over all hosts."""
        return sum(stats.changed for stats in self.hosts.values())

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts with a failed task or that could not be reached."""
        return sorted(name for name, s in self.hosts.items() if s.failed or s.unreachable)


def _host_stats(stats: Mapping[str, Mapping[str, int]] | None) -> dict[str, HostStats]:
    per_host: dict[str, dict[str, int]] = {}
    for key in _STAT_KEYS:
        for host, count in ((stats or {}).get(key) or {}).items():
            per_host.setdefault(host, {})[key] = count
    return {
        host: HostStats(
            ok=counts.get("ok", 0),
            changed=counts.get("changed", 0),
            failed=counts.get("failures", 0),
            unreachable=counts.get("dark", 0),
            skipped=counts.get("skipped", 0),
        )
        for host, counts in sorted(per_host.items())
    }


def run_playbook(  # noqa: PLR0913 - each argument maps to one ansible-playbook option
    project: Project,
    playbook: str,
    *,
    private_dir: Path,
    inventory: Path | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: Sequence[str] = (),
    quiet: bool = True,
    event_handler: EventHandler | None = None,
) -> PlaybookResult:
    """Run `playbook` (relative to the checkout) and return what happened.

    Each call gets a fresh ident, because ansible-runner appends to an existing ident's
    events. Environment files are not written into the private directory, so nothing the
    environment holds ends up in a run's records.
    """
    ident = f"{Path(playbook).stem}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    cmdline = [flag for flag, wanted in (("--check", check), ("--diff", diff)) if wanted]
    private_dir.mkdir(parents=True, exist_ok=True)
    log.info("running %s (ident %s)", playbook, ident)
    started = time.time()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(project.root),
        playbook=str(project.root / playbook),
        inventory=str(inventory or project.lab_inventory),
        extravars=dict(extravars or {}),
        cmdline=" ".join(cmdline) or None,
        limit=limit,
        tags=",".join(tags) or None,
        envvars=project.env(),
        ident=ident,
        quiet=quiet,
        suppress_env_files=True,
        event_handler=event_handler,
    )
    finished = time.time()
    result = PlaybookResult(
        playbook=playbook,
        ident=ident,
        status=str(runner.status),
        rc=int(runner.rc),
        started=started,
        finished=finished,
        artifact_dir=Path(runner.config.artifact_dir),
        hosts=_host_stats(runner.stats),
    )
    log.info("%s finished: %s rc=%s in %.1fs", playbook, result.status, result.rc, result.duration)
    return result
