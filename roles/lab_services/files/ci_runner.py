#!/usr/bin/python3
"""CI runner of the lab: runs each queued protocol job against the registered scripts.

Every second the runner takes the oldest job file from ``<state>/queue/*.json`` (``{"id",
"protocol"}``), moves it to ``<state>/running/``, brings its checkout of the project up to date
from the git daemon of a protocol host, asks the registry service which scripts the protocol has,
runs each with ``--self-test`` and writes ``<state>/results/<id>.json``. It also leaves a stamp
per script and the last result under ``<cache>/<protocol>/``, the cache that the maintenance
window clears.

On SIGTERM it finishes the job in hand and exits; the unit's KillMode=mixed keeps systemd from
killing the job's scripts at the same time.

Settings come from the environment (systemd loads /etc/ci-runner/runner.env): CI_STATE_DIR,
CI_CACHE_DIR, CI_GIT_URL, CI_WORK_NAME, CI_REGISTRY_URL, CI_POLL_SECONDS, CI_SCRIPT_TIMEOUT and
CI_GIT_TIMEOUT.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

logger = logging.getLogger("ci-runner")

OUTPUT_LIMIT = 2000
# Exit codes recorded for scripts that could not run, after the shell's conventions.
RC_NOT_EXECUTABLE = 126
RC_NOT_FOUND = 127
RC_TIMEOUT = 124


class JobError(Exception):
    """A job could not reach its scripts: no checkout, no registry answer."""


@dataclass(frozen=True)
class Settings:
    """Where the runner keeps its state and where it finds the project and the registry."""

    state_dir: Path
    cache_dir: Path
    git_url: str
    work_name: str
    registry_url: str
    poll_seconds: float
    script_timeout: float
    git_timeout: float

    @classmethod
    def from_environment(cls) -> Settings:
        """Read the settings from the environment.

        Returns:
            The settings.

        Raises:
            SystemExit: If a required variable is missing or a number is malformed.
        """
        missing = [name for name in ("CI_GIT_URL", "CI_REGISTRY_URL") if not os.environ.get(name)]
        if missing:
            msg = f"ci-runner: set {', '.join(missing)} in /etc/ci-runner/runner.env"
            raise SystemExit(msg)
        try:
            return cls(
                state_dir=Path(os.environ.get("CI_STATE_DIR", "/var/lib/ci")),
                cache_dir=Path(os.environ.get("CI_CACHE_DIR", "/var/cache/ci")),
                git_url=os.environ["CI_GIT_URL"],
                work_name=os.environ.get("CI_WORK_NAME", "project"),
                registry_url=os.environ["CI_REGISTRY_URL"].rstrip("/"),
                poll_seconds=float(os.environ.get("CI_POLL_SECONDS", "1")),
                script_timeout=float(os.environ.get("CI_SCRIPT_TIMEOUT", "60")),
                git_timeout=float(os.environ.get("CI_GIT_TIMEOUT", "60")),
            )
        except ValueError as error:
            msg = f"ci-runner: a numeric setting is malformed: {error}"
            raise SystemExit(msg) from error

    @property
    def queue(self) -> Path:
        """Jobs waiting to run."""
        return self.state_dir / "queue"

    @property
    def running(self) -> Path:
        """The job in hand."""
        return self.state_dir / "running"

    @property
    def results(self) -> Path:
        """Finished jobs' results."""
        return self.state_dir / "results"

    @property
    def work(self) -> Path:
        """The checkout the jobs run in."""
        return self.state_dir / "work" / self.work_name


def now() -> str:
    """Return the current UTC time as an ISO 8601 string with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(path: Path, data: object) -> None:
    """Write JSON so that a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)


def git(settings: Settings, *args: str, cwd: Path | None = None) -> str:
    """Run one git command.

    Returns:
        Its standard output.

    Raises:
        JobError: If git fails or times out.
    """
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=settings.git_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        msg = f"git {args[0]} timed out after {settings.git_timeout:g} s"
        raise JobError(msg) from error
    if done.returncode != 0:
        msg = f"git {args[0]} failed ({done.returncode}): {done.stderr.strip()[-OUTPUT_LIMIT:]}"
        raise JobError(msg)
    return done.stdout.strip()


def sync_checkout(settings: Settings) -> str:
    """Clone the project, or fetch it and reset to the served HEAD.

    Returns:
        The commit the checkout is at.
    """
    work = settings.work
    if (work / ".git").is_dir():
        git(settings, "fetch", "--quiet", settings.git_url, "HEAD", cwd=work)
        git(settings, "reset", "--quiet", "--hard", "FETCH_HEAD", cwd=work)
        # Untracked leftovers would mask a missing script; ignored evidence stays for review.
        git(settings, "clean", "--quiet", "-d", "--force", cwd=work)
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.parent.mkdir(parents=True, exist_ok=True)
        git(settings, "clone", "--quiet", settings.git_url, str(work))
    return git(settings, "rev-parse", "HEAD", cwd=work)


def registered_scripts(settings: Settings, protocol: int) -> list[dict[str, Any]]:
    """Ask the registry service for the protocol's scripts.

    Returns:
        The registry's entries, each with ``name`` and ``path``.

    Raises:
        JobError: If the registry cannot be reached, answers something else than a list, or
            lists no script for the protocol.
    """
    url = f"{settings.registry_url}/scripts?{urllib.parse.urlencode({'protocol': protocol})}"
    if not url.startswith(("http://", "https://")):
        msg = f"CI_REGISTRY_URL must be an http(s) URL, got {settings.registry_url!r}"
        raise JobError(msg)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - scheme checked
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        msg = f"registry request {url} failed: {error}"
        raise JobError(msg) from error
    if not isinstance(body, list):
        msg = f"registry answered {type(body).__name__} instead of a list for {url}"
        raise JobError(msg)
    entries = [entry for entry in body if isinstance(entry, dict)]
    if not entries:
        # An empty answer means a wiped or half-synced registry, never a protocol with no gates.
        msg = f"the registry lists no scripts for protocol {protocol}"
        raise JobError(msg)
    return entries


def run_script(settings: Settings, entry: dict[str, Any], evidence: Path) -> dict[str, Any]:
    """Run one registered script with --self-test inside the checkout.

    Returns:
        The script's record: name, path, rc, seconds and the tail of its output.
    """
    name = str(entry.get("name", ""))
    path = str(entry.get("path", ""))
    record: dict[str, Any] = {"name": name, "path": path, "rc": RC_NOT_FOUND, "seconds": 0.0}
    work = settings.work.resolve()
    script = (work / path).resolve()
    if not path or not script.is_relative_to(work) or not script.is_file():
        record["output"] = f"registered path does not exist in the checkout: {path}"
        return record
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(script), "--self-test"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=settings.script_timeout,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "EVIDENCE_DIR": str(evidence)},
        )
        record["rc"] = done.returncode
        record["output"] = (done.stdout + done.stderr).strip()[-OUTPUT_LIMIT:]
    except subprocess.TimeoutExpired:
        record["rc"] = RC_TIMEOUT
        record["output"] = f"timed out after {settings.script_timeout:g} s"
    except PermissionError:
        record["rc"] = RC_NOT_EXECUTABLE
        record["output"] = f"not executable: {path}"
    record["seconds"] = round(time.monotonic() - started, 3)
    return record


def touch_cache(settings: Settings, protocol: int, result: dict[str, Any]) -> None:
    """Leave the cache files a real runner would: one stamp per script and the last result."""
    directory = settings.cache_dir / str(protocol)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for script in result["scripts"]:
            if script["name"] and "/" not in script["name"]:
                (directory / f"{script['name']}.stamp").touch()
        write_json(directory / "last-result.json", result)
    except OSError as error:
        # A cache is an optimisation: losing it must not fail the job.
        logger.warning("Could not update the cache in %s: %s", directory, error)


def run_job(settings: Settings, queued: Path) -> None:
    """Run one job from the queue and record its result."""
    running = settings.running / queued.name
    try:
        queued.replace(running)
    except FileNotFoundError:
        return
    job_id = running.stem
    result: dict[str, Any] = {
        "id": job_id,
        "protocol": None,
        "status": "fail",
        "scripts": [],
        "started": now(),
    }
    try:
        job = json.loads(running.read_text(encoding="utf-8"))
        job_id = result["id"] = str(job.get("id", job_id))
        protocol = result["protocol"] = int(job["protocol"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        result["error"] = f"malformed job file {running.name}: {error}"
        logger.error("Job %s: %s", job_id, result["error"])  # noqa: TRY400 - no traceback wanted
    else:
        logger.info("Job %s: protocol %d started", job_id, protocol)
        try:
            result["commit"] = sync_checkout(settings)
            entries = registered_scripts(settings, protocol)
            evidence = settings.work / "evidence" / job_id
            result["scripts"] = [run_script(settings, entry, evidence) for entry in entries]
            if all(script["rc"] == 0 for script in result["scripts"]):
                result["status"] = "pass"
        except JobError as error:
            result["error"] = str(error)
        touch_cache(settings, protocol, result)
    result["finished"] = now()
    write_json(settings.results / f"{job_id}.json", result)
    running.unlink(missing_ok=True)
    if "error" in result:
        logger.warning("Job %s: %s (%s)", job_id, result["status"], result["error"])
    else:
        logger.info("Job %s: %s", job_id, result["status"])


def oldest_job(settings: Settings) -> Path | None:
    """Return the queue's oldest job file, by modification time then name."""
    candidates = []
    for path in settings.queue.glob("*.json"):
        try:
            candidates.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return min(candidates)[2] if candidates else None


def main() -> int:
    """Run jobs until SIGTERM.

    Returns:
        The exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    settings = Settings.from_environment()
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("Received signal %d: stopping after the current job", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for directory in (settings.queue, settings.running, settings.results, settings.work.parent):
        directory.mkdir(parents=True, exist_ok=True)
    # A job left in running/ was interrupted by a crash or a kill: run it again.
    for interrupted in sorted(settings.running.glob("*.json")):
        logger.warning("Requeueing interrupted job %s", interrupted.name)
        interrupted.replace(settings.queue / interrupted.name)

    logger.info("Polling %s every %g s", settings.queue, settings.poll_seconds)
    while not stopping.is_set():
        job = oldest_job(settings)
        if job is None:
            stopping.wait(settings.poll_seconds)
            continue
        run_job(settings, job)
    logger.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
