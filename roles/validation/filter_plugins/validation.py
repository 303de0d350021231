# ruff: noqa: INP001
"""Filters of the validation role: the comparisons that are lists of items, not one-liners."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HTTP_OK = 200
MS_PER_SECOND = 1000
PERCENT = 100


def _basename(name: object) -> str:
    return str(name).rsplit("/", 1)[-1]


def _old_only(batch: Iterable[Mapping[str, Any]]) -> set[str]:
    entries = list(batch)
    new = {_basename(entry["to"]) for entry in entries}
    return {_basename(entry["from"]) for entry in entries} - new


def _label(index: int, entry: Mapping[str, Any]) -> str:
    return f"renames[{index}] (protocol {entry['protocol']}, {entry['from']} -> {entry['to']})"


def _hosts(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _ms(seconds: float) -> str:
    return f"{seconds * MS_PER_SECOND:.1f} ms"


def validation_located(entries: Iterable[Mapping[str, Any]], what: str) -> list[str]:
    """Describe scan hits ({name, file, line}) as "NAME (FILE:LINE): WHAT" lines."""
    return [f"{entry['name']} ({entry['file']}:{entry['line']}): {what}" for entry in entries]


def validation_script_failures(scripts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Describe the scripts that failed in the suite as "NAME: rc N (OUTPUT)" lines."""
    lines = []
    for script in scripts:
        if script.get("rc") == 0:
            continue
        output = " ".join(str(script.get("output", "")).split())
        lines.append(
            f"{script['name']}: rc {script.get('rc')}" + (f" ({output})" if output else "")
        )
    return lines


def _row_problems(
    rows: Sequence[Mapping[str, Any]],
    holders: Mapping[str, set[str]],
    all_hosts: set[str],
) -> list[str]:
    """Rows whose name is not their path's basename, or whose path some host lacks."""
    problems = [
        f"row id {row['id']}: name {row['name']} but path {row['path']}"
        for row in rows
        if _basename(row["path"]) != row["name"]
    ]
    for row in rows:
        lacking = all_hosts - holders.get(str(row["path"]), set())
        if lacking:
            problems.append(
                f"row id {row['id']} ({row['name']}, protocol {row['protocol']}): "
                f"{row['path']} does not exist on {_hosts(lacking)}"
            )
    return problems


def _file_problems(
    holders: Mapping[str, set[str]],
    by_path: Mapping[str, list[Mapping[str, Any]]],
) -> list[str]:
    """Script files registered never, or more than once."""
    problems = []
    for path in sorted(holders):
        registered = by_path.get(path, [])
        if not registered:
            problems.append(f"{path} (on {_hosts(holders[path])}) is not registered")
        elif len(registered) > 1:
            ids = ", ".join(str(row["id"]) for row in registered)
            problems.append(f"{path} is registered {len(registered)} times (row ids {ids})")
    return problems


def _batch_problems(
    batch: Sequence[Mapping[str, Any]],
    by_name: Mapping[str, list[Mapping[str, Any]]],
) -> list[str]:
    """Batch entries whose new name is not registered with the entry's path and protocol."""
    problems = []
    for index, entry in enumerate(batch):
        found = by_name.get(_basename(entry["to"]), [])
        if not found:
            problems.append(f"{_label(index, entry)}: no row is named {entry['to']}")
            continue
        row = found[0]
        if row["path"] != entry["dest"]:
            problems.append(
                f"{_label(index, entry)}: registered path {row['path']}, not {entry['dest']}"
            )
        if int(row["protocol"]) != int(entry["protocol"]):
            problems.append(f"{_label(index, entry)}: registered for protocol {row['protocol']}")
    return problems


def _hook_problems(
    hooks: Sequence[Mapping[str, Any]],
    by_name: Mapping[str, list[Mapping[str, Any]]],
    old_only: set[str],
) -> list[str]:
    """Hook rows naming an old name or a script that is not registered."""
    problems = []
    for hook in hooks:
        name = str(hook["script_name"])
        where = f"hook row id {hook['id']} (protocol {hook['protocol']}, {hook['hook']})"
        if name in old_only:
            problems.append(f"{where} still names the old name {name}")
        elif name not in by_name:
            problems.append(f"{where} names {name}, which is not registered")
    return problems


def validation_registry_problems(
    rows: Sequence[Mapping[str, Any]],
    hooks: Sequence[Mapping[str, Any]],
    host_scripts: Mapping[str, Sequence[Mapping[str, Any]]],
    batch: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Compare the registry with the scripts on the protocol hosts and with the batch.

    Args:
        rows: the scripts table ({id, protocol, name, path}).
        hooks: the protocol_hooks table ({id, protocol, hook, script_name}).
        host_scripts: each protocol host's scripts ({name, path}), by host.
        batch: the rename batch ({protocol, from, to, src, dest}).

    Returns:
        One line per problem; empty when the registry and the hosts agree.
    """
    by_path: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_name: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_path[str(row["path"])].append(row)
        by_name[str(row["name"])].append(row)
    holders: dict[str, set[str]] = defaultdict(set)
    for host, scripts in host_scripts.items():
        for script in scripts:
            holders[str(script["path"])].add(host)
    old_only = _old_only(batch)
    return (
        _row_problems(rows, holders, set(host_scripts))
        + _file_problems(holders, by_path)
        + _batch_problems(batch, by_name)
        + [
            f"row id {row['id']} still carries the old name {row['name']}"
            for name in sorted(old_only)
            for row in by_name.get(name, [])
        ]
        + _hook_problems(hooks, by_name, old_only)
    )


def validation_perf_compare(
    scripts: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any],
    tolerance_pct: float,
    floor_ms: float,
) -> dict[str, Any]:
    """Compare the suite's run time per script with the baseline's, by key.

    A script is slower when its run time (its fastest run) exceeds the baseline's by more than
    the larger of ``tolerance_pct`` percent and ``floor_ms`` milliseconds. A script whose content
    differs from the one measured for the baseline cannot be compared. The sum over the compared
    scripts is reported, not judged: the timing noise of every script adds up in it, so one
    floor for the sum fails on a busy host, and a floor per script makes it redundant.

    Returns:
        compared (one row per compared script), items (one line per failure: slower scripts,
        incomparable scripts), unmatched (current scripts without a baseline), missing
        (baseline keys without a current script) and total (before and now, in seconds).
    """
    recorded: Mapping[str, Mapping[str, Any]] = baseline.get("scripts", {})
    floor = float(floor_ms) / MS_PER_SECOND
    rate = float(tolerance_pct) / PERCENT

    def allowed(before: float) -> float:
        return max(before * rate, floor)

    compared: list[dict[str, Any]] = []
    items: list[str] = []
    unmatched: list[str] = []
    for script in scripts:
        base = recorded.get(str(script["key"]))
        if base is None:
            unmatched.append(str(script["name"]))
            continue
        if base.get("sha256") and script.get("sha256") and base["sha256"] != script["sha256"]:
            items.append(
                f"{script['name']}: content differs from {base.get('name', script['key'])} as "
                "measured for the baseline, not comparable (baseline taken on another tree?)"
            )
            continue
        before, now = float(base["seconds"]), float(script["seconds"])
        row = {
            "name": script["name"],
            "key": script["key"],
            "before": before,
            "now": now,
            "delta": round(now - before, 6),
            "allowed": round(allowed(before), 6),
        }
        row["ok"] = row["delta"] <= row["allowed"]
        compared.append(row)
        if not row["ok"]:
            items.append(
                f"{script['name']}: {_ms(before)} -> {_ms(now)} "
                f"(+{_ms(row['delta'])}, allowed +{_ms(row['allowed'])})"
            )
    total = {
        "before": round(sum(row["before"] for row in compared), 6),
        "now": round(sum(row["now"] for row in compared), 6),
    }
    seen = {str(script["key"]) for script in scripts}
    return {
        "compared": compared,
        "items": items,
        "unmatched": unmatched,
        "missing": sorted(set(recorded) - seen),
        "total": total,
    }


def validation_ci_problems(
    jobs: Sequence[Mapping[str, Any]],
    batch: Sequence[Mapping[str, Any]],
    commit: str = "",
) -> list[str]:
    """Check each CI job's result: passed, ran every renamed script by its new name, no old one.

    Args:
        jobs: the jobs as mw_validation_ci returns them.
        batch: the rename batch.
        commit: the commit the protocol host's checkout is at; empty skips that comparison.

    Returns:
        One line per problem.
    """
    old_only = _old_only(batch)
    expected: dict[int, list[str]] = defaultdict(list)
    for entry in batch:
        expected[int(entry["protocol"])].append(_basename(entry["to"]))
    problems: list[str] = []
    for job in jobs:
        result: Mapping[str, Any] = job.get("result") or {}
        where = f"protocol {job['protocol']}: job {result.get('id', '?')}"
        scripts = result.get("scripts") or []
        if job.get("status") != "pass":
            failing = [f"{s.get('name')} (rc {s.get('rc')})" for s in scripts if s.get("rc") != 0]
            reason = "; ".join(
                part
                for part in (
                    str(result.get("error", "")),
                    "failing scripts: " + ", ".join(failing) if failing else "",
                    str(job.get("output", "")),
                )
                if part
            )
            problems.append(
                f"{where} {job.get('status')} (rc {job.get('rc')}){': ' + reason if reason else ''}"
            )
        names = {str(script.get("name")) for script in scripts}
        if scripts:
            problems += [
                f"{where} did not run {name}"
                for name in expected.get(int(job["protocol"]), [])
                if name not in names
            ]
        problems += [f"{where} ran the old name {name}" for name in sorted(names & old_only)]
        ran = result.get("commit")
        if commit and ran and ran != commit:
            problems.append(
                f"{where} ran commit {ran}, the protocol host's checkout is at {commit}"
            )
    return problems


def validation_service_problems(
    answers: Sequence[Mapping[str, Any]],
    batch: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Check the registry service's answer for each protocol against the batch.

    Args:
        answers: the results of ansible.builtin.uri asking ``/scripts?protocol=N``, one per
            protocol (the protocol is the loop item).
        batch: the rename batch.

    Returns:
        One line per problem: no answer, not a list, an empty list, a renamed script missing
        or with another path, an old-only name still served.
    """
    old_only = _old_only(batch)
    problems: list[str] = []
    for answer in answers:
        protocol = int(answer["item"])
        where = f"/scripts?protocol={protocol}"
        body = answer.get("json")
        if answer.get("status") != HTTP_OK or not isinstance(body, list):
            problems.append(f"{where} answered {answer.get('status')}: {answer.get('msg', '')}")
            continue
        if not body:
            problems.append(f"{where} lists no script")
        served = {str(entry.get("name")): entry for entry in body if isinstance(entry, Mapping)}
        for index, entry in enumerate(batch):
            if int(entry["protocol"]) != protocol:
                continue
            found = served.get(_basename(entry["to"]))
            if found is None:
                problems.append(f"{where} does not list {entry['to']} ({_label(index, entry)})")
            elif found.get("path") != entry["dest"]:
                problems.append(f"{where} gives {entry['to']} the path {found.get('path')}")
        problems += [
            f"{where} still lists the old name {name}" for name in sorted(old_only & set(served))
        ]
    return problems


def validation_table(findings: Sequence[Mapping[str, Any]], shown_items: int = 10) -> list[str]:
    """Lay the findings out as a fixed-width table, a failure's items on the lines below it."""
    rows = [("CHECK", "HOST", "RESULT", "DETAIL")]
    details: list[list[str]] = [[]]
    for finding in findings:
        result = "NOT RUN" if finding.get("skipped") else "PASS" if finding["ok"] else "FAIL"
        rows.append(
            (str(finding["check"]), str(finding["host"]), result, str(finding.get("detail", "")))
        )
        items = [] if finding["ok"] else [str(item) for item in finding.get("items", [])]
        more = len(items) - shown_items
        details.append(
            [f"- {item}" for item in items[:shown_items]]
            + ([f"- ... and {more} more"] if more > 0 else [])
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    indent = " " * (sum(widths) + 6)
    lines = []
    for row, below in zip(rows, details, strict=True):
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
        )
        lines += [indent + line for line in below]
    return lines


class FilterModule:
    """The validation role's filters."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "validation_located": validation_located,
            "validation_script_failures": validation_script_failures,
            "validation_registry_problems": validation_registry_problems,
            "validation_perf_compare": validation_perf_compare,
            "validation_ci_problems": validation_ci_problems,
            "validation_service_problems": validation_service_problems,
            "validation_table": validation_table,
        }
