"""Turn the rename manifest into the batch the hosts apply, or explain why it cannot be."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# One path segment of a script name: what hooks, shells and CI tools all handle safely.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_KEYS = ("protocol", "from", "to")


def _problems_of(index: int, entry: object) -> list[str]:
    where = f"manifest entry {index}"
    if not isinstance(entry, Mapping):
        return [f"{where} is {type(entry).__name__} {entry!r}, expected a mapping {_KEYS}"]
    problems = [f"{where} lacks '{key}'" for key in _KEYS if key not in entry]
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        problems.append(f"{where} has unknown keys {unknown}; allowed are {list(_KEYS)}")
    protocol = entry.get("protocol")
    if "protocol" in entry and (isinstance(protocol, bool) or not isinstance(protocol, int)):
        problems.append(f"{where}: protocol {protocol!r} is not a whole number")
    for key in ("from", "to"):
        name = entry.get(key)
        if key not in entry:
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: '{key}' {name!r} is not a non-empty name")
        elif name.startswith("/") or any(
            not _SEGMENT.match(segment) for segment in name.split("/")
        ):
            problems.append(
                f"{where}: '{key}' {name!r} is not a valid relative name (segments of letters, "
                "digits, '.', '_', '+', '-'; no spaces, no '..', no absolute path)"
            )
    if not problems and entry["from"] == entry["to"]:
        problems.append(f"{where} renames {entry['from']!r} to itself")
    return problems


def mw_manifest_batch(
    manifest: object, scripts_dir: str, protocols: Iterable[int] | None = None
) -> list[dict[str, Any]]:
    """Validate the manifest's shape and return its entries as paths under the checkout.

    Only the shape is checked here, on the control node; whether each source exists and
    no target collides is for the rename module to decide on each host.

    Args:
        manifest: the value of mw_rename_manifest.
        scripts_dir: the scripts directory relative to the checkout (mw_scripts_dir).
        protocols: limit the batch to these protocols; None or empty keeps every entry.

    Returns:
        One mapping per entry: protocol, from, to, src and dest (paths relative to the checkout).

    Raises:
        AnsibleFilterError: the manifest is malformed; the message lists every problem.
    """
    if not isinstance(manifest, list):
        msg = (
            f"mw_rename_manifest must be a list of {{protocol, from, to}} entries, "
            f"got {type(manifest).__name__}"
        )
        raise AnsibleFilterError(msg)
    problems = [problem for i, entry in enumerate(manifest) for problem in _problems_of(i, entry)]
    if not problems:
        problems += _duplicates(manifest)
    if problems:
        raise AnsibleFilterError("invalid rename manifest: " + "; ".join(problems))
    wanted = {int(p) for p in protocols or ()} or None
    base = scripts_dir.strip("/")
    return [
        {
            "protocol": entry["protocol"],
            "from": entry["from"],
            "to": entry["to"],
            "src": f"{base}/{entry['from']}",
            "dest": f"{base}/{entry['to']}",
        }
        for entry in manifest
        if wanted is None or entry["protocol"] in wanted
    ]


def _duplicates(manifest: list[Mapping[str, Any]]) -> list[str]:
    problems = []
    for key, what in (("from", "source"), ("to", "target")):
        seen: dict[str, int] = {}
        for index, entry in enumerate(manifest):
            name = entry[key]
            if name in seen:
                problems.append(
                    f"manifest entries {seen[name]} and {index} share the {what} {name!r}"
                )
            seen.setdefault(name, index)
    return problems


class FilterModule:
    """The project's manifest filters."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {"mw_manifest_batch": mw_manifest_batch}
