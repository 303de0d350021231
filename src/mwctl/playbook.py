"""Run one playbook through ansible-runner and keep what it reports."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from mwctl.errors import ProjectError
from mwctl.project import Project

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], bool]
CancelCallback = Callable[[], bool]

# Events of a task failing on a host. A rescued failure emits the same event, so only the
# hosts the recap counts as failed or unreachable keep theirs.
_FAILED_EVENTS = {"runner_on_failed", "runner_on_unreachable"}
# What the roles' tasks say when check mode keeps a step from doing its work ("Check mode:
# ...", "Not rehearsed: ..."). Only such notes can be collected: ansible-runner's event for
# a skipped task carries no result, so a command that check mode skipped, or a module
# without check mode support, cannot be told from a task skipped by its `when`. The roles
# follow the convention that every step a rehearsal cannot carry out says so.
_REHEARSAL_NOTE = re.compile(r"^(check mode|not rehearsed)\b", re.IGNORECASE)
_NOTE_EVENTS = {"runner_on_ok"}
# How often, at most, ansible-runner polls the cancel callback while a playbook is quiet.
_POLL_SECONDS = 1

# Set in the environment of every playbook process, so that a stopped playbook's workers
# can be found: ansible puts each worker in a session of its own, out of reach of the
# process-group kill ansible-runner sends on cancel.
_MARKER = "MWCTL_PLAYBOOK_IDENT"
# How long the processes of a stopped playbook get to end after SIGTERM.
_TERM_GRACE_SECONDS = 10

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
class FailedItem:
    """One task that failed on one host: what the follow-up work starts from."""

    host: str
    task: str
    msg: str


def _failed_item(event: Mapping[str, Any]) -> FailedItem | None:
    if event.get("event") not in _FAILED_EVENTS:
        return None
    data = event.get("event_data") or {}
    if data.get("ignore_errors"):
        return None
    result = data.get("res") or {}
    msg = result.get("msg") or result.get("stderr") or result.get("reason") or ""
    return FailedItem(
        host=str(data.get("host", "?")),
        task=str(data.get("task", "?")),
        msg=str(msg)[:2000],
    )


def _rehearsal_note(event: Mapping[str, Any]) -> FailedItem | None:
    """A task's note that check mode kept it from doing its work, if the event holds one."""
    if event.get("event") not in _NOTE_EVENTS:
        return None
    data = event.get("event_data") or {}
    msg = (data.get("res") or {}).get("msg")
    if not isinstance(msg, str) or not _REHEARSAL_NOTE.match(msg.strip()):
        return None
    return FailedItem(
        host=str(data.get("host", "?")), task=str(data.get("task", "?")), msg=msg.strip()[:600]
    )


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
    failed_items: list[FailedItem] = field(default_factory=list)
    notes: list[FailedItem] = field(default_factory=list)

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
        return changed_tasks(self.hosts)

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts with a failed task or that could not be reached."""
        return failed_hosts(self.hosts)


def changed_tasks(hosts: Mapping[str, HostStats]) -> int:
    """Changed tasks over all hosts."""
    return sum(stats.changed for stats in hosts.values())


def failed_hosts(hosts: Mapping[str, HostStats]) -> list[str]:
    """Hosts with a failed task or that could not be reached, sorted."""
    return sorted(name for name, stats in hosts.items() if stats.failed or stats.unreachable)


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


def _marked_processes(ident: str | None = None) -> list[int]:
    """Pids of the live ansible-playbook processes (and workers) of one playbook run.

    That is the run `ident`, or every run mwctl started when `ident` is None.

    Only ansible's own processes count: a daemon that a task started (podman's DNS server,
    an ssh control master) inherits the marker too, and must outlive the playbook.
    """
    wanted = f"{_MARKER}={ident or ''}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        ansible = any(
            Path(arg.decode(errors="replace")).name == "ansible-playbook" for arg in argv[:2]
        )
        variables = environ.split(b"\0")
        if ansible and (
            wanted in variables if ident else any(v.startswith(wanted) for v in variables)
        ):
            pids.append(int(entry.name))
    return pids


def _signal_all(pids: Sequence[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def stop_processes(ident: str) -> list[int]:
    """End every process of the playbook run `ident`: SIGTERM, then SIGKILL after a grace.

    Returns the pids that were still running when asked to stop.
    """
    pids = _marked_processes(ident)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + _TERM_GRACE_SECONDS
    while _marked_processes(ident) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_all(_marked_processes(ident), signal.SIGKILL)
    return pids


@contextlib.contextmanager
def _extravars_file(extravars: Mapping[str, Any]) -> Iterator[Path | None]:
    """The extra variables in a file only this user can read, removed after the run.

    Given inline, ansible-runner would put them on the command line, where any user sees
    them in the process list and the run's artifacts keep them in their command file.
    """
    if not extravars:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mwctl-vars-") as scratch:
        path = Path(scratch) / "extravars.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(extravars), handle)
        yield path


def _ansible_bin_dir() -> Path:
    """The directory of the ansible-playbook to run: beside mwctl's Python, else on PATH.

    mwctl started as .venv/bin/mwctl, without the virtualenv on PATH, runs the Ansible
    installed with it rather than another one or none.
    """
    beside = Path(sys.executable).parent
    if (beside / "ansible-playbook").is_file():
        return beside
    found = shutil.which("ansible-playbook")
    if found is None:
        msg = (
            f"ansible-playbook is neither beside {sys.executable} nor on PATH; install the "
            "project (make venv) and run mwctl from its virtualenv, or put .venv/bin on PATH"
        )
        raise ProjectError(msg)
    return Path(found).parent


def _search_path(first: Path) -> str:
    rest = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    return os.pathsep.join([str(first), *(entry for entry in rest if entry != str(first))])


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
    cancel_callback: CancelCallback | None = None,
) -> PlaybookResult:
    """Run `playbook` (relative to the checkout) and return what happened.

    Each call gets a fresh ident, because ansible-runner appends to an existing ident's
    events. Environment files are not written into the private directory, so nothing the
    environment holds ends up in a run's records. `cancel_callback` is polled at least
    once a second; when it returns True the playbook is stopped and its status is
    `canceled`. Failed tasks (neither rescued nor ignored) are kept as `failed_items`; in check
    mode, what tasks say check mode kept them from doing is kept as `notes`.
    """
    bin_dir = _ansible_bin_dir()
    ident = f"{Path(playbook).stem}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    cmdline = [flag for flag, wanted in (("--check", check), ("--diff", diff)) if wanted]
    private_dir.mkdir(parents=True, exist_ok=True)
    log.info("running %s (ident %s)", playbook, ident)
    started = time.time()
    failed: list[FailedItem] = []
    notes: list[FailedItem] = []

    def on_event(event: dict[str, Any]) -> bool:
        item = _failed_item(event)
        if item is not None:
            failed.append(item)
        note = _rehearsal_note(event) if check else None
        if note is not None:
            notes.append(note)
        return event_handler(event) if event_handler is not None else True

    def on_poll() -> bool:
        # The playbook's processes are asked to end first, so that a task in flight is
        # interrupted by a signal ansible handles rather than only by SIGKILL.
        if cancel_callback is None or not cancel_callback():
            return False
        log.warning("stopping %s (ident %s)", playbook, ident)
        stop_processes(ident)
        return True

    with _extravars_file(extravars or {}) as extravars_path:
        if extravars_path is not None:
            cmdline += ["--extra-vars", f"@{extravars_path}"]
        runner = ansible_runner.run(
            private_data_dir=str(private_dir),
            project_dir=str(project.root),
            playbook=str(project.root / playbook),
            inventory=str(inventory or project.lab_inventory),
            cmdline=shlex.join(cmdline) or None,
            limit=limit,
            tags=",".join(tags) or None,
            envvars={**project.env(), _MARKER: ident, "PATH": _search_path(bin_dir)},
            ident=ident,
            quiet=quiet,
            suppress_env_files=True,
            event_handler=on_event,
            cancel_callback=on_poll,
            settings={"pexpect_timeout": _POLL_SECONDS},
        )
    # Nothing of a playbook outlives its run: workers left by a cancel or a crash are ended.
    leftover = stop_processes(ident)
    if leftover:
        log.warning("%s: ended %d leftover processes of ident %s", playbook, len(leftover), ident)
    finished = time.time()
    hosts = _host_stats(runner.stats)
    bad = set(failed_hosts(hosts))
    result = PlaybookResult(
        playbook=playbook,
        ident=ident,
        status=str(runner.status),
        rc=int(runner.rc),
        started=started,
        finished=finished,
        artifact_dir=Path(runner.config.artifact_dir),
        hosts=hosts,
        failed_items=[item for item in failed if item.host in bad],
        notes=notes,
    )
    log.info("%s finished: %s rc=%s in %.1fs", playbook, result.status, result.rc, result.duration)
    return result
