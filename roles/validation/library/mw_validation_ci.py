#!/usr/bin/python
"""Run one real CI job per protocol on a runner host and report each job's result."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mw_validation_ci
short_description: Run one CI job per protocol and report the results
description:
  - Queues one job per protocol of O(protocols) with the runner's own submit command
    (C(ci-submit --protocol N --wait SECONDS)), all at once, and waits for every result.
  - Without O(runner_command) the jobs go to the runner's queue, so the runner service must
    be running (the caller starts it).
  - With O(runner_command) the module runs the runner program itself, in the foreground, with
    the settings of O(runner_env_file) but its own queue, results, checkout and cache below
    O(state_dir). The runner then takes only these jobs, whatever waits in the service's
    queue, and leaves the service's unit, queue and cache alone. Once every job has a result
    the runner gets SIGTERM (it finishes the job in hand, then exits) and, after
    O(stop_timeout) seconds, SIGKILL.
  - Reports no change; the jobs' results, checkout and evidence below the state directory are
    outputs of the test. It does not support check mode, because the jobs run the scripts.
options:
  protocols:
    description: One job is queued per protocol.
    type: list
    elements: int
    required: true
  wait:
    description: Seconds each job may take, from its submission to its result, queue wait
      included (the jobs run one after the other).
    type: float
    default: 60
  submit_command:
    description: The program that queues a job and waits for its result.
    type: path
    default: /usr/local/bin/ci-submit
  runner_command:
    description: Command line of the runner program; when set, the module runs the runner
      itself against O(state_dir).
    type: list
    elements: str
    default: []
  runner_env_file:
    description: The runner's settings (C(KEY=value) lines), used with O(runner_command).
    type: path
    default: /etc/ci-runner/runner.env
  state_dir:
    description: State directory of the module's own runner (C(CI_STATE_DIR)); its cache is
      C(cache/) below it. Required with O(runner_command).
    type: path
    default: ""
  stop_timeout:
    description: Seconds the module's own runner gets to exit after SIGTERM.
    type: float
    default: 120
author:
  - Maintenance window project contributors
"""

EXAMPLES = r"""
- name: Run a job per protocol with a private runner, leaving the runner service alone
  mw_validation_ci:
    protocols: [18, 19, 20]
    runner_command: [/usr/bin/python3, /usr/local/bin/ci-runner]
    state_dir: /var/lib/maintenance-window/validation/ci

- name: Run a job per protocol through the running runner service
  mw_validation_ci:
    protocols: [18, 19, 20]
"""

RETURN = r"""
jobs:
  description: One entry per protocol, in the order of protocols.
  returned: always
  type: list
  elements: dict
  contains:
    protocol:
      description: The protocol of the job.
      type: int
    rc:
      description: Exit code of the submit command (0 pass, 1 fail, 2 no result in time).
      type: int
    status:
      description: The job's status (pass, fail, timeout) or unknown.
      type: str
    result:
      description: The job's result as the runner wrote it (id, commit, scripts with name, path,
        rc and seconds, error).
      type: dict
    output:
      description: What the submit command printed besides the result, when it printed no JSON.
      type: str
runner:
  description: How the jobs were run.
  returned: always
  type: dict
  contains:
    mode:
      description: C(own) (the module's runner) or C(service).
      type: str
    rc:
      description: Exit code of the module's runner; null for the service.
      type: int
    early_exit:
      description: Whether the module's runner ended before the jobs did.
      type: bool
    log:
      description: Tail of the module's runner's log.
      type: str
"""

BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LOG_LIMIT = 3000
# Time the submit command gets beyond its own wait to print and exit.
SUBMIT_GRACE = 30


def read_env_file(path: str) -> dict[str, str]:
    """Read ``KEY=value`` lines the way systemd's EnvironmentFile does for simple values.

    Raises:
        OSError: if the file cannot be read.
    """
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:  # noqa: PTH123
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def submit_all(params: dict[str, Any], env: dict[str, str]) -> list[dict[str, Any]]:
    """Queue every job at once and collect each result."""
    started = [
        (
            protocol,
            subprocess.Popen(
                [
                    params["submit_command"],
                    "--protocol",
                    str(protocol),
                    "--wait",
                    f"{params['wait']:g}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for protocol in params["protocols"]
    ]
    jobs = []
    for protocol, process in started:
        try:
            out, err = process.communicate(timeout=params["wait"] + SUBMIT_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        job: dict[str, Any] = {"protocol": protocol, "rc": process.returncode, "result": {}}
        try:
            parsed = json.loads(out)
            job["result"] = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            job["output"] = (out + err).strip()[-LOG_LIMIT:]
        job["status"] = str(job["result"].get("status", "unknown"))
        if job["status"] == "unknown" and "output" not in job:
            job["output"] = err.strip()[-LOG_LIMIT:]
        jobs.append(job)
    return jobs


def stop_runner(runner: subprocess.Popen[bytes], timeout: float) -> int:
    """Ask the runner to stop after the job in hand, then kill it if it does not."""
    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    return runner.returncode


def _tail(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - LOG_LIMIT))
    return log.read().decode("utf-8", errors="replace")


def run_with_own_runner(params: dict[str, Any]) -> dict[str, Any]:
    """Run the runner program against a private state directory and submit the jobs to it.

    Raises:
        OSError: if the settings cannot be read or the runner cannot be started.
    """
    state = params["state_dir"]
    os.makedirs(os.path.join(state, "cache"), mode=0o700, exist_ok=True)  # noqa: PTH103, PTH118
    env = {"PATH": BASE_PATH, **read_env_file(params["runner_env_file"])}
    env.update(CI_STATE_DIR=state, CI_CACHE_DIR=os.path.join(state, "cache"))  # noqa: PTH118
    with open(os.path.join(state, "runner.log"), "w+b") as log:  # noqa: PTH118, PTH123
        runner = subprocess.Popen(
            params["runner_command"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            jobs = submit_all(params, env)
        finally:
            early_exit = runner.poll() is not None
            rc = stop_runner(runner, params["stop_timeout"])
        return {
            "jobs": jobs,
            "runner": {"mode": "own", "rc": rc, "early_exit": early_exit, "log": _tail(log)},
        }


def main() -> None:
    """Run the module under Ansible."""
    module = AnsibleModule(
        argument_spec={
            "protocols": {"type": "list", "elements": "int", "required": True},
            "wait": {"type": "float", "default": 60},
            "submit_command": {"type": "path", "default": "/usr/local/bin/ci-submit"},
            "runner_command": {"type": "list", "elements": "str", "default": []},
            "runner_env_file": {"type": "path", "default": "/etc/ci-runner/runner.env"},
            "state_dir": {"type": "path", "default": ""},
            "stop_timeout": {"type": "float", "default": 120},
        },
        supports_check_mode=False,
    )
    params = module.params
    if params["runner_command"] and not params["state_dir"]:
        module.fail_json(msg="state_dir is required with runner_command")
    started = time.time()
    try:
        if params["runner_command"]:
            result = run_with_own_runner(params)
        else:
            jobs = submit_all(params, {"PATH": BASE_PATH})
            result = {"jobs": jobs, "runner": {"mode": "service", "rc": None, "early_exit": False}}
    except OSError as error:
        module.fail_json(msg=f"cannot run the CI jobs: {error}")
    module.exit_json(changed=False, started=started, finished=time.time(), **result)


if __name__ == "__main__":
    main()
