#!/usr/bin/python
"""Make trees read-only for everyone, and give every entry its exact original mode back later.

The original modes are recorded once, before the first change, in a JSON file outside the trees.
Files may be renamed or rewritten while the trees are locked (the window renames scripts and
rewrites hooks as root), so on unlock each entry is matched to its record by path and inode.
"""

# Paths stay strings handed to os-level calls (lstat, chmod, replace): the module compares inode
# numbers and modes, which is what those calls return.
# ruff: noqa: PTH100, PTH101, PTH103, PTH105, PTH108, PTH110, PTH112, PTH114, PTH117, PTH118
# ruff: noqa: PTH120, PTH123

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: protocol_lock_modes
short_description: Remove the write bits of directory trees and restore the exact modes later
description:
  - With O(state=locked), records the mode, inode and content checksum of every directory and
    regular file under O(paths) in O(record) (only entries not recorded yet), then removes all
    write bits (C(chmod a-w)), so that no user but root can create, rename, delete or change
    anything there.
  - With O(state=unlocked), gives every entry its recorded mode back and removes O(record).
  - An entry is matched to its record by path when the inode is unchanged; else by inode when the
    file was renamed (same inode, same content, its old path no longer holding it); else by path
    when the file was rewritten in place (a new inode at the same path). An entry that matches
    nothing was created while locked (a later O(state=locked) run locks it too); on unlock it only
    gets its owner's write bit back, and it is listed in RV(unrecorded).
  - Symbolic links are left alone (Linux has no mode on a link).
options:
  root:
    description: Absolute directory the O(paths) are relative to.
    type: path
    required: true
  paths:
    description: Directories or files, relative to O(root), to lock.
    type: list
    elements: str
    required: true
  record:
    description: JSON file holding the original modes; keep it outside O(root).
    type: path
    required: true
  state:
    description: V(locked) or V(unlocked).
    type: str
    choices: [locked, unlocked]
    default: locked
notes:
  - Supports check mode and diff mode.
"""

RETURN = r"""
changes:
  description: The entries whose mode changed (would change, in check mode), with old and new mode.
  type: list
  elements: dict
  returned: always
recorded:
  description: How many entries the record holds after this run.
  type: int
  returned: always
unrecorded:
  description: Entries found on unlock that the record does not know, given u+w.
  type: list
  elements: str
  returned: always
"""

WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
CHUNK = 1 << 16


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: str, paths: list[str]) -> dict[str, dict[str, Any]]:
    """Return every directory and regular file under the paths, by path relative to root.

    Returns:
        For each entry: mode, dev, ino, kind (d or f) and, for files, the sha256 of the content.
    """
    found: dict[str, dict[str, Any]] = {}

    def add(relative: str) -> None:
        full = os.path.join(root, relative)
        info = os.lstat(full)
        if stat.S_ISDIR(info.st_mode):
            kind = "d"
        elif stat.S_ISREG(info.st_mode):
            kind = "f"
        else:
            return
        entry = {
            "mode": stat.S_IMODE(info.st_mode),
            "dev": info.st_dev,
            "ino": info.st_ino,
            "kind": kind,
        }
        if kind == "f":
            entry["sha256"] = _sha256(full)
        found[relative] = entry

    for top in paths:
        add(top)
        full_top = os.path.join(root, top)
        if not os.path.isdir(full_top) or os.path.islink(full_top):
            continue
        for directory, subdirs, files in os.walk(full_top):
            subdirs.sort()
            for name in sorted(subdirs + files):
                add(os.path.relpath(os.path.join(directory, name), root))
    return found


def _original(
    path: str,
    entry: dict[str, Any],
    record: dict[str, dict[str, Any]],
    by_inode: dict[tuple[int, int], str],
    current: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:
    """Find the record of the entry now at path, following renames and rewrites.

    Returns:
        The record, or None for an entry created since the record was made.
    """
    same_path = record.get(path)
    if same_path and (same_path["dev"], same_path["ino"]) == (entry["dev"], entry["ino"]):
        return same_path
    moved_from = by_inode.get((entry["dev"], entry["ino"]))
    if moved_from is not None and moved_from != path:
        moved = record[moved_from]
        still_there = current.get(moved_from)
        vacated = still_there is None or (still_there["dev"], still_there["ino"]) != (
            moved["dev"],
            moved["ino"],
        )
        # A freed inode number can be reused by a new file: the content must match as well.
        same_content = moved["kind"] == entry["kind"] and moved.get("sha256") == entry.get("sha256")
        if vacated and same_content:
            return moved
    if same_path and same_path["kind"] == entry["kind"]:
        return same_path
    return None


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    except FileNotFoundError:
        return None
    return data


def _save(path: str, data: dict[str, Any]) -> None:
    """Write the record atomically with mode 0600."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".modes-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def plan(
    root: str, paths: list[str], record_path: str, state: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str], bool]:
    """Work out the mode changes and the record to write.

    Returns:
        The changes (path, before, after), the record to save (None: leave it), the entries the
        record does not know (unlock only) and whether the record file is to be removed.
    """
    current = _walk(root, paths)
    data = _load(record_path)
    record: dict[str, dict[str, Any]] = dict(data["entries"]) if data else {}
    by_inode = {(r["dev"], r["ino"]): p for p, r in record.items()}
    changes: list[dict[str, Any]] = []
    unrecorded: list[str] = []
    added = False
    for path, entry in current.items():
        original = _original(path, entry, record, by_inode, current)
        if state == "locked":
            if original is None:
                # Seen for the first time by a later run: created while locked, its mode before
                # the lock is unknown. Recorded so it is locked too, and flagged as such.
                original = record[path] = {**entry, "late": data is not None}
                added = True
            wanted = original["mode"] & ~WRITE_BITS
        elif original is None or original.get("late"):
            unrecorded.append(path)
            wanted = entry["mode"] | stat.S_IWUSR
        else:
            wanted = original["mode"]
        if wanted != entry["mode"]:
            changes.append(
                {"path": path, "before": f"{entry['mode']:04o}", "after": f"{wanted:04o}"}
            )
    if state == "unlocked":
        return changes, None, unrecorded, data is not None
    if data is None or added:
        save = {
            "root": root,
            "paths": paths,
            "recorded_at": data["recorded_at"] if data else _now(),
            "entries": record,
        }
        return changes, save, unrecorded, False
    return changes, None, unrecorded, False


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "record": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["locked", "unlocked"], "default": "locked"},
        },
        supports_check_mode=True,
    )
    root = os.path.normpath(module.params["root"])
    paths = [os.path.normpath(p) for p in module.params["paths"]]
    record_path = module.params["record"]
    bad = [p for p in paths if os.path.isabs(p) or p == ".." or p.startswith("../")]
    if bad:
        module.fail_json(msg=f"paths must be relative to root and stay inside it: {bad}")
    missing = [p for p in paths if not os.path.lexists(os.path.join(root, p))]
    if missing and module.params["state"] == "locked":
        module.fail_json(msg=f"paths missing under {root}: {', '.join(missing)}")
    paths = [p for p in paths if p not in missing]
    if os.path.commonpath([os.path.abspath(record_path), root]) == root:
        module.fail_json(msg=f"record {record_path} must be outside root {root}")

    changes, save, unrecorded, remove = plan(root, paths, record_path, module.params["state"])
    result: dict[str, Any] = {
        "changed": bool(changes or save or remove),
        "changes": changes,
        "unrecorded": unrecorded,
        "recorded": len(save["entries"])
        if save
        else len((_load(record_path) or {}).get("entries", {})),
    }
    if module._diff and changes:  # noqa: SLF001 - AnsibleModule exposes diff mode only this way
        result["diff"] = {
            "before": "".join(f"{c['before']} {c['path']}\n" for c in changes),
            "after": "".join(f"{c['after']} {c['path']}\n" for c in changes),
        }
    if not module.check_mode:
        # Record first: a run killed half-way leaves the truth on disk for the next run.
        if save is not None:
            _save(record_path, save)
        for change in changes:
            os.chmod(os.path.join(root, change["path"]), int(change["after"], 8))
        if remove:
            os.unlink(record_path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
