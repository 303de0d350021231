#!/usr/bin/python
"""Run every validation script of a checkout once or a few times and time each run."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mw_validation_common import list_scripts

DOCUMENTATION = r"""
---
module: mw_validation_suite
short_description: Run the validation scripts of a checkout and time each run
description:
  - Lists the scripts directly inside O(root)/O(scripts_dir) that match O(patterns) and runs each
    one with O(arguments) from O(root), the way the CI runner does (the script executed
    directly, a clean environment with C(PATH) and C(EVIDENCE_DIR)).
  - With O(rounds) above 1 every script runs that many times, one pass over all scripts after
    the other, and its fastest run is reported as its run time. The fastest run is the
    script's own cost; the slower ones add the waits of a busy host, which a window's host
    always is.
  - Reports, per script, its exit code (the first non-zero one of its rounds, else 0), its
    run time in seconds (fastest run) and median, its SHA-256 and the key given in O(keys), so
    that run times can be compared across a rename.
  - The scripts write evidence files; those are outputs of the run, not state this module
    manages, so it reports no change. It does not support check mode, because running the
    scripts cannot be rehearsed.
options:
  root:
    description: Root of the checkout; the scripts run with it as working directory.
    type: path
    required: true
  scripts_dir:
    description: Directory of the scripts, relative to O(root). Not searched recursively.
    type: str
    required: true
  patterns:
    description: Shell patterns a file name must match to be a script. Hidden files never are.
    type: list
    elements: str
    default: ["*.sh"]
  arguments:
    description: Arguments every script runs with.
    type: list
    elements: str
    default: ["--self-test"]
  rounds:
    description: How many times each script runs; the fastest run is its run time.
    type: int
    default: 1
  timeout:
    description: Seconds one run of one script may take before it is killed and reported as
      failed with exit code 124.
    type: float
    default: 60
  evidence_dir:
    description: Directory the scripts write their evidence to (C(EVIDENCE_DIR)); created if
      missing. Empty leaves C(EVIDENCE_DIR) unset, so the scripts use their own default.
    type: path
    default: ""
  environment:
    description: Further environment variables of the scripts.
    type: dict
    default: {}
  keys:
    description: Key of each script name in the result (for instance its name after a rename);
      a script not listed is keyed by its own name.
    type: dict
    default: {}
author:
  - Maintenance window project contributors
"""

EXAMPLES = r"""
- name: Run every script with --self-test three times
  mw_validation_suite:
    root: /opt/project
    scripts_dir: scripts/validation
    rounds: 3
    evidence_dir: /opt/project/evidence
"""

RETURN = r"""
started:
  description: Wall-clock time (seconds since the epoch, on the host) the first run started.
  returned: always
  type: float
finished:
  description: Wall-clock time the last run ended.
  returned: always
  type: float
scripts:
  description: One entry per script, sorted by name.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: validate-p18-lint.sh, path: scripts/validation/validate-p18-lint.sh,
       key: validate-p18-lint.sh, sha256: "9f2c...", rc: 0, seconds: 0.004,
       median_seconds: 0.004, round_seconds: [0.004, 0.005, 0.004], output: ""}
failing:
  description: Names of the scripts whose exit code was not 0 in some round.
  returned: always
  type: list
  elements: str
total_seconds:
  description: Sum of the scripts' run times (fastest runs).
  returned: always
  type: float
leftovers:
  description: Temporary names an interrupted rename batch left in the scripts directory.
  returned: always
  type: list
  elements: str
"""

# Shell conventions for a command that could not run or was killed on timeout.
RC_NOT_EXECUTABLE = 126
RC_NOT_FOUND = 127
RC_TIMEOUT = 124
OUTPUT_LIMIT = 600
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run_once(path: str, params: dict[str, Any], env: dict[str, str]) -> tuple[int, float, str]:
    """Run one script once.

    Returns:
        Its exit code, its run time in seconds and the tail of its output.
    """
    started = time.monotonic()
    try:
        done = subprocess.run(
            [path, *params["arguments"]],
            cwd=params["root"],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=params["timeout"],
            check=False,
        )
        rc, output = done.returncode, (done.stdout + done.stderr).strip()
    except subprocess.TimeoutExpired:
        rc, output = RC_TIMEOUT, f"timed out after {params['timeout']:g} s"
    except PermissionError:
        rc, output = RC_NOT_EXECUTABLE, "not executable"
    except FileNotFoundError:
        rc, output = RC_NOT_FOUND, "disappeared or its interpreter is missing"
    return rc, time.monotonic() - started, output[-OUTPUT_LIMIT:]


def run_suite(params: dict[str, Any]) -> dict[str, Any]:
    """Run every script ``rounds`` times and describe each one.

    Returns:
        The module's result, without ``changed``.
    """
    scripts, leftovers = list_scripts(params["root"], params["scripts_dir"], params["patterns"])
    env = {"PATH": BASE_PATH, **params["environment"]}
    if params["evidence_dir"]:
        os.makedirs(params["evidence_dir"], exist_ok=True)  # noqa: PTH103
        env["EVIDENCE_DIR"] = params["evidence_dir"]
    times: dict[str, list[float]] = {script["name"]: [] for script in scripts}
    codes: dict[str, int] = dict.fromkeys(times, 0)
    outputs: dict[str, str] = dict.fromkeys(times, "")
    started = time.time()
    for _ in range(params["rounds"]):
        for script in scripts:
            path = os.path.join(params["root"], script["path"])  # noqa: PTH118
            rc, seconds, output = run_once(path, params, env)
            times[script["name"]].append(seconds)
            if rc != 0 and codes[script["name"]] == 0:
                codes[script["name"]], outputs[script["name"]] = rc, output
    finished = time.time()
    for script in scripts:
        name = script["name"]
        script.update(
            key=params["keys"].get(name, name),
            rc=codes[name],
            seconds=round(min(times[name]), 6) if times[name] else 0.0,
            median_seconds=round(statistics.median(times[name]), 6) if times[name] else 0.0,
            round_seconds=[round(seconds, 6) for seconds in times[name]],
            output=outputs[name],
        )
    return {
        "started": started,
        "finished": finished,
        "scripts": scripts,
        "failing": [script["name"] for script in scripts if script["rc"] != 0],
        "total_seconds": round(sum(script["seconds"] for script in scripts), 6),
        "leftovers": leftovers,
    }


def main() -> None:
    """Run the module under Ansible."""
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "scripts_dir": {"type": "str", "required": True},
            "patterns": {"type": "list", "elements": "str", "default": ["*.sh"]},
            "arguments": {"type": "list", "elements": "str", "default": ["--self-test"]},
            "rounds": {"type": "int", "default": 1},
            "timeout": {"type": "float", "default": 60},
            "evidence_dir": {"type": "path", "default": ""},
            "environment": {"type": "dict", "default": {}},
            "keys": {"type": "dict", "default": {}, "no_log": False},
        },
        supports_check_mode=False,
    )
    params = module.params
    if params["rounds"] < 1:
        module.fail_json(msg=f"rounds must be 1 or more, got {params['rounds']}")
    try:
        result = run_suite(params)
    except OSError as error:
        module.fail_json(
            msg=f"cannot list the scripts in {params['root']}/{params['scripts_dir']}: {error}",
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
