#!/usr/bin/python
"""Describe a snapshot archive in a JSON manifest: what it holds, sizes, SHA-256 sums and time.

The description is plain Python (describe_archive, build_manifest) so that it can be imported and
tested without Ansible; main() is the thin AnsibleModule wrapper.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mw_snapshot_manifest
short_description: Write the JSON manifest of a snapshot archive
description:
  - Reads the gzip-compressed tar O(archive) to its end and writes O(manifest) describing it,
    with the archive's size and SHA-256, each snapshotted path with its file count and bytes,
    and each member with its type, size and SHA-256 (regular files) or link target (symlinks).
  - Members are named relative to C(/), as the archive provider stores them, so that
    C(tar -C / -xzf ARCHIVE) puts them back.
  - The manifest is written atomically (temporary file and rename) with mode 0600. When a
    manifest for the same archive SHA-256 already exists it is left as it is and the module
    reports no change, so the creation time stays the first one.
version_added: "1.0.0"
author:
  - Maintenance window project contributors
options:
  archive:
    description: Path of the snapshot archive.
    type: path
    required: true
  manifest:
    description: Path of the JSON manifest to write.
    type: path
    required: true
  paths:
    description: Absolute paths the snapshot was asked to hold, present or not.
    type: list
    elements: str
    required: true
  absent:
    description: Those of O(paths) that did not exist when the snapshot was taken.
    type: list
    elements: str
    default: []
  metadata:
    description: Extra top-level keys of the manifest (host, run id, provider, Redis details).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Describe the snapshot archive
  mw_snapshot_manifest:
    archive: /var/backups/maintenance-window/RUN/snapshot-proto1.tar.gz
    manifest: /var/backups/maintenance-window/RUN/snapshot-proto1.json
    paths: [/opt/project, /var/lib/maintenance-window]
    metadata:
      host: proto1
      run_id: RUN
"""

RETURN = r"""
manifest:
  description: The manifest as written (or as found, when unchanged), without its member list.
  type: dict
  returned: always
member_count:
  description: Number of archive members the manifest lists.
  type: int
  returned: always
"""

_CHUNK = 1024 * 1024


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's contents."""
    with path.open("rb") as stream:
        return _digest(stream)


def describe_archive(archive: Path) -> list[dict[str, Any]]:
    """Describe every member of a gzip-compressed tar archive.

    Args:
        archive: The archive to read to its end.

    Returns:
        One entry per member: path (absolute), type, size, and sha256 or target.
    """
    members: list[dict[str, Any]] = []
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            entry: dict[str, Any] = {"path": "/" + member.name.strip("/"), "size": member.size}
            if member.isfile():
                stream = tar.extractfile(member)
                entry["type"] = "file"
                entry["sha256"] = _digest(stream) if stream else ""
            elif member.issym():
                entry["type"] = "symlink"
                entry["target"] = member.linkname
            elif member.isdir():
                entry["type"] = "directory"
            else:
                entry["type"] = "other"
            members.append(entry)
    return members


def build_manifest(
    archive: Path, paths: list[str], absent: list[str], metadata: dict[str, Any]
) -> dict[str, Any]:
    """Build the manifest of a snapshot archive.

    Args:
        archive: The snapshot archive.
        paths: The absolute paths the snapshot was asked to hold.
        absent: The paths that did not exist.
        metadata: Extra top-level keys.

    Returns:
        The manifest.
    """
    members = describe_archive(archive)
    summary = []
    for wanted in paths:
        top = "/" + wanted.strip("/")
        inside = [m for m in members if m["path"] == top or m["path"].startswith(top + "/")]
        summary.append(
            {
                "path": top,
                "present": wanted not in absent,
                "files": sum(1 for m in inside if m["type"] == "file"),
                "bytes": sum(m["size"] for m in inside if m["type"] == "file"),
            }
        )
    manifest: dict[str, Any] = dict(metadata)
    manifest.update(
        {
            "archive": {
                "path": str(archive),
                "size": archive.stat().st_size,
                "sha256": file_sha256(archive),
            },
            "paths": summary,
            "members": members,
        }
    )
    return manifest


def write_atomically(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same directory and a rename."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temp).chmod(0o600)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _result(manifest: dict[str, Any]) -> dict[str, Any]:
    members = manifest.get("members", [])
    return {
        "manifest": {k: v for k, v in manifest.items() if k != "members"},
        "member_count": len(members),
    }


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "archive": {"type": "path", "required": True},
            "manifest": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "absent": {"type": "list", "elements": "str", "default": []},
            "metadata": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    archive = Path(module.params["archive"])
    target = Path(module.params["manifest"])
    if not archive.is_file():
        module.fail_json(msg=f"snapshot archive {archive} does not exist")

    if target.is_file():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except ValueError:
            existing = {}
        if existing.get("archive", {}).get("sha256") == file_sha256(archive):
            module.exit_json(changed=False, **_result(existing))

    try:
        manifest = build_manifest(
            archive,
            list(module.params["paths"]),
            list(module.params["absent"]),
            dict(module.params["metadata"]),
        )
    except (OSError, EOFError, tarfile.TarError) as exc:
        module.fail_json(msg=f"cannot read snapshot archive {archive}: {exc}")
    if not module.check_mode:
        write_atomically(target, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    module.exit_json(changed=True, **_result(manifest))


if __name__ == "__main__":
    main()
