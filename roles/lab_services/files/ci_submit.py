#!/usr/bin/python3
"""Queue CI jobs for the lab's runner and optionally wait for the result.

    ci-submit --protocol N [--wait SECONDS]
    ci-submit --jobs-file /etc/ci/jobs.json

With --wait the result is printed as JSON; the exit code is 0 when the job passed, 1 when it
failed and 2 when no result came within SECONDS. Without --wait the queued job is printed and the
exit code is 0. --jobs-file queues one job per entry of the scheduler's job list.

The state directory is CI_STATE_DIR from the environment or from /etc/ci-runner/runner.env, else
/var/lib/ci.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RUNNER_ENV = Path("/etc/ci-runner/runner.env")
EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_TIMEOUT = 2
POLL_SECONDS = 0.5


def state_dir() -> Path:
    """Return the runner's state directory, as the runner itself is configured."""
    if os.environ.get("CI_STATE_DIR"):
        return Path(os.environ["CI_STATE_DIR"])
    if RUNNER_ENV.is_file():
        for line in RUNNER_ENV.read_text(encoding="utf-8").splitlines():
            key, _, value = line.strip().partition("=")
            if key == "CI_STATE_DIR" and value:
                return Path(value.strip().strip('"'))
    return Path("/var/lib/ci")


def enqueue(queue: Path, protocol: int, source: str) -> dict[str, object]:
    """Write one job into the queue.

    Returns:
        The job as written.
    """
    stamp = datetime.now(UTC)
    job: dict[str, object] = {
        "id": f"{stamp:%Y%m%dT%H%M%S%f}-p{protocol}-{secrets.token_hex(3)}",
        "protocol": protocol,
        "source": source,
        "submitted": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    queue.mkdir(parents=True, exist_ok=True)
    path = queue / f"{job['id']}.json"
    # The runner only picks up *.json, so it never reads a half-written job.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(job, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)
    return job


def wait_for(results: Path, job_id: str, seconds: float) -> dict[str, object] | None:
    """Poll for a job's result.

    Returns:
        The result, or None when none came in time.
    """
    deadline = time.monotonic() + seconds
    path = results / f"{job_id}.json"
    while True:
        if path.is_file():
            try:
                result: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                result = {}
            if result:
                return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def scheduled_protocols(jobs_file: Path) -> list[tuple[str, int]]:
    """Read the scheduler's job list.

    Returns:
        (job id, protocol) for each scheduled job.

    Raises:
        SystemExit: If the file cannot be read or has no job list.
    """
    try:
        data = json.loads(jobs_file.read_text(encoding="utf-8"))
        return [(str(job["id"]), int(job["protocol"])) for job in data["jobs"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        msg = f"ci-submit: cannot read the job list {jobs_file}: {error}"
        raise SystemExit(msg) from error


def emit(data: object) -> None:
    """Print one JSON document on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse the command line.

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(prog="ci-submit", description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--protocol", type=int, help="protocol number to validate")
    target.add_argument("--jobs-file", type=Path, help="queue every job of this scheduler list")
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait this long for the result and print it"
    )
    arguments = parser.parse_args(argv)
    if arguments.protocol is not None and arguments.protocol < 0:
        parser.error(f"--protocol {arguments.protocol}: protocol numbers are 0 or more")
    if arguments.wait is not None and arguments.wait < 0:
        parser.error(f"--wait {arguments.wait:g}: give 0 or more seconds")
    if arguments.jobs_file is not None and arguments.wait is not None:
        parser.error("--wait applies to one --protocol job, not to --jobs-file")
    return arguments


def main(argv: list[str]) -> int:
    """Queue the requested jobs and report.

    Returns:
        The exit code.
    """
    arguments = parse_arguments(argv)
    base = state_dir()
    if arguments.jobs_file is not None:
        queued = [
            enqueue(base / "queue", protocol, f"scheduler:{job_id}")
            for job_id, protocol in scheduled_protocols(arguments.jobs_file)
        ]
        emit({"queued": [job["id"] for job in queued]})
        return EXIT_PASS

    job = enqueue(base / "queue", arguments.protocol, "ci-submit")
    if arguments.wait is None:
        emit(job)
        return EXIT_PASS
    result = wait_for(base / "results", str(job["id"]), arguments.wait)
    if result is None:
        emit({"id": job["id"], "protocol": job["protocol"], "status": "timeout"})
        return EXIT_TIMEOUT
    emit(result)
    return EXIT_PASS if result.get("status") == "pass" else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
