#!/usr/bin/python
"""Compare a gzip-compressed tar archive with the live files it was taken from.

The comparison is plain Python (live_files, archive_files, compare) so that it can be imported
and tested without Ansible; main() is the thin AnsibleModule wrapper.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mw_archive_compare
short_description: Prove that a tar.gz archive holds exactly the live files, byte for byte
description:
  - Reads every member of O(archive) and every file below O(paths) under O(root), and compares
    them by relative path and SHA-256. Symlinks are compared by their target, directories by
    presence only.
  - Never changes anything; reports the differences so that the caller decides what they mean.
  - An archive that cannot be read to its end (truncated, corrupted gzip stream, not a tar) is
    reported with O(readable=false) and the reader's error rather than failing the task.
version_added: "1.0.0"
author:
  - Maintenance window project contributors
options:
  archive:
    description: Path of the gzip-compressed tar archive on the managed host.
    type: path
    required: true
  root:
    description: Directory the archive's member names are relative to.
    type: path
    required: true
  paths:
    description: Paths relative to O(root) whose files must all be in the archive.
    type: list
    elements: str
    required: true
  max_listed:
    description: How many names each difference list returns at most; the counts are always exact.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Compare the scripts tarball with the checkout
  mw_archive_compare:
    archive: /var/backups/maintenance-window/RUN/scripts_backup_20251109T020000Z.tar.gz
    root: /opt/project
    paths: [scripts/validation, .cursor/ai-driven-workflow]
  register: compared
"""

RETURN = r"""
readable:
  description: Whether the archive could be read to its end.
  type: bool
  returned: always
error:
  description: The reader's error when the archive is not readable, else an empty string.
  type: str
  returned: always
matches:
  description:
    - True when the archive is readable and holds exactly the live entries with equal contents.
  type: bool
  returned: always
live_count:
  description: Number of live entries (files, symlinks, directories) below the paths.
  type: int
  returned: always
member_count:
  description: Number of archive members below the paths.
  type: int
  returned: always
missing_count:
  description: Number of live entries the archive lacks.
  type: int
  returned: always
missing:
  description: Live entries the archive lacks (at most O(max_listed)).
  type: list
  elements: str
  returned: always
extra_count:
  description: Number of archive members with no live entry.
  type: int
  returned: always
extra:
  description: Archive members with no live entry (at most O(max_listed)).
  type: list
  elements: str
  returned: always
mismatched_count:
  description: Number of entries whose type, contents or link target differ.
  type: int
  returned: always
mismatched:
  description: Entries whose type, contents or link target differ (at most O(max_listed)).
  type: list
  elements: str
  returned: always
"""

_CHUNK = 1024 * 1024


@dataclass
class Comparison:
    """The differences between an archive and the live tree."""

    readable: bool = True
    error: str = ""
    live_count: int = 0
    member_count: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """Whether the archive holds exactly the live entries."""
        return self.readable and not (self.missing or self.extra or self.mismatched)


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + "/") for p in prefixes)


def live_files(root: Path, paths: list[str]) -> dict[str, str]:
    """Describe every entry below the paths as a comparable fingerprint.

    Args:
        root: The directory the paths are relative to.
        paths: The relative paths to walk.

    Returns:
        A map from relative path to ``dir``, ``link:<target>`` or ``file:<sha256>``.
    """
    found: dict[str, str] = {}
    for top in paths:
        start = root / top
        if not start.exists() and not start.is_symlink():
            continue
        entries = [start]
        if start.is_dir() and not start.is_symlink():
            entries += sorted(start.rglob("*"))
        for entry in entries:
            rel = entry.relative_to(root).as_posix()
            if entry.is_symlink():
                found[rel] = "link:" + str(entry.readlink())
            elif entry.is_dir():
                found[rel] = "dir"
            elif entry.is_file():
                with entry.open("rb") as stream:
                    found[rel] = "file:" + _digest(stream)
    return found


def archive_files(archive: Path, paths: list[str]) -> dict[str, str]:
    """Describe every archive member below the paths, reading the whole archive.

    Args:
        archive: The gzip-compressed tar archive.
        paths: The relative paths whose members are described.

    Returns:
        A map from member name to a fingerprint in the format of `live_files`.
    """
    prefixes = [_normalise(p) for p in paths]
    found: dict[str, str] = {}
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            name = _normalise(member.name)
            if not _inside(name, prefixes):
                continue
            if member.issym():
                found[name] = "link:" + member.linkname
            elif member.isdir():
                found[name] = "dir"
            elif member.isfile():
                stream = tar.extractfile(member)
                found[name] = "file:" + (_digest(stream) if stream else "")
            else:
                found[name] = "other:" + str(member.type)
    return found


def compare(archive: Path, root: Path, paths: list[str]) -> Comparison:
    """Compare the archive with the live tree.

    Args:
        archive: The gzip-compressed tar archive.
        root: The directory member names are relative to.
        paths: The relative paths that must be archived.

    Returns:
        The comparison; an unreadable archive gives ``readable=False`` and the error.
    """
    result = Comparison()
    live = live_files(root, paths)
    result.live_count = len(live)
    try:
        members = archive_files(archive, paths)
    except (OSError, EOFError, tarfile.TarError) as exc:
        result.readable = False
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.member_count = len(members)
    result.missing = sorted(set(live) - set(members))
    result.extra = sorted(set(members) - set(live))
    result.mismatched = sorted(n for n in set(live) & set(members) if live[n] != members[n])
    return result


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "archive": {"type": "path", "required": True},
            "root": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "max_listed": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    params: dict[str, Any] = module.params
    root = Path(params["root"])
    if not root.is_dir():
        module.fail_json(msg=f"root {root} is not a directory")
    result = compare(Path(params["archive"]), root, list(params["paths"]))
    limit = max(0, int(params["max_listed"]))
    module.exit_json(
        changed=False,
        readable=result.readable,
        error=result.error,
        matches=result.matches,
        live_count=result.live_count,
        member_count=result.member_count,
        missing_count=len(result.missing),
        missing=result.missing[:limit],
        extra_count=len(result.extra),
        extra=result.extra[:limit],
        mismatched_count=len(result.mismatched),
        mismatched=result.mismatched[:limit],
    )


if __name__ == "__main__":
    main()
