"""Run the maintenance window's phases in order and record what each did."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import secrets
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mwctl.playbook import HostStats, PlaybookResult, run_playbook
from mwctl.project import Project

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """One phase of the plan and the playbook that carries it out."""

    name: str
    playbook: str
    title: str


# The plan's order. A phase whose playbook is not in the checkout is reported as such.
PHASES = (
    Phase("preflight", "playbooks/preflight.yml", "Pre-window checks and go/no-go"),
    Phase("prepare", "playbooks/prepare.yml", "Phase 1: Preparation"),
    Phase("execute", "playbooks/execute.yml", "Phase 2: Execution"),
    Phase("validate", "playbooks/validate.yml", "Phase 3: Validation"),
    Phase("recover", "playbooks/recover.yml", "Phase 4: Recovery"),
)


@dataclass
class PhaseRecord:
    """What one phase did, as recorded in run.json."""

    name: str
    title: str
    playbook: str
    status: str = "pending"
    rc: int | None = None
    started: float | None = None
    finished: float | None = None
    ident: str | None = None
    hosts: dict[str, HostStats] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Wall time in seconds, once the phase has run."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass
class RunRecord:
    """The record of one run of the window: run.json in the run directory."""

    run_id: str
    mode: str
    inventory: str
    user: str
    control_host: str
    code_revision: str
    manifest_sha256: str | None
    started: float
    finished: float | None = None
    outcome: str = "running"
    phases: list[PhaseRecord] = field(default_factory=list)

    def write(self, run_dir: Path) -> Path:
        """Write run.json atomically and return its path."""
        path = run_dir / "run.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", "utf-8")
        partial.replace(path)
        return path


def new_run_id(*, rehearsal: bool) -> str:
    """A run id that sorts by start time and is safe in paths."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{'rehearsal-' if rehearsal else ''}{stamp}-{secrets.token_hex(3)}"


def code_revision(project: Project) -> str:
    """The checkout's commit, marked `-dirty` when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project.root, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def file_sha256(path: Path) -> str | None:
    """sha256 of a file, or None when it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_window(
    project: Project,
    *,
    inventory: Path,
    manifest: Path | None = None,
    check: bool = False,
    quiet: bool = True,
) -> RunRecord:
    """Run every phase in order, in check and diff mode when `check`; stop at the first failure.

    Each phase is recorded as it ends, so run.json tells how far a run got even when the
    control node dies in the middle.
    """
    run_id = new_run_id(rehearsal=check)
    run_dir = project.runs_dir / run_id
    run_dir.mkdir(parents=True, mode=0o700)
    record = RunRecord(
        run_id=run_id,
        mode="rehearsal" if check else "run",
        inventory=str(inventory),
        user=getpass.getuser(),
        control_host=socket.gethostname(),
        code_revision=code_revision(project),
        manifest_sha256=file_sha256(manifest) if manifest else None,
        started=time.time(),
        phases=[PhaseRecord(p.name, p.title, p.playbook) for p in PHASES],
    )
    record.write(run_dir)
    for phase in record.phases:
        if not (project.root / phase.playbook).is_file():
            phase.status = "not-implemented"
            log.warning("%s: %s is not in this checkout yet", phase.name, phase.playbook)
            continue
        result = _run_phase(project, phase, run_dir, inventory=inventory, check=check, quiet=quiet)
        record.write(run_dir)
        if not result.succeeded:
            record.outcome = "failed"
            break
    else:
        ran = [p for p in record.phases if p.status == "successful"]
        record.outcome = "succeeded" if len(ran) == len(record.phases) else "incomplete"
    record.finished = time.time()
    record.write(run_dir)
    return record


def _run_phase(  # noqa: PLR0913 - the phase, where to record it, and how to run it
    project: Project,
    phase: PhaseRecord,
    run_dir: Path,
    *,
    inventory: Path,
    check: bool,
    quiet: bool,
) -> PlaybookResult:
    log.info("phase %s: %s", phase.name, phase.title)
    phase.status = "running"
    phase.started = time.time()
    result = run_playbook(
        project,
        phase.playbook,
        private_dir=run_dir / "runner",
        inventory=inventory,
        extravars={"mw_run_id": run_dir.name},
        check=check,
        diff=check,
        quiet=quiet,
    )
    phase.status = result.status
    phase.rc = result.rc
    phase.finished = time.time()
    phase.ident = result.ident
    phase.hosts = result.hosts
    return result
