"""Reports of a recorded run."""

from __future__ import annotations

import time

from mwctl.window import RunRecord


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(stamp)) if stamp else "-"


def summary_table(record: RunRecord) -> str:
    """The per-phase table: status, times, and what changed on how many hosts."""
    lines = [
        "| phase | status | start (UTC) | duration | changed tasks | failed hosts |",
        "|---|---|---|---|---|---|",
    ]
    for phase in record.phases:
        changed = sum(stats.changed for stats in phase.hosts.values())
        failed = sorted(h for h, s in phase.hosts.items() if s.failed or s.unreachable)
        duration = f"{phase.duration:.1f}s" if phase.duration is not None else "-"
        lines.append(
            f"| {phase.title} | {phase.status} | {_clock(phase.started)} | {duration} | "
            f"{changed if phase.hosts else '-'} | {', '.join(failed) or '-'} |"
        )
    return "\n".join(lines)


def render_markdown(record: RunRecord) -> str:
    """The run's report as Markdown."""
    total = (record.finished or time.time()) - record.started
    missing = [p.title for p in record.phases if p.status == "not-implemented"]
    notes = (
        "\n\nNot carried out, because this checkout has no playbook for them yet: "
        + ", ".join(missing)
        + "."
        if missing
        else ""
    )
    return (
        f"# Maintenance window {record.mode}: {record.run_id}\n\n"
        f"- outcome: **{record.outcome}**\n"
        f"- inventory: `{record.inventory}`\n"
        f"- operator: {record.user}@{record.control_host}\n"
        f"- code revision: `{record.code_revision}`\n"
        f"- manifest sha256: `{record.manifest_sha256 or 'none'}`\n"
        f"- wall time: {total:.1f}s\n\n"
        f"{summary_table(record)}{notes}\n"
    )
