# ruff: noqa: INP001
"""Read the state of one managed host for a state manifest, changing nothing.

The state_manifest role feeds this file to the host's python on standard input (`python3 -
SECTION ...`) and runs one section per task, so that a section costs one task however many files
or tables it covers. Each section prints one JSON object whose keys are manifest sections:

- `tree ROOT DIR... [--lock PATH]...`: every file below ROOT/DIR (sha256, mode, owner, group), the
  git state of the checkout at ROOT and the content of each lock record (a file, or every file
  below a directory);
- `registry --db NAME -- CLIENT...`: CHECKSUM TABLE ... EXTENDED and the row count of every base
  table of NAME, through the MariaDB client command CLIENT...;
- `units UNIT...`: what `systemctl is-enabled` and `systemctl is-active` say of each unit;
- `caches [--count-dir DIR] [--redis-pattern PATTERN -- REDIS-CLI...]`: Redis' DBSIZE and how many
  keys match PATTERN, and how many files DIR holds.

A failure is written to standard error and exits non-zero, so that the task fails with it.
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

# Database and table names are spliced into SQL; only names that need no escaping are accepted.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_$]+$")
_CHUNK = 1 << 20


class ProbeError(Exception):
    """The state could not be read; the message says what and why."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        msg = f"{argv[0]}: command not found"
        raise ProbeError(msg) from None


def _checked(argv: list[str], what: str) -> str:
    done = _run(argv)
    if done.returncode != 0:
        msg = f"{what} failed (rc {done.returncode}): {done.stderr.strip()}"
        raise ProbeError(msg)
    return done.stdout


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    info = path.lstat()
    entry: dict[str, Any] = {
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "owner": _owner(info.st_uid),
        "group": _group(info.st_gid),
    }
    # A link is recorded as where it points: following it could leave the checkout.
    if stat.S_ISLNK(info.st_mode):
        entry["link"] = str(path.readlink())
    elif stat.S_ISREG(info.st_mode):
        entry["sha256"] = _sha256(path)
    return entry


def _files_below(top: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(top):
        base = Path(current)
        # os.walk lists links to directories with the directories and does not enter them;
        # they are entries of the tree all the same.
        found.extend(base / name for name in dirs if (base / name).is_symlink())
        found.extend(base / name for name in files)
    return found


def _files(root: Path, dirs: list[str]) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for relative in dirs:
        for path in _files_below(root / relative):
            entries[path.relative_to(root).as_posix()] = _file_entry(path)
    return dict(sorted(entries.items()))


def _git(root: Path) -> dict[str, Any]:
    # Root may read a checkout another user owns; without this, git refuses it as dubious.
    base = ["git", "-c", f"safe.directory={root}", "-C", str(root)]
    heads = _run([*base, "rev-parse", "HEAD", "HEAD^{tree}"])
    if heads.returncode != 0:
        lines = heads.stderr.strip().splitlines() or [f"rc {heads.returncode}"]
        return {"error": lines[-1]}
    head, tree = heads.stdout.split()[:2]
    # Without --no-optional-locks, git status refreshes the index: a write on the host.
    status = _checked(
        ["git", "--no-optional-locks", *base[1:], "status", "--porcelain"], "git status"
    )
    return {"head": head, "tree": tree, "clean": status == ""}


def _read_record(path: Path) -> Any:  # noqa: ANN401 - a record is any JSON value or text
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _locks(paths: list[str]) -> dict[str, Any]:
    records: dict[str, Any] = {}
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for member in _files_below(path):
                records[str(member)] = _read_record(member)
        elif path.exists():
            records[str(path)] = _read_record(path)
    return dict(sorted(records.items()))


def _tree(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="state_probe tree")
    parser.add_argument("root", type=Path)
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--lock", action="append", default=[])
    args = parser.parse_args(argv)
    return {
        "files": _files(args.root, args.dirs),
        "git": _git(args.root),
        "locks": _locks(args.lock),
    }


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Options before `--`, and the client command after it."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def _sql(client: list[str], query: str) -> list[list[str]]:
    out = _checked([*client, "-N", "-B", "-e", query], client[0])
    return [line.split("\t") for line in out.splitlines() if line]


def _registry(argv: list[str]) -> dict[str, Any]:
    options, client = _split(argv)
    parser = argparse.ArgumentParser(prog="state_probe registry")
    parser.add_argument("--db", required=True)
    db = parser.parse_args(options).db
    if not client:
        msg = "no client command after --"
        raise ProbeError(msg)
    if not _SAFE_NAME.match(db):
        msg = f"database name the queries cannot quote: {db}"
        raise ProbeError(msg)
    tables = [
        row[0]
        for row in _sql(
            client,
            # The name passed _SAFE_NAME above: nothing in it can end the quoted literal.
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "  # noqa: S608
            f"'{db}' AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
    ]
    unsafe = [name for name in tables if not _SAFE_NAME.match(name)]
    if unsafe:
        msg = f"names the checksum query cannot quote: {', '.join(unsafe)}"
        raise ProbeError(msg)
    if not tables:
        return {"registry": {}}
    qualified = ", ".join(f"`{db}`.`{name}`" for name in tables)
    sums = {
        row[0].split(".", 1)[-1]: row[-1]
        for row in _sql(client, f"CHECKSUM TABLE {qualified} EXTENDED")
    }
    counts = {
        row[0]: int(row[1])
        for row in _sql(
            client,
            " UNION ALL ".join(
                f"SELECT '{name}', COUNT(*) FROM `{db}`.`{name}`"  # noqa: S608 - names checked
                for name in tables
            ),
        )
    }
    return {
        "registry": {
            name: {
                "checksum": int(sums[name]) if sums.get(name, "").isdigit() else None,
                "rows": counts.get(name),
            }
            for name in tables
        }
    }


def _units(argv: list[str]) -> dict[str, Any]:
    units: dict[str, Any] = {}
    for unit in argv:
        # Both commands exit non-zero for a unit that is disabled or stopped: the answer is
        # what they print, not how they exit.
        enabled = _run(["systemctl", "is-enabled", unit]).stdout.strip()
        active = _run(["systemctl", "is-active", unit]).stdout.strip()
        units[unit] = {"enabled": enabled or "not-found", "active": active or "unknown"}
    return {"units": units}


def _count_files(top: Path) -> int | None:
    if not top.is_dir():
        return None
    return sum(len(files) for _current, _dirs, files in os.walk(top))


def _redis(client: list[str], pattern: str) -> dict[str, Any]:
    size = _checked([*client, "--raw", "DBSIZE"], "redis-cli DBSIZE").strip()
    if not size.isdigit():
        msg = f"redis-cli DBSIZE answered {size!r}"
        raise ProbeError(msg)
    # SCAN, never KEYS: KEYS blocks the server while it walks every key.
    keys = _checked([*client, "--scan", "--pattern", pattern], "redis-cli --scan")
    return {"dbsize": int(size), "pattern": pattern, "matching": len(keys.splitlines())}


def _caches(argv: list[str]) -> dict[str, Any]:
    options, client = _split(argv)
    parser = argparse.ArgumentParser(prog="state_probe caches")
    parser.add_argument("--count-dir", type=Path)
    parser.add_argument("--redis-pattern")
    args = parser.parse_args(options)
    caches: dict[str, Any] = {}
    if args.redis_pattern is not None:
        caches["redis"] = _redis(client or ["redis-cli"], args.redis_pattern)
    if args.count_dir is not None:
        caches["ci_cache"] = {"path": str(args.count_dir), "files": _count_files(args.count_dir)}
    return {"caches": caches}


SECTIONS = {"tree": _tree, "registry": _registry, "units": _units, "caches": _caches}


def main(argv: list[str]) -> int:
    """Print the state of the section argv[0] asks for; return the exit code."""
    if not argv or argv[0] not in SECTIONS:
        sys.stderr.write(f"usage: state_probe SECTION ..., SECTION one of {', '.join(SECTIONS)}\n")
        return 2
    try:
        state = SECTIONS[argv[0]](argv[1:])
    except (ProbeError, OSError) as error:
        sys.stderr.write(f"state_probe {argv[0]}: {error}\n")
        return 1
    sys.stdout.write(json.dumps(state, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
