"""What a run was made of: code, inventory and manifest fingerprints, minus any secret."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mwctl.project import Project

# Extra variables whose names match this carry credentials: their values never reach
# run.json or a report.
SECRET_KEY = re.compile(r"password|passwd|token|secret", re.IGNORECASE)
REDACTED = "<redacted>"


def _git(project: Project, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project.root, capture_output=True, text=True, check=False
    ).stdout.strip()


def code_revision(project: Project) -> str:
    """The checkout's commit, marked `-dirty` when tracked files differ from it."""
    commit = _git(project, "rev-parse", "HEAD") or "unknown"
    return commit + (
        "-dirty" if _git(project, "status", "--porcelain", "--untracked-files=no") else ""
    )


def worktree_sha256(project: Project) -> str | None:
    """sha256 of the uncommitted changes to tracked files; None for a clean checkout.

    Two `-dirty` revisions are the same code only if their changes are the same too.
    """
    diff = _git(project, "diff", "HEAD", "--no-color", "--no-ext-diff")
    return hashlib.sha256(diff.encode("utf-8")).hexdigest() if diff else None


def file_sha256(path: Path) -> str | None:
    """sha256 of a file, or None when it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _files(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file())


def inventory_sha256(inventory: Path) -> str | None:
    """sha256 over every file of the inventory, names and contents.

    A directory inventory is every file below it. A file inventory is the file plus the
    group_vars and host_vars beside it, which ansible loads with it.
    """
    if not inventory.exists():
        return None
    base = inventory if inventory.is_dir() else inventory.parent
    paths = (
        [inventory] if inventory.is_dir() else [inventory, base / "group_vars", base / "host_vars"]
    )
    digest = hashlib.sha256()
    for path in paths:
        for file in _files(path):
            digest.update(str(file.relative_to(base)).encode("utf-8") + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def redact(extravars: Mapping[str, Any]) -> dict[str, Any]:
    """`extravars` with the value of every secret-named key replaced, at any depth."""

    def clean(value: Any) -> Any:  # noqa: ANN401 - extra variables hold any YAML value
        if isinstance(value, Mapping):
            return {
                str(k): REDACTED if SECRET_KEY.search(str(k)) else clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    cleaned: dict[str, Any] = clean(extravars)
    return cleaned


def secret_values(extravars: Mapping[str, Any]) -> list[str]:
    """The string values of secret-named keys, to scrub from messages the playbooks print."""
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:  # noqa: ANN401, FBT001 - any YAML value
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, secret or bool(SECRET_KEY.search(str(k))))
        elif isinstance(value, list):
            for v in value:
                walk(v, secret)
        elif secret and value not in (None, "") and not isinstance(value, bool):
            found.append(str(value))

    walk(extravars, secret=False)
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value in it replaced."""
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text
