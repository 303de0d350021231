"""Run the maintenance window's phases in order, decide as the policy says, record it all."""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mwctl.approvals import load_approvals, missing_roles
from mwctl.errors import MwctlError, RefusedError, UsageError
from mwctl.lock import window_lock
from mwctl.playbook import (
    FailedItem,
    HostStats,
    PlaybookResult,
    changed_tasks,
    failed_hosts,
    run_playbook,
)
from mwctl.policy import CRITICAL, NO_GO, PARTIAL, Policy, load_policy
from mwctl.progress import NoProgress, Progress
from mwctl.project import Project
from mwctl.provenance import (
    REDACTED,
    code_revision,
    file_sha256,
    inventory_sha256,
    redact,
    scrub,
    secret_values,
    worktree_sha256,
)
from mwctl.schedule import TimeWindow
from mwctl.state import PLAYBOOK as STATE_PLAYBOOK
from mwctl.state import capture_state, diff_states, load_state, render_difference

__all__ = [
    "PHASES",
    "ROLLBACK",
    "Decision",
    "Phase",
    "PhaseFailure",
    "PhaseRecord",
    "RollbackRecord",
    "RunRecord",
    "StateCheck",
    "code_revision",
    "file_sha256",
    "load_record",
    "new_run_id",
    "resume_window",
    "rollback_run",
    "run_window",
]

log = logging.getLogger(__name__)

_MINUTE = 60.0
# Outcomes after which continuing the window forwards makes no sense.
_FINAL = {
    "succeeded",
    "succeeded-with-follow-up",
    "rolled-back",
    "rolled-back-with-differences",
    "rollback-failed",
}
# The playbook mwctl sends its own notifications with (progress, decisions).
NOTIFY_PLAYBOOK = "playbooks/notify.yml"
# How much of a failed task's message a decision's reason quotes.
_REASON_CHARS = 400
# The state the window starts from, captured in the run directory just before its first
# change; rehearsals and rollbacks are judged against it.
PRE_WINDOW_STATE = Path("state") / "pre-window.json"


@dataclass(frozen=True)
class Phase:
    """One phase of the plan and the playbook that carries it out.

    Attributes:
        name: short name, used in run.json and in the policy file.
        playbook: the playbook, relative to the project root.
        title: the plan's name for the phase.
        budget_seconds: wall time the plan gives the phase.
        critical: a failure stops the window and rolls it back; otherwise the failure is
            partial: the window carries on and reports it as follow-up work.
        no_go: the phase changes nothing, so a failure means no-go: stop, no rollback.
    """

    name: str
    playbook: str
    title: str
    budget_seconds: float = 60 * _MINUTE
    critical: bool = True
    no_go: bool = False

    @property
    def on_failure(self) -> str:
        """What a failure of this phase means: no-go, critical or partial."""
        if self.no_go:
            return NO_GO
        return CRITICAL if self.critical else PARTIAL


# The plan's order and durations. A phase whose playbook is not in the checkout is
# reported as such.
PHASES = (
    Phase(
        "preflight",
        "playbooks/preflight.yml",
        "Pre-window checks and go/no-go",
        budget_seconds=30 * _MINUTE,
        critical=False,
        no_go=True,
    ),
    Phase("prepare", "playbooks/prepare.yml", "Phase 1: Preparation", 30 * _MINUTE),
    Phase("execute", "playbooks/execute.yml", "Phase 2: Execution", 60 * _MINUTE),
    Phase("validate", "playbooks/validate.yml", "Phase 3: Validation", 60 * _MINUTE),
    Phase("recover", "playbooks/recover.yml", "Phase 4: Recovery", 60 * _MINUTE, critical=False),
)

# The plan's emergency rollback.
ROLLBACK = Phase("rollback", "rollback.yml", "Emergency rollback", 60 * _MINUTE)


def apply_policy(phases: Sequence[Phase], policy: Policy) -> list[Phase]:
    """The phases with the policy's budgets and failure classes applied."""
    applied = []
    for phase in phases:
        rule = policy.rule(phase.name)
        changed = phase
        if rule.budget_seconds is not None:
            changed = dataclasses.replace(changed, budget_seconds=rule.budget_seconds)
        if rule.on_failure is not None:
            changed = dataclasses.replace(
                changed, no_go=rule.on_failure == NO_GO, critical=rule.on_failure == CRITICAL
            )
        applied.append(changed)
    return applied


@dataclass
class PhaseRecord:
    """What one attempt at a phase did, as recorded in run.json."""

    name: str
    title: str
    playbook: str
    status: str = "pending"
    rc: int | None = None
    started: float | None = None
    finished: float | None = None
    ident: str | None = None
    hosts: dict[str, HostStats] = field(default_factory=dict)
    attempt: int = 1
    budget_seconds: float | None = None
    on_failure: str | None = None
    # In a rehearsal: each step check mode ran without doing its work (task, hosts, msg).
    rehearsal_notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Wall time in seconds, once the phase has run."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def changed(self) -> int:
        """Changed tasks over all hosts."""
        return changed_tasks(self.hosts)

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts with a failed task or that could not be reached."""
        return failed_hosts(self.hosts)


@dataclass
class RollbackRecord(PhaseRecord):
    """One run of the rollback playbook for this run, and what triggered it."""

    trigger: str = "automatic"
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    """A decision taken during the run: what, when, and why."""

    at: str
    kind: str
    reason: str
    phase: str | None = None


@dataclass(frozen=True)
class PhaseFailure:
    """A task that failed on a host in a phase whose failures are partial: follow-up work."""

    phase: str
    host: str
    task: str
    msg: str


@dataclass
class StateCheck:
    """The state after a rehearsal or a rollback, compared with the pre-window state.

    Attributes:
        after: What ran before the capture: `rehearsal` or `rollback N`.
        manifest: The capture, relative to the run directory.
        equal: Whether it equals the pre-window state; None when it could not be compared.
        differences: Every difference, rendered for people to read.
        error: Why it could not be compared.
    """

    after: str
    manifest: str
    equal: bool | None = None
    differences: list[str] = field(default_factory=list)
    error: str = ""


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
    inventory_sha256: str | None = None
    worktree_sha256: str | None = None
    manifest: str | None = None
    protocols: list[int] = field(default_factory=list)
    extravars: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    from_rehearsal: str | None = None
    approvals: list[dict[str, str]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    failed_items: list[PhaseFailure] = field(default_factory=list)
    rollbacks: list[RollbackRecord] = field(default_factory=list)
    budget_seconds: float | None = None
    state_checks: list[StateCheck] = field(default_factory=list)

    def write(self, run_dir: Path) -> Path:
        """Write run.json atomically and return its path."""
        path = run_dir / "run.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", "utf-8")
        partial.replace(path)
        return path

    def decide(self, kind: str, reason: str, phase: str | None = None) -> Decision:
        """Record a decision, stamped now."""
        decision = Decision(_utc(time.time()), kind, reason, phase)
        self.decisions.append(decision)
        log.warning("decision %s%s: %s", kind, f" in {phase}" if phase else "", reason)
        return decision

    def latest(self) -> dict[str, PhaseRecord]:
        """The last attempt at each phase, by phase name, in the order first run."""
        latest: dict[str, PhaseRecord] = {}
        for phase in self.phases:
            latest[phase.name] = phase
        return latest


def _utc(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:  # noqa: ANN401 - any record class
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in names})


def _phase_record(cls: type[PhaseRecord], data: Mapping[str, Any]) -> Any:  # noqa: ANN401
    record = _build(cls, data)
    record.hosts = {host: _build(HostStats, stats) for host, stats in record.hosts.items()}
    return record


def load_record(run_dir: Path) -> RunRecord:
    """Read a run's run.json back into a RunRecord.

    Raises:
        UsageError: the run does not exist or has no run.json.
    """
    path = run_dir / "run.json"
    if not path.is_file():
        msg = f"no run {run_dir.name!r} in {run_dir.parent} (no run.json): see `mwctl runs`"
        raise UsageError(msg)
    data = json.loads(path.read_text(encoding="utf-8"))
    record: RunRecord = _build(RunRecord, data)
    record.phases = [_phase_record(PhaseRecord, p) for p in data.get("phases", [])]
    record.rollbacks = [_phase_record(RollbackRecord, r) for r in data.get("rollbacks", [])]
    record.decisions = [_build(Decision, d) for d in data.get("decisions", [])]
    record.failed_items = [_build(PhaseFailure, f) for f in data.get("failed_items", [])]
    record.state_checks = [_build(StateCheck, c) for c in data.get("state_checks", [])]
    return record


def new_run_id(*, rehearsal: bool) -> str:
    """A run id that sorts by start time and is safe in paths."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{'rehearsal-' if rehearsal else ''}{stamp}-{secrets.token_hex(3)}"


@dataclass
class _Context:
    """How the phases of one invocation run: shared by run, resume and rollback."""

    project: Project
    run_dir: Path
    inventory: Path
    check: bool
    quiet: bool
    policy: Policy
    plan: list[Phase]
    rollback: Phase | None
    extravars: dict[str, Any]
    progress: Progress
    secrets: list[str] = field(default_factory=list)


def _check_rehearsal(
    project: Project, rehearsal_id: str, record: RunRecord
) -> tuple[RunRecord, Path]:
    """Refuse unless `rehearsal_id` is a successful rehearsal of exactly what will run."""
    run_dir = project.runs_dir / rehearsal_id
    rehearsal = load_record(run_dir)
    if rehearsal.mode != "rehearsal" or rehearsal.outcome != "succeeded":
        msg = (
            f"{rehearsal_id} is a {rehearsal.mode} that {rehearsal.outcome}; a run starts only "
            "from a rehearsal that succeeded"
        )
        raise RefusedError(msg)
    mismatches = [
        f"{what} was {old or 'none'} in the rehearsal, is {new or 'none'} now"
        for what, old, new in (
            ("manifest sha256", rehearsal.manifest_sha256, record.manifest_sha256),
            ("inventory sha256", rehearsal.inventory_sha256, record.inventory_sha256),
            ("code revision", rehearsal.code_revision, record.code_revision),
            ("uncommitted changes sha256", rehearsal.worktree_sha256, record.worktree_sha256),
            ("protocols", rehearsal.protocols, record.protocols),
        )
        if old != new
    ]
    if mismatches:
        msg = (
            f"this run is not what {rehearsal_id} rehearsed: {'; '.join(mismatches)}. "
            "Rehearse again and run from the new rehearsal"
        )
        raise RefusedError(msg)
    return rehearsal, run_dir


def _progress_or_none(progress: Progress | None) -> Progress:
    return progress if progress is not None else NoProgress()


def run_window(  # noqa: PLR0913 - each argument is one option of the window
    project: Project,
    *,
    inventory: Path,
    manifest: Path | None = None,
    check: bool = False,
    quiet: bool = True,
    phases: Sequence[Phase] = PHASES,
    policy: Policy | None = None,
    rollback: Phase | None = ROLLBACK,
    window: TimeWindow | None = None,
    protocols: Sequence[int] = (),
    extravars: Mapping[str, Any] | None = None,
    from_rehearsal: str | None = None,
    take_over_stale_lock: bool = False,
    progress: Progress | None = None,
) -> RunRecord:
    """Run every phase in order, in check and diff mode when `check`, deciding as `policy` says.

    Before anything runs: the rehearsal named by `from_rehearsal` must match what will
    run, the policy's required approvals must be on it, the window must be open with
    time for every budget, and no other run may hold the control node's lock. Then each
    phase runs against its budget: an overrun is extended or rolled back by the policy's
    threshold; a critical failure stops and rolls back with `rollback`; a partial one is
    recorded as follow-up work and the window carries on. A rehearsal never rolls back:
    it changed nothing.

    Each phase is recorded as it ends, so run.json tells how far a run got even when the
    control node dies in the middle.

    Raises:
        RefusedError: a rule above forbids the run; nothing ran.
        UsageError: the rehearsal or policy named does not exist or is invalid.
    """
    policy = policy if policy is not None else load_policy(project)
    plan = apply_policy(phases, policy)
    given = dict(extravars or {})
    record = RunRecord(
        run_id=new_run_id(rehearsal=check),
        mode="rehearsal" if check else "run",
        inventory=str(inventory),
        user=getpass.getuser(),
        control_host=socket.gethostname(),
        code_revision=code_revision(project),
        manifest_sha256=file_sha256(manifest) if manifest else None,
        started=time.time(),
        inventory_sha256=inventory_sha256(inventory),
        worktree_sha256=worktree_sha256(project),
        manifest=str(manifest) if manifest else None,
        protocols=sorted(set(protocols)),
        extravars=redact(given),
        window=window.as_dict() if window else None,
        policy=policy.summary(),
        from_rehearsal=from_rehearsal,
        budget_seconds=sum(p.budget_seconds for p in plan),
    )
    approvals = []
    if from_rehearsal:
        _, rehearsal_dir = _check_rehearsal(project, from_rehearsal, record)
        approvals = load_approvals(rehearsal_dir)
    if not check:
        missing = missing_roles(policy.required_approvals, approvals)
        if missing:
            where = f"on rehearsal {from_rehearsal}" if from_rehearsal else "(no --from-rehearsal)"
            msg = (
                f"missing approvals {where}: {', '.join(missing)}. Each approver runs "
                "`mwctl approve REHEARSAL --role ROLE --name NAME`; then run with "
                "--from-rehearsal REHEARSAL"
            )
            raise RefusedError(msg)
    record.approvals = [asdict(a) for a in approvals]
    if window:
        window.check(sum(p.budget_seconds for p in plan))
    with window_lock(project.runs_dir, record.run_id, take_over_stale=take_over_stale_lock):
        run_dir = project.runs_dir / record.run_id
        run_dir.mkdir(parents=True, mode=0o700)
        record.started = time.time()
        if take_over_stale_lock:
            record.decide("take-over-stale-lock", "the operator took over a stale lock")
        record.write(run_dir)
        context = _Context(
            project=project,
            run_dir=run_dir,
            inventory=inventory,
            check=check,
            quiet=quiet,
            policy=policy,
            plan=plan,
            rollback=rollback,
            extravars=_playbook_vars(record.run_id, given, record.protocols),
            progress=_progress_or_none(progress),
            secrets=secret_values(given),
        )
        _drive(context, record, start=0)
    return record


def _playbook_vars(
    run_id: str, extravars: Mapping[str, Any], protocols: Sequence[int]
) -> dict[str, Any]:
    values = {**extravars, "mw_run_id": run_id}
    if protocols:
        values["mw_window_protocols"] = list(protocols)
    return values


def resume_window(  # noqa: PLR0913 - each argument is one option of the window
    project: Project,
    run_id: str,
    *,
    quiet: bool = True,
    phases: Sequence[Phase] = PHASES,
    policy: Policy | None = None,
    rollback: Phase | None = ROLLBACK,
    window: TimeWindow | None = None,
    extravars: Mapping[str, Any] | None = None,
    take_over_stale_lock: bool = False,
    progress: Progress | None = None,
) -> RunRecord:
    """Carry on a stopped or failed run from its first phase that did not succeed.

    The run keeps its id and directory; the new attempts are appended to its phases.
    Secret extra variables are not in run.json, so they must be given again.

    Raises:
        RefusedError: the run ended in a way that forbids going on, has nothing left to
            run, lacks a secret extra variable, or the window forbids it.
        UsageError: the run does not exist.
    """
    run_dir = project.runs_dir / run_id
    record = load_record(run_dir)
    if record.outcome in _FINAL:
        msg = f"{run_id} {record.outcome}; there is nothing to resume. " + (
            "Start a new run"
            if record.outcome.startswith("succeeded")
            else "It was rolled back: rehearse and run the window again"
        )
        raise RefusedError(msg)
    policy = policy if policy is not None else load_policy(project)
    plan = apply_policy(phases, policy)
    latest = record.latest()
    start = next(
        (
            i
            for i, p in enumerate(plan)
            if getattr(latest.get(p.name), "status", "") != "successful"
        ),
        None,
    )
    if start is None:
        msg = f"every phase of {run_id} succeeded; there is nothing to resume"
        raise RefusedError(msg)
    given = {k: v for k, v in record.extravars.items() if v != REDACTED}
    given.update(extravars or {})
    lacking = sorted(k for k, v in record.extravars.items() if v == REDACTED and k not in given)
    if lacking:
        msg = f"give the secret extra variables again to resume {run_id}: {', '.join(lacking)}"
        raise RefusedError(msg)
    if window:
        window.check(sum(p.budget_seconds for p in plan[start:]))
    with window_lock(project.runs_dir, run_id, take_over_stale=take_over_stale_lock):
        _mark_interrupted(record)
        record.outcome = "running"
        record.finished = None
        if window:
            record.window = window.as_dict()
        record.decide(
            "resume",
            f"resumed by {getpass.getuser()}@{socket.gethostname()} from {plan[start].name}",
            plan[start].name,
        )
        record.write(run_dir)
        context = _Context(
            project=project,
            run_dir=run_dir,
            inventory=Path(record.inventory),
            check=record.mode == "rehearsal",
            quiet=quiet,
            policy=policy,
            plan=plan,
            rollback=rollback,
            extravars=_playbook_vars(run_id, given, record.protocols),
            progress=_progress_or_none(progress),
            secrets=secret_values(given),
        )
        _drive(context, record, start=start)
    return record


def rollback_run(  # noqa: PLR0913 - each argument is one option of the rollback
    project: Project,
    run_id: str,
    *,
    quiet: bool = True,
    rollback: Phase = ROLLBACK,
    extravars: Mapping[str, Any] | None = None,
    take_over_stale_lock: bool = False,
    progress: Progress | None = None,
) -> RunRecord:
    """Roll back run `run_id` from its verified backups, recorded in that run's run.json.

    Raises:
        UsageError: the run does not exist.
        RefusedError: another run holds the lock.
    """
    run_dir = project.runs_dir / run_id
    record = load_record(run_dir)
    given = {k: v for k, v in record.extravars.items() if v != REDACTED}
    given.update(extravars or {})
    with window_lock(project.runs_dir, run_id, take_over_stale=take_over_stale_lock):
        context = _Context(
            project=project,
            run_dir=run_dir,
            inventory=Path(record.inventory),
            check=False,
            quiet=quiet,
            policy=Policy(),
            plan=[],
            rollback=rollback,
            extravars=_playbook_vars(run_id, given, record.protocols),
            progress=_progress_or_none(progress),
            secrets=secret_values(given),
        )
        _mark_interrupted(record)
        reason = f"requested by {getpass.getuser()}@{socket.gethostname()}"
        record.decide("rollback", reason)
        _roll_back(context, record, trigger="operator", reason=reason)
        record.finished = time.time()
        record.write(run_dir)
    return record


def _mark_interrupted(record: RunRecord) -> None:
    """Mark the attempts still recorded as running as interrupted.

    Called with the window lock held, so no live mwctl runs them: they were cut short with
    mwctl (its control node died or it was killed) and did not finish, whatever their
    playbooks got to do.
    """
    for entry in (*record.phases, *record.rollbacks):
        if entry.status == "running":
            entry.status = "interrupted"


@dataclass
class _Watch:
    """The budget watch over the running phase, polled by ansible-runner."""

    phase: Phase
    started: float
    done_fraction: float
    decided: bool = False
    cancel: bool = False
    last_update: float = field(default_factory=time.time)


def _done_fraction(plan: Sequence[Phase], done: set[str]) -> float:
    """Share of the window's work that is done: the budgets of the phases completed.

    The budgets are the plan's estimate of each phase's share of the work. The running
    phase counts as not done: how far into it a playbook is cannot be told honestly,
    since the number of tasks it will run is not known in advance.
    """
    total = sum(p.budget_seconds for p in plan)
    return sum(p.budget_seconds for p in plan if p.name in done) / total if total else 0.0


def _on_overrun(context: _Context, record: RunRecord, watch: _Watch, elapsed: float) -> None:
    phase, policy = watch.phase, context.policy
    watch.decided = True
    over = (
        f"{phase.name} overran its budget of {phase.budget_seconds:.0f}s "
        f"({elapsed:.0f}s so far) with {watch.done_fraction:.0%} of the work done"
    )
    if context.check:
        record.decide("over-budget", f"{over}; a rehearsal only notes it", phase.name)
    elif phase.no_go:
        record.decide("reschedule", f"{over}; nothing was changed yet: stop", phase.name)
        watch.cancel = True
    elif policy.extend_allowed and watch.done_fraction > policy.extend_threshold:
        record.decide(
            "extend",
            f"{over}, more than the {policy.extend_threshold:.0%} threshold: let it finish",
            phase.name,
        )
    else:
        why = (
            "extending is not allowed"
            if not policy.extend_allowed
            else f"not more than the {policy.extend_threshold:.0%} threshold"
        )
        record.decide("rollback-and-reschedule", f"{over}; {why}", phase.name)
        watch.cancel = True
    decision = record.decisions[-1]
    context.progress.note(f"decision: {decision.kind}: {decision.reason}")
    record.write(context.run_dir)
    _notify_decision(
        context,
        decision,
        "warning" if decision.kind == "extend" else "critical",
        # Stopped before any change, with no rollback to close the window.
        closes_window=decision.kind == "reschedule",
    )


def _poll(context: _Context, record: RunRecord, watch: _Watch) -> bool:
    now = time.time()
    elapsed = now - watch.started
    if now - watch.last_update >= context.policy.progress_interval_seconds:
        watch.last_update = now
        text = (
            f"{watch.phase.name} running for {elapsed / 60:.0f} of "
            f"{watch.phase.budget_seconds / 60:.0f} min; {watch.done_fraction:.0%} of the work done"
        )
        context.progress.note(f"progress: {text}")
        _notify(context, "progress", f"Progress: {text}", phase=watch.phase.name, status="running")
    if not watch.decided and elapsed > watch.phase.budget_seconds:
        _on_overrun(context, record, watch, elapsed)
    return watch.cancel


def _notify(  # noqa: PLR0913 - the notification's fields, spelled out
    context: _Context,
    event: str,
    message: str,
    *,
    phase: str,
    status: str,
    closes_window: bool = False,
) -> None:
    """Send one notification through the notify role's channels; a failure only warns.

    The window goes on whatever happens to a notification, as the phase playbooks' own
    notifications do: the run's records keep the decision either way.
    """
    if not (context.project.root / NOTIFY_PLAYBOOK).is_file():
        log.warning("no %s in this checkout: not notified: %s", NOTIFY_PLAYBOOK, message)
        return
    try:
        result = run_playbook(
            context.project,
            NOTIFY_PLAYBOOK,
            private_dir=context.run_dir / "runner",
            inventory=context.inventory,
            extravars={
                **context.extravars,
                "notify_event": event,
                "notify_phase": phase,
                "notify_status": status,
                "notify_message": message,
                "notify_closes_window": closes_window,
            },
            check=context.check,
            quiet=True,
        )
    except MwctlError as error:
        log.warning("not notified (%s): %s", error, message)
        return
    if not result.succeeded:
        log.warning("not notified (%s, rc %s): %s", result.status, result.rc, message)


def _notify_decision(
    context: _Context, decision: Decision, status: str = "partial", *, closes_window: bool = False
) -> None:
    """Tell the channels about a decision the rules took, and why."""
    _notify(
        context,
        "issue",
        f"Decision {decision.kind}: {decision.reason}",
        phase=decision.phase or "",
        status=status,
        closes_window=closes_window,
    )


def _show(progress: Progress, event: dict[str, Any]) -> bool:
    """Pass an event to the progress display; keep it in the artifacts."""
    progress.event(event)
    return True


def _run_phase(
    context: _Context, record: RunRecord, phase: Phase, done: set[str]
) -> tuple[PlaybookResult, _Watch]:
    attempt = 1 + sum(p.name == phase.name for p in record.phases)
    entry = PhaseRecord(
        phase.name,
        phase.title,
        phase.playbook,
        status="running",
        started=time.time(),
        attempt=attempt,
        budget_seconds=phase.budget_seconds,
        on_failure=phase.on_failure,
    )
    record.phases.append(entry)
    record.write(context.run_dir)
    log.info("phase %s: %s", phase.name, phase.title)
    context.progress.phase_started(phase.name, phase.title, phase.budget_seconds)
    watch = _Watch(phase, entry.started or time.time(), _done_fraction(context.plan, done))

    result = run_playbook(
        context.project,
        phase.playbook,
        private_dir=context.run_dir / "runner",
        inventory=context.inventory,
        extravars=context.extravars,
        check=context.check,
        diff=context.check,
        quiet=context.quiet,
        event_handler=lambda event: _show(context.progress, event),
        cancel_callback=lambda: _poll(context, record, watch),
    )
    entry.status = result.status
    entry.rc = result.rc
    entry.finished = time.time()
    entry.ident = result.ident
    entry.hosts = result.hosts
    entry.rehearsal_notes = _group_notes(result.notes, context.secrets)
    context.progress.phase_ended(phase.name, entry.status, entry.finished - watch.started)
    if not watch.decided and entry.finished - watch.started > phase.budget_seconds:
        # The playbook ended between two polls: judge the overrun with the phase done,
        # since its work is.
        if result.succeeded:
            watch.done_fraction = _done_fraction(context.plan, done | {phase.name})
        _on_overrun(context, record, watch, entry.finished - watch.started)
    record.write(context.run_dir)
    return result, watch


def _group_notes(notes: Sequence[FailedItem], hidden: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per task and note, with the hosts that said it, in the order first seen."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for note in notes:
        hosts = grouped.setdefault((note.task, scrub(note.msg, hidden)), [])
        if note.host not in hosts:
            hosts.append(note.host)
    return [{"task": task, "msg": msg, "hosts": hosts} for (task, msg), hosts in grouped.items()]


def _classify(context: _Context, phase: Phase, result: PlaybookResult) -> tuple[str, str]:
    """What the failure of `phase` means, and why."""
    failed = result.failed_hosts
    base = f"{phase.name} {result.status} (rc={result.rc})"
    if phase.on_failure != PARTIAL:
        hosts = f" on {', '.join(failed)}" if failed else ""
        # The first failure says why: the rest usually follow from it.
        first = result.failed_items[0] if result.failed_items else None
        why = (
            f" ({first.host}: {scrub(first.msg, context.secrets)[:_REASON_CHARS]})" if first else ""
        )
        return phase.on_failure, f"{base}{hosts}{why}; its failures are {phase.on_failure}"
    if not failed:
        return CRITICAL, f"{base} with no failed host: the playbook itself did not run through"
    share = len(failed) / len(result.hosts)
    threshold = context.policy.critical_failure_threshold
    if share > threshold:
        return CRITICAL, (
            f"{base}: {len(failed)} of {len(result.hosts)} hosts failed, more than the "
            f"{threshold:.0%} critical failure threshold"
        )
    return (
        PARTIAL,
        f"{base}: {len(failed)} of {len(result.hosts)} hosts failed ({', '.join(failed)})",
    )


def _stop_on_failure(
    context: _Context, record: RunRecord, phase: Phase, result: PlaybookResult
) -> bool:
    """Act on a failed phase as the policy says; True when the window stops here."""
    kind, reason = _classify(context, phase, result)
    if kind == PARTIAL:
        record.failed_items.extend(
            PhaseFailure(
                phase.name,
                item.host,
                scrub(item.task, context.secrets),
                scrub(item.msg, context.secrets),
            )
            for item in result.failed_items
        )
        _notify_decision(
            context, record.decide("continue", f"{reason}; listed as follow-up work", phase.name)
        )
        return False
    if kind == NO_GO:
        record.decide("no-go", f"{reason}; nothing was changed: reschedule", phase.name)
        record.outcome = "no-go"
    elif context.check:
        record.decide("stop", f"{reason}; a rehearsal changed nothing to roll back", phase.name)
        record.outcome = "failed"
    elif context.rollback is None:
        record.decide("stop", f"{reason}; no rollback playbook is configured", phase.name)
        record.outcome = "failed"
    else:
        _notify_decision(context, record.decide("rollback", reason, phase.name), "critical")
        _roll_back(context, record, trigger="critical-failure", reason=reason)
        return True
    # The window ends here without a rollback: the notification closes it (monitoring
    # metric back to 0, silence removed), as the completion would have.
    _notify_decision(context, record.decisions[-1], "failed", closes_window=True)
    return True


def _settle(context: _Context, record: RunRecord) -> None:
    """The outcome of a window that went through every phase."""
    statuses = {name: p.status for name, p in record.latest().items()}
    wanted = [statuses.get(p.name, "") for p in context.plan]
    if "not-implemented" in wanted:
        record.outcome = "incomplete"
    elif record.failed_items or any(status != "successful" for status in wanted):
        record.outcome = "succeeded-with-follow-up"
    else:
        record.outcome = "succeeded"


def _drive(context: _Context, record: RunRecord, *, start: int) -> None:
    """Run the plan's phases from `start` and settle the run's outcome."""
    done = {name for name, p in record.latest().items() if p.status == "successful"}
    for phase in context.plan[start:]:
        if not (context.project.root / phase.playbook).is_file():
            record.phases.append(
                PhaseRecord(phase.name, phase.title, phase.playbook, status="not-implemented")
            )
            log.warning("%s: %s is not in this checkout yet", phase.name, phase.playbook)
            continue
        if not phase.no_go and not _record_pre_window_state(context, record):
            break
        result, watch = _run_phase(context, record, phase, done)
        if watch.cancel:
            if phase.no_go:
                record.outcome = "no-go"
            else:
                _roll_back(context, record, trigger="overrun", reason=record.decisions[-1].reason)
            break
        if result.succeeded:
            done.add(phase.name)
        elif _stop_on_failure(context, record, phase, result):
            break
    else:
        _settle(context, record)
    if context.check:
        _prove_rehearsal(context, record)
    record.finished = time.time()
    record.write(context.run_dir)


def _capture(context: _Context, out: Path) -> None:
    """Capture the state of the run's hosts into `out`, with the run's other artifacts."""
    capture_state(
        context.project,
        context.inventory,
        out,
        quiet=context.quiet,
        private_dir=context.run_dir / "runner",
    )


def _record_pre_window_state(context: _Context, record: RunRecord) -> bool:
    """Capture the pre-window state before the run's first change; False on a no-go.

    A run that already went past its first change without a capture (one started by an
    older mwctl) gets none: what its hosts hold now is not the pre-window state.
    """
    path = context.run_dir / PRE_WINDOW_STATE
    changing = {p.name for p in context.plan if not p.no_go}
    if path.is_file() or any(p.name in changing for p in record.phases):
        return True
    if not (context.project.root / STATE_PLAYBOOK).is_file():
        log.warning("no %s in this checkout: the pre-window state is not recorded", STATE_PLAYBOOK)
        return True
    try:
        _capture(context, path)
    except MwctlError as error:
        record.decide(
            "no-go",
            f"the pre-window state could not be recorded, so a rollback could not be proved: "
            f"{scrub(str(error), context.secrets)}; nothing was changed: fix that and rerun",
        )
        record.outcome = "no-go"
        return False
    return True


def _compare_with_pre_window(
    context: _Context, record: RunRecord, after: str, name: str
) -> StateCheck:
    """Capture the state now and record how it differs from the pre-window state."""
    pre = context.run_dir / PRE_WINDOW_STATE
    out = context.run_dir / "state" / name
    check = StateCheck(after=after, manifest=str(out.relative_to(context.run_dir)))
    try:
        if not pre.is_file():
            msg = f"this run has no pre-window state ({PRE_WINDOW_STATE}) to compare with"
            raise UsageError(msg)
        _capture(context, out)
        differences = diff_states(load_state(pre), load_state(out))
    except MwctlError as error:
        check.error = scrub(str(error), context.secrets)
        log.warning("state after %s not compared: %s", after, check.error)
    else:
        check.equal = not differences
        check.differences = [scrub(render_difference(d), context.secrets) for d in differences]
        log.info(
            "state after %s: %s",
            after,
            "equal to the pre-window state" if check.equal else f"{len(differences)} differences",
        )
    record.state_checks.append(check)
    record.write(context.run_dir)
    return check


def _prove_rehearsal(context: _Context, record: RunRecord) -> None:
    """A rehearsal must leave the state as it found it; one that did not has failed."""
    if not (context.run_dir / PRE_WINDOW_STATE).is_file():
        return
    check = _compare_with_pre_window(context, record, "rehearsal", "after-rehearsal.json")
    if check.equal is False:
        record.decide(
            "stop",
            f"the rehearsal changed the state it must leave alone ({len(check.differences)} "
            f"differences, first: {check.differences[0]}): the check-mode support of a step "
            "is broken; do not run the window until that is fixed",
        )
        record.outcome = "failed"
    elif check.equal is None:
        record.decide("unproven", f"the state after the rehearsal was not compared: {check.error}")


def _roll_back(context: _Context, record: RunRecord, *, trigger: str, reason: str) -> None:
    """Run the rollback playbook for this run and settle the outcome by its result."""
    phase = context.rollback
    if phase is None or context.check:
        record.outcome = "failed"
        return
    if not (context.project.root / phase.playbook).is_file():
        record.decide("stop", f"cannot roll back: {phase.playbook} is not in this checkout")
        record.outcome = "rollback-failed"
        return
    entry = RollbackRecord(
        phase.name,
        phase.title,
        phase.playbook,
        status="running",
        started=time.time(),
        attempt=len(record.rollbacks) + 1,
        budget_seconds=phase.budget_seconds,
        trigger=trigger,
        reason=reason,
    )
    record.rollbacks.append(entry)
    record.write(context.run_dir)
    context.progress.phase_started(phase.name, phase.title, phase.budget_seconds)
    result = run_playbook(
        context.project,
        phase.playbook,
        private_dir=context.run_dir / "runner",
        inventory=context.inventory,
        extravars={**context.extravars, "restore_run_id": record.run_id},
        quiet=context.quiet,
        event_handler=lambda event: _show(context.progress, event),
    )
    entry.status = result.status
    entry.rc = result.rc
    entry.finished = time.time()
    entry.ident = result.ident
    entry.hosts = result.hosts
    context.progress.phase_ended(phase.name, entry.status, result.duration)
    record.outcome = "rolled-back" if result.succeeded else "rollback-failed"
    record.write(context.run_dir)
    if result.succeeded:
        _prove_rollback(context, record, entry.attempt)


def _prove_rollback(context: _Context, record: RunRecord, attempt: int) -> None:
    """A rollback is exact when the state equals the pre-window state; else say how not."""
    if not (context.project.root / STATE_PLAYBOOK).is_file():
        return
    check = _compare_with_pre_window(
        context, record, f"rollback {attempt}", f"after-rollback-{attempt}.json"
    )
    if check.equal:
        record.decide("restored-exactly", "the state equals the pre-window state")
    elif check.equal is False:
        decision = record.decide(
            "restored-with-differences",
            f"{len(check.differences)} differences from the pre-window state: "
            + "; ".join(check.differences[:10]),
        )
        record.outcome = "rolled-back-with-differences"
        _notify_decision(context, decision, "critical")
    else:
        record.decide("unproven", f"the state after the rollback was not compared: {check.error}")
    record.write(context.run_dir)
