"""Capture the state the window touches, and compare two captures.

A state manifest is the JSON file `playbooks/state.yml` writes: per host, the files of the
checkout with their sha256, mode, owner and group, the checkout's git state and lock records,
the registry's table checksums and row counts, the CI units' states, and the caches. Two
manifests taken before a window and after its rollback must be equal but for the caches, which
the window clears on purpose, and the time they were taken.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mwctl.errors import PlaybookFailedError, UsageError
from mwctl.playbook import run_playbook
from mwctl.project import Project

PLAYBOOK: Final = "playbooks/state.yml"
FORMAT: Final = 1
# Left out of the comparison: the window clears the caches on purpose, and two captures are
# never taken at the same time.
IGNORED_SECTIONS: Final = frozenset({"caches"})
_MANIFEST_KEYS: Final = frozenset({"format", "taken_at", "hosts"})
# Hex digests are shortened in the rendering: their first characters tell two apart.
_SHOWN_HEX: Final = 12
_LONG_HEX: Final = 16
_SHOWN_JSON: Final = 60


class StateFileError(UsageError):
    """A state manifest cannot be read, or is not a manifest mwctl knows."""


class StateCaptureError(PlaybookFailedError):
    """The capture playbook failed: no manifest was written."""


class _Missing:
    """Stands for an entry that one of two manifests does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Difference:
    """One entry that differs between two manifests.

    Attributes:
        host: The host; empty for an entry of the manifest itself (its inventory).
        section: The host's section (`files`, `git`, `locks`, `registry`, `units`), or `host`
            when the host itself is missing or could not be reached in one of them.
        key: The entry within the section (a file's path, a table, a unit); empty for a
            section compared whole.
        before: The first manifest's value, or MISSING. For two dicts, only the fields that
            differ (a field one side lacks is MISSING).
        after: The second manifest's value, likewise.
    """

    host: str
    section: str
    key: str
    before: Any
    after: Any


def capture_state(
    project: Project,
    inventory: Path,
    out: Path,
    *,
    quiet: bool = True,
    private_dir: Path | None = None,
) -> Path:
    """Run the capture playbook on `inventory` and write its manifest at `out`.

    The playbook writes into a file beside `out` first; `out` is replaced only by a complete,
    valid manifest, so that a failed capture never leaves a file that looks like a good one.

    Args:
        project: The checkout whose playbooks/state.yml runs.
        inventory: The inventory whose hosts are captured.
        out: Where the manifest goes; its directory is created when missing.
        quiet: Hide the playbook's output.
        private_dir: Where ansible-runner keeps the playbook's artifacts; by default
            `state-runner` in the runs directory.

    Returns:
        The manifest's absolute path.

    Raises:
        StateFileError: `out` is a directory, or the playbook wrote no valid manifest.
        StateCaptureError: the playbook failed.
    """
    target = out.expanduser().resolve()
    if target.is_dir():
        msg = f"--out {str(target)!r} is a directory; name the manifest file to write"
        raise StateFileError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(3)}")
    try:
        result = run_playbook(
            project,
            PLAYBOOK,
            private_dir=private_dir or project.runs_dir / "state-runner",
            inventory=inventory,
            extravars={"state_manifest_out": str(partial)},
            check=False,
            quiet=quiet,
        )
        if not result.succeeded:
            failed = "; ".join(
                f"{item.host}: {item.task}: {item.msg}" for item in result.failed_items[:5]
            )
            msg = (
                f"capturing the state with {PLAYBOOK} failed ({result.status}, rc {result.rc})"
                f"{': ' + failed if failed else ''}; no manifest written to {target}. "
                f"The playbook's output is in {result.artifact_dir}"
            )
            raise StateCaptureError(msg)
        load_state(partial)
        partial.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


def load_state(path: Path) -> dict[str, Any]:
    """Read a state manifest and check it is one this version knows.

    Raises:
        StateFileError: the file cannot be read, is not JSON, or is not a manifest of FORMAT.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        msg = f"cannot read the state manifest {path}: {error.strerror or error}"
        raise StateFileError(msg) from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        msg = f"{path} is not a state manifest: not JSON ({error})"
        raise StateFileError(msg) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        msg = (
            f"{path} is not a state manifest of format {FORMAT} (format: {found!r}); "
            "capture one with `mwctl state --out FILE`"
        )
        raise StateFileError(msg)
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not all(isinstance(h, dict) for h in hosts.values()):
        msg = f"{path} is not a state manifest: 'hosts' must map each host to its state"
        raise StateFileError(msg)
    return data


def _host_status(state: Mapping[str, Any] | None) -> Any:  # noqa: ANN401 - str or MISSING
    if state is None:
        return MISSING
    return "unreachable" if state.get("unreachable") is True else "captured"


def _item(host: str, section: str, key: str, before: Any, after: Any) -> Difference | None:  # noqa: ANN401
    if before == after:
        return None
    if isinstance(before, dict) and isinstance(after, dict):
        fields = sorted(
            name
            for name in set(before) | set(after)
            if before.get(name, MISSING) != after.get(name, MISSING)
        )
        return Difference(
            host,
            section,
            key,
            {name: before.get(name, MISSING) for name in fields},
            {name: after.get(name, MISSING) for name in fields},
        )
    return Difference(host, section, key, before, after)


def _section(host: str, section: str, before: Any, after: Any) -> list[Difference]:  # noqa: ANN401
    # A section one manifest lacks compares as empty: `{}` and no section say the same.
    before = {} if before is MISSING else before
    after = {} if after is MISSING else after
    if not (isinstance(before, dict) and isinstance(after, dict)):
        found = _item(host, section, "", before, after)
        return [found] if found else []
    found_all = (
        _item(host, section, key, before.get(key, MISSING), after.get(key, MISSING))
        for key in sorted(set(before) | set(after))
    )
    return [found for found in found_all if found]


def _host(
    host: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[Difference]:
    status = (_host_status(before), _host_status(after))
    # A host that could not be reached cannot be shown unchanged, even when it was not reached
    # either time: it is always reported.
    if status != ("captured", "captured") or before is None or after is None:
        return [Difference(host, "host", "", *status)]
    differences: list[Difference] = []
    for section in sorted((set(before) | set(after)) - IGNORED_SECTIONS):
        differences += _section(
            host, section, before.get(section, MISSING), after.get(section, MISSING)
        )
    return differences


def diff_states(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Difference]:
    """Every entry that differs between two manifests, caches and capture times left out.

    Args:
        before: The earlier manifest, as load_state returns it.
        after: The later manifest.

    Returns:
        The differences, by host, section and key; empty when the states are equal.
    """
    differences = [
        Difference("", key, "", before.get(key, MISSING), after.get(key, MISSING))
        for key in sorted((set(before) | set(after)) - _MANIFEST_KEYS)
        if before.get(key, MISSING) != after.get(key, MISSING)
    ]
    hosts_before, hosts_after = before.get("hosts", {}), after.get("hosts", {})
    for host in sorted(set(hosts_before) | set(hosts_after)):
        differences += _host(host, hosts_before.get(host), hosts_after.get(host))
    return differences


def _shown(value: Any, *, whole: bool) -> str:  # noqa: ANN401 - any JSON value
    if value is MISSING:
        return "missing"
    if isinstance(value, str):
        is_hex = len(value) >= _LONG_HEX and all(c in "0123456789abcdef" for c in value)
        return f"{value[:_SHOWN_HEX]}.." if is_hex else value or '""'
    if whole and isinstance(value, dict | list):
        return "present"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN_JSON else f"{text[:_SHOWN_JSON]}.."


def render_difference(difference: Difference) -> str:
    """One difference as a line: `HOST SECTION KEY: [FIELD] BEFORE -> AFTER, ...`."""
    where = " ".join(
        part for part in (difference.host or "manifest", difference.section, difference.key) if part
    )
    before, after = difference.before, difference.after
    if isinstance(before, dict) and isinstance(after, dict) and set(before) == set(after):
        change = ", ".join(
            f"{name} {_shown(before[name], whole=False)} -> {_shown(after[name], whole=False)}"
            for name in sorted(before)
        )
    else:
        # Against a missing entry, that there is one says it all; otherwise show both values.
        whole = before is MISSING or after is MISSING
        change = f"{_shown(before, whole=whole)} -> {_shown(after, whole=whole)}"
    return f"{where}: {change}"


def render_differences(differences: Iterable[Difference]) -> str:
    """The differences, one per line; `no differences` when there is none."""
    lines = [render_difference(difference) for difference in differences]
    return "\n".join(lines) if lines else "no differences"


def summarize(state: Mapping[str, Any]) -> str:
    """A one-line summary of a manifest: hosts, unreachable hosts, files."""
    hosts: Sequence[Mapping[str, Any]] = list(state.get("hosts", {}).values())
    unreachable = sum(1 for host in hosts if host.get("unreachable") is True)
    files = sum(len(host.get("files", {})) for host in hosts)
    taken = state.get("taken_at", "?")
    return f"{len(hosts)} hosts ({unreachable} unreachable), {files} files, taken {taken}"
