#!/usr/bin/python
"""Read a checkout for the validation phase: its scripts, the references to them, git, evidence."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mw_validation_common import NAME_CHARS, list_scripts

DOCUMENTATION = r"""
---
module: mw_validation_scan
short_description: Read a checkout's scripts, the references to them, its git state and evidence
description:
  - Reads only; safe in check mode. Each part is read when asked for, in one pass per file.
  - B(scripts) (always) lists the scripts directly inside O(root)/O(scripts_dir) matching
    O(patterns), with their SHA-256, and the temporary names an interrupted rename left there.
  - B(references) (with O(reference_paths)) walks those files and directories (C(.git)
    directories, symlinks and binary files skipped) and finds every script they name, as a path
    C(<scripts_dir>/<name>) or as a backticked basename matching O(backtick_pattern). A name that
    is not a file of the scripts directory is a broken reference. Every whole-word occurrence
    (neither preceded nor followed by one of C(A-Z a-z 0-9 . _ + -), the rename module's rule)
    of an old name of O(renames) that is not also a new name is a stale reference.
  - B(git) (with O(git=true)) reports HEAD, its subject and commit time, the uncommitted
    changes (C(git status --porcelain), ignored files excluded) and the newest commit whose
    subject starts with O(window_subject).
  - B(evidence) (with O(evidence_dir)) checks that every script of O(evidence_expected) wrote
    C(<name without .sh>.json) at or after O(evidence_since), holding JSON whose C(name) (when
    present) is the script's name and whose C(status) (when present) is C(pass); and lists the
    evidence files of old-only names written at or after O(evidence_old_since) (something ran an
    old name after the renames) apart from older ones (left from before the window).
options:
  root:
    description: Root of the checkout.
    type: path
    required: true
  scripts_dir:
    description: Directory of the scripts, relative to O(root).
    type: str
    required: true
  patterns:
    description: Shell patterns a file name must match to be a script.
    type: list
    elements: str
    default: ["*.sh"]
  reference_paths:
    description: Files and directories, relative to O(root), whose contents name the scripts.
    type: list
    elements: str
    default: []
  backtick_pattern:
    description: Regular expression a backticked word without C(/) must match in full to count
      as a script's basename.
    type: str
    default: '[A-Za-z0-9][A-Za-z0-9._+-]*\.sh'
  renames:
    description: The rename batch, entries with at least C(from) and C(to) (names relative to
      O(scripts_dir)).
    type: list
    elements: dict
    default: []
  git:
    description: Read the checkout's git state.
    type: bool
    default: false
  window_subject:
    description: Subject prefix of the window's commit, for RV(git.window_commit).
    type: str
    default: ""
  evidence_dir:
    description: Directory of the evidence files; empty skips the evidence part.
    type: path
    default: ""
  evidence_expected:
    description: Script names whose evidence must have been written at or after O(evidence_since).
    type: list
    elements: str
    default: []
  evidence_since:
    description: Time (seconds since the epoch, host clock) the expected evidence is written after.
    type: float
    default: 0
  evidence_old_since:
    description: Time after which an evidence file of an old-only name counts as written by this
      window (typically the time of the rename commit).
    type: float
    default: 0
author:
  - Maintenance window project contributors
"""

EXAMPLES = r"""
- name: Scan the hooks and protocol files for broken and stale script names
  mw_validation_scan:
    root: /opt/project
    scripts_dir: scripts/validation
    reference_paths: [.cursor/ai-driven-workflow]
    renames: "{{ hostvars['localhost']['mw_rename_batch'] }}"
    git: true
    window_subject: "Maintenance window RUN-ID: "
"""

RETURN = r"""
scripts:
  description: The scripts, sorted by name ({name, path, executable, sha256}).
  returned: always
  type: list
  elements: dict
leftovers:
  description: Temporary names of an interrupted rename batch in the scripts directory.
  returned: always
  type: list
  elements: str
references:
  description: What the reference files name.
  returned: when reference_paths is set
  type: dict
  contains:
    files:
      description: Number of files read.
      type: int
    missing_paths:
      description: Reference paths that do not exist.
      type: list
    referenced:
      description: Each script name referenced, with how many times.
      type: dict
    broken:
      description: References to names that are not scripts ({name, file, line}).
      type: list
    stale:
      description: Whole-word occurrences of old-only names ({name, file, line}).
      type: list
git:
  description: The checkout's git state.
  returned: when git is true
  type: dict
  contains:
    head:
      description: Commit id of HEAD.
      type: str
    subject:
      description: Subject of HEAD.
      type: str
    committed_at:
      description: Commit time of HEAD (seconds since the epoch).
      type: int
    dirty:
      description: Lines of C(git status --porcelain).
      type: list
    window_commit:
      description: The newest commit whose subject starts with window_subject ({head, subject,
        committed_at}), or null.
      type: dict
    error:
      description: Why git could not be read, when it could not.
      type: str
evidence:
  description: The evidence files checked.
  returned: when evidence_dir is set
  type: dict
  contains:
    checked:
      description: Number of expected evidence files.
      type: int
    missing:
      description: Expected files that do not exist ({name, file}).
      type: list
    stale:
      description: Expected files older than evidence_since ({name, file, age}).
      type: list
    invalid:
      description: Expected files whose content is wrong ({name, file, problem}).
      type: list
    old_written:
      description: Evidence files of old-only names written at or after evidence_old_since.
      type: list
    old_left:
      description: Evidence files of old-only names older than that.
      type: list
"""

BINARY_SNIFF_BYTES = 8192
GIT_TIMEOUT = 60
_TOKEN_RE = re.compile(f"[{NAME_CHARS}]+")


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def old_only_names(renames: list[dict[str, Any]]) -> set[str]:
    """Return the basenames a batch renames away and gives to no other script."""
    new = {_basename(str(entry.get("to", ""))) for entry in renames}
    return {_basename(str(entry.get("from", ""))) for entry in renames} - new - {""}


def reference_files(root: str, paths: list[str], missing: list[str]) -> Iterator[str]:
    """Yield the regular, non-symlink files below the reference paths, relative to ``root``.

    Reference paths that do not exist are appended to ``missing``.
    """
    for rel in paths:
        top = os.path.join(root, rel)  # noqa: PTH118
        if not os.path.lexists(top):
            missing.append(rel)
            continue
        if os.path.islink(top):  # noqa: PTH114
            continue
        if os.path.isfile(top):  # noqa: PTH113
            yield rel
            continue
        for current, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in sorted(files):
                full = os.path.join(current, name)  # noqa: PTH118
                if not os.path.islink(full) and os.path.isfile(full):  # noqa: PTH113, PTH114
                    yield os.path.relpath(full, root)


def scan_references(params: dict[str, Any], script_names: set[str]) -> dict[str, Any]:
    """Find the script names the reference files use, and the broken and stale ones."""
    root, scripts_dir = params["root"], params["scripts_dir"].strip("/")
    path_re = re.compile(
        f"(?<![{NAME_CHARS}]){re.escape(scripts_dir)}/((?:[{NAME_CHARS}]+/)*[{NAME_CHARS}]+)",
    )
    backtick_re = re.compile(f"`([{NAME_CHARS}]+)`")
    wanted = re.compile(params["backtick_pattern"])
    old_only = old_only_names(params["renames"])
    referenced: dict[str, int] = {}
    broken: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    missing: list[str] = []
    count = 0
    for rel in reference_files(root, params["reference_paths"], missing):
        with open(os.path.join(root, rel), "rb") as handle:  # noqa: PTH118, PTH123
            data = handle.read()
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            continue
        count += 1
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            # A path at the end of a sentence keeps its full stop in the match; it is no part
            # of a script name.
            names = [match.rstrip(".") for match in path_re.findall(line)]
            names += [m for m in backtick_re.findall(line) if wanted.fullmatch(m)]
            for name in names:
                referenced[name] = referenced.get(name, 0) + 1
                exists = name in script_names or os.path.isfile(  # noqa: PTH113
                    os.path.join(root, scripts_dir, name),  # noqa: PTH118
                )
                if not exists:
                    broken.append({"name": name, "file": rel, "line": number})
            stale += [
                {"name": token, "file": rel, "line": number}
                for token in _TOKEN_RE.findall(line)
                if token in old_only
            ]
    return {
        "files": count,
        "missing_paths": missing,
        "referenced": referenced,
        "broken": broken,
        "stale": stale,
    }


def _git(root: str, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", root, *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"git {args[0]} failed ({done.returncode})")
    return done.stdout


def _commit(root: str, *selector: str) -> dict[str, Any] | None:
    out = _git(root, "log", "-1", "--format=%H%x00%ct%x00%s", *selector).strip()
    if not out:
        return None
    head, committed_at, subject = out.split("\0", 2)
    return {"head": head, "committed_at": int(committed_at), "subject": subject}


def read_git(root: str, window_subject: str) -> dict[str, Any]:
    """Describe HEAD, the uncommitted changes and the window's commit."""
    try:
        head = _commit(root, "HEAD") or {}
        dirty = _git(root, "status", "--porcelain").splitlines()
        window = None
        if window_subject:
            found = _commit(root, "--fixed-strings", f"--grep={window_subject}", "HEAD")
            if found and found["subject"].startswith(window_subject):
                window = found
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        return {"error": str(error)}
    return {**head, "dirty": dirty, "window_commit": window}


def _evidence_file(directory: str, name: str) -> str:
    # The scripts name their evidence after themselves without the .sh suffix (${self%.sh}).
    stem = name.removesuffix(".sh")
    return os.path.join(directory, f"{stem}.json")  # noqa: PTH118


def _evidence_problem(path: str, name: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            data = json.load(handle)
    except (OSError, ValueError) as error:
        return f"not readable as JSON: {error}"
    if not isinstance(data, dict):
        return "not a JSON object"
    if "name" in data and data["name"] != name:
        return f"names {data['name']!r}, not {name!r}"
    if "status" in data and data["status"] != "pass":
        return f"status {data['status']!r}"
    return None


def scan_evidence(params: dict[str, Any]) -> dict[str, Any]:
    """Check the expected evidence files and look for evidence of old-only names."""
    directory = params["evidence_dir"]
    since = params["evidence_since"]
    result: dict[str, Any] = {
        "dir": directory,
        "checked": len(params["evidence_expected"]),
        "missing": [],
        "stale": [],
        "invalid": [],
        "old_written": [],
        "old_left": [],
    }
    for name in params["evidence_expected"]:
        path = _evidence_file(directory, _basename(name))
        try:
            mtime = os.stat(path).st_mtime  # noqa: PTH116
        except FileNotFoundError:
            result["missing"].append({"name": name, "file": path})
            continue
        # Filesystem timestamps may be coarser than the clock the start was read from.
        if mtime < since - 1:
            result["stale"].append({"name": name, "file": path, "age": round(since - mtime)})
            continue
        problem = _evidence_problem(path, _basename(name))
        if problem:
            result["invalid"].append({"name": name, "file": path, "problem": problem})
    for name in sorted(old_only_names(params["renames"])):
        path = _evidence_file(directory, name)
        try:
            mtime = os.stat(path).st_mtime  # noqa: PTH116
        except FileNotFoundError:
            continue
        written = mtime >= params["evidence_old_since"] - 1
        result["old_written" if written else "old_left"].append(
            {"name": name, "file": path, "mtime": int(mtime)},
        )
    return result


def main() -> None:
    """Run the module under Ansible."""
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "scripts_dir": {"type": "str", "required": True},
            "patterns": {"type": "list", "elements": "str", "default": ["*.sh"]},
            "reference_paths": {"type": "list", "elements": "str", "default": []},
            "backtick_pattern": {"type": "str", "default": r"[A-Za-z0-9][A-Za-z0-9._+-]*\.sh"},
            "renames": {"type": "list", "elements": "dict", "default": []},
            "git": {"type": "bool", "default": False},
            "window_subject": {"type": "str", "default": ""},
            "evidence_dir": {"type": "path", "default": ""},
            "evidence_expected": {"type": "list", "elements": "str", "default": []},
            "evidence_since": {"type": "float", "default": 0},
            "evidence_old_since": {"type": "float", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        re.compile(params["backtick_pattern"])
    except re.error as error:
        module.fail_json(msg=f"backtick_pattern is not a regular expression: {error}")
    try:
        scripts, leftovers = list_scripts(
            params["root"],
            params["scripts_dir"],
            params["patterns"],
        )
    except OSError as error:
        module.fail_json(
            msg=f"cannot list the scripts in {params['root']}/{params['scripts_dir']}: {error}",
        )
    result: dict[str, Any] = {"changed": False, "scripts": scripts, "leftovers": leftovers}
    try:
        if params["reference_paths"]:
            names = {script["name"] for script in scripts}
            result["references"] = scan_references(params, names)
        if params["evidence_dir"]:
            result["evidence"] = scan_evidence(params)
    except OSError as error:
        module.fail_json(msg=f"cannot read {error.filename or params['root']}: {error}", **result)
    if params["git"]:
        result["git"] = read_git(params["root"], params["window_subject"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
