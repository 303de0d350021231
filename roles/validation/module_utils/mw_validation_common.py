# ruff: noqa: INP001
"""Helpers shared by the validation role's modules: which files of a checkout are scripts."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Sequence
from typing import Any

# The characters of a script name, as the rename module counts them: a name is a whole word
# when it is neither preceded nor followed by one of them.
NAME_CHARS = "A-Za-z0-9._+-"
# Names an interrupted rename batch leaves behind (see mw_batch_rename); never real scripts.
RENAME_TEMP_PREFIX = ".mwtmp-"
_CHUNK = 1024 * 1024


def sha256_of(path: str) -> str:
    """Return the SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:  # noqa: PTH123 - plain os paths throughout
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_scripts(
    root: str,
    scripts_dir: str,
    patterns: Sequence[str],
    *,
    checksums: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """List the scripts directly inside ``root/scripts_dir``, sorted by name.

    Hidden files are not scripts; the temporary names of an interrupted rename batch are
    returned apart, as leftovers, because they mean the batch did not finish.

    Returns:
        The scripts ({name, path, executable[, sha256]}, path relative to ``root``) and the
        leftover temporary names.

    Raises:
        OSError: if the directory cannot be read.
    """
    directory = os.path.join(root, scripts_dir)  # noqa: PTH118
    scripts: list[dict[str, Any]] = []
    leftovers: list[str] = []
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda item: item.name):
            if entry.name.startswith(RENAME_TEMP_PREFIX):
                leftovers.append(entry.name)
                continue
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in patterns):
                continue
            record: dict[str, Any] = {
                "name": entry.name,
                "path": f"{scripts_dir.strip('/')}/{entry.name}",
                "executable": os.access(entry.path, os.X_OK),
            }
            if checksums:
                record["sha256"] = sha256_of(entry.path)
            scripts.append(record)
    return scripts, leftovers
