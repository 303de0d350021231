"""Reports of a recorded run: Markdown, self-contained HTML, JUnit XML and JSON."""

from __future__ import annotations

import html
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mwctl.project import Project
from mwctl.window import PRE_WINDOW_STATE, PhaseRecord, RunRecord, StateCheck, load_record

FORMATS = ("md", "html", "junit", "json")
_FILES = {
    "md": "report.md",
    "html": "report.html",
    "junit": "report.junit.xml",
    "json": "report.json",
}


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(stamp)) if stamp else "-"


def _day(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp)) if stamp else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f}s" if value is not None else "-"


@dataclass(frozen=True)
class Metric:
    """One of the plan's success metrics: met, not met, or not measured (None)."""

    name: str
    met: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        """`met`, `not met` or `not measured`."""
        return {True: "met", False: "not met", None: "not measured"}[self.met]


def _validation(run_dir: Path | None) -> dict[str, Any] | None:
    path = run_dir / "validation" / "validation.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _check_metric(name: str, check: str, decision: dict[str, Any] | None) -> Metric:
    if decision is None:
        return Metric(name, None, "no validation.json in the run directory")
    status = (decision.get("checks") or {}).get(check)
    failures = [f for f in decision.get("failures") or [] if f.get("check") == check]
    if status is None:
        return Metric(name, None, f"the {check} check did not run")
    items = sum(len(f.get("items") or []) for f in failures)
    detail = f"{check} check: {status}" + (f", {items} items failed" if items else "")
    return Metric(name, status == "pass" and not failures, detail)


def metrics(record: RunRecord, run_dir: Path | None = None) -> list[Metric]:
    """The plan's success metrics for this run, from run.json and validation.json."""
    latest = record.latest()
    bad = [f"{name}: {p.status}" for name, p in latest.items() if p.status != "successful"]
    phases = Metric(
        "all phases successful",
        bool(latest) and not bad,
        ", ".join(bad) or f"{len(latest)} phases successful",
    )
    decision = _validation(run_dir)
    finished = record.finished or time.time()
    if record.window:
        end = float(record.window["end_ts"])
        within = Metric(
            "completed within the window",
            finished <= end and record.outcome.startswith("succeeded"),
            f"finished {_day(finished)}, window closes {record.window['end']}",
        )
    elif record.budget_seconds:
        took = finished - record.started
        within = Metric(
            "completed within the window",
            took <= record.budget_seconds and record.outcome.startswith("succeeded"),
            f"no window given: took {took:.0f}s of the {record.budget_seconds:.0f}s budgeted",
        )
    else:
        within = Metric("completed within the window", None, "no window and no budget recorded")
    return [
        phases,
        _check_metric("zero broken references", "gates", decision),
        _check_metric("registry reflects mappings", "registry", decision),
        within,
    ]


def _attempt(phase: PhaseRecord) -> str:
    return f" (attempt {phase.attempt})" if phase.attempt > 1 else ""


def summary_table(record: RunRecord) -> str:
    """The per-phase table: status, times, and what changed on how many hosts."""
    # In a rehearsal, check mode reports what would change as changed.
    changed = "would change (tasks)" if record.mode == "rehearsal" else "changed tasks"
    lines = [
        f"| phase | status | start (UTC) | duration | {changed} | failed hosts |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {phase.title}{_attempt(phase)} | {phase.status} | {_clock(phase.started)} | "
        f"{_seconds(phase.duration)} | {phase.changed if phase.hosts else '-'} | "
        f"{', '.join(phase.failed_hosts) or '-'} |"
        for phase in [*record.phases, *record.rollbacks]
    )
    return "\n".join(lines)


# Differences listed per comparison in a report; the state manifests hold them all.
_SHOWN_DIFFERENCES = 50


def state_verdict(check: StateCheck) -> str:
    """What a comparison with the pre-window state says, in a few words."""
    if check.equal is None:
        return f"not compared: {check.error}"
    if check.equal:
        return "state unchanged" if check.after == "rehearsal" else "restored exactly"
    return f"{len(check.differences)} differences from the pre-window state"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_notes(record: RunRecord) -> list[str]:
    """The steps a rehearsal ran without doing their work, as a Markdown section."""
    noted = [phase for phase in record.phases if phase.rehearsal_notes]
    if not noted:
        return []
    parts = [
        (
            "\n\n## Not carried out by the rehearsal\n\nCheck mode ran these steps without "
            "doing their work; a real run does it.\n\n| phase | task | hosts | note |\n"
            "|---|---|---|---|"
        )
    ]
    parts += [
        f"\n| {phase.name} | {_cell(note['task'])} | {', '.join(note['hosts'])} | "
        f"{_cell(note['msg'])} |"
        for phase in noted
        for note in phase.rehearsal_notes
    ]
    return parts


def _markdown_states(record: RunRecord) -> list[str]:
    """The comparisons with the pre-window state, as a Markdown section."""
    if not record.state_checks:
        return []
    parts = [
        (
            f"\n\n## State against the pre-window state (`{PRE_WINDOW_STATE}`)\n\n"
            "| after | verdict | manifest |\n|---|---|---|"
        )
    ]
    parts += [
        f"\n| {c.after} | {_cell(state_verdict(c))} | `{c.manifest}` |" for c in record.state_checks
    ]
    for check in record.state_checks:
        if check.differences:
            parts.append(f"\n\nDifferences after {check.after}:\n")
            parts += [f"\n- {_cell(d)}" for d in check.differences[:_SHOWN_DIFFERENCES]]
            if len(check.differences) > _SHOWN_DIFFERENCES:
                parts.append(f"\n- ... and more, in `{check.manifest}`")
    return parts


def render_markdown(record: RunRecord, run_dir: Path | None = None) -> str:
    """The run's report as Markdown."""
    total = (record.finished or time.time()) - record.started
    missing = [p.title for p in record.phases if p.status == "not-implemented"]
    window = (
        f"{record.window['start']} to {record.window['end']}" if record.window else "none given"
    )
    head = (
        f"# Maintenance window {record.mode}: {record.run_id}\n\n"
        f"- outcome: **{record.outcome}**\n"
        f"- inventory: `{record.inventory}` (sha256 `{record.inventory_sha256 or 'none'}`)\n"
        f"- operator: {record.user}@{record.control_host}\n"
        f"- code revision: `{record.code_revision}`\n"
        f"- manifest sha256: `{record.manifest_sha256 or 'none'}`\n"
        f"- protocols: {', '.join(map(str, record.protocols)) or 'all of the manifest'}\n"
        f"- window: {window}\n"
        f"- from rehearsal: {record.from_rehearsal or 'none'}\n"
        f"- wall time: {total:.1f}s\n\n"
        f"{summary_table(record)}"
    )
    parts = [head]
    if missing:
        parts.append(
            "\n\nNot carried out, because this checkout has no playbook for them yet: "
            + ", ".join(missing)
            + "."
        )
    parts.append("\n\n## Success metrics\n\n| metric | verdict | detail |\n|---|---|---|")
    parts += [f"\n| {m.name} | {m.verdict} | {_cell(m.detail)} |" for m in metrics(record, run_dir)]
    if record.decisions:
        parts.append(
            "\n\n## Decisions\n\n| at (UTC) | decision | phase | reason |\n|---|---|---|---|"
        )
        parts += [
            f"\n| {d.at} | {d.kind} | {d.phase or '-'} | {_cell(d.reason)} |"
            for d in record.decisions
        ]
    if record.failed_items:
        parts.append("\n\n## Follow-up: failed items\n\n| phase | host | task | message |")
        parts.append("\n|---|---|---|---|")
        parts += [
            f"\n| {f.phase} | {f.host} | {_cell(f.task)} | {_cell(f.msg)} |"
            for f in record.failed_items
        ]
    if record.rollbacks:
        parts.append("\n\n## Rollbacks\n")
        parts += [
            f"\n- {_day(r.started)}: {r.trigger}, {r.status} in {_seconds(r.duration)}: {r.reason}"
            for r in record.rollbacks
        ]
    parts += _markdown_notes(record) + _markdown_states(record)
    if record.approvals:
        parts.append("\n\n## Approvals\n")
        parts += [f"\n- {a['role']}: {a['name']} at {a['at']}" for a in record.approvals]
    return "".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;margin:1em 0;width:100%}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.ok{color:#176b1c}.bad{color:#a11}.na{color:#777}
.bar{position:relative;height:1.4em;background:#f6f6f6;border:1px solid #ddd}
.seg{position:absolute;top:0;bottom:0;font-size:.75em;overflow:hidden;white-space:nowrap;
color:#fff;padding-left:.2em}
.seg.successful{background:#2e7d32}.seg.failed,.seg.canceled,.seg.timeout{background:#c62828}
.seg.rollback{background:#ef6c00}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _rows(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _timeline(record: RunRecord) -> str:
    entries = [p for p in [*record.phases, *record.rollbacks] if p.started and p.finished]
    if not entries:
        return "<p>No phase ran.</p>"
    start = min(p.started or 0.0 for p in entries)
    span = max(max(p.finished or 0.0 for p in entries) - start, 1e-6)
    segments = []
    for phase in entries:
        left = ((phase.started or 0.0) - start) / span * 100
        width = max((phase.duration or 0.0) / span * 100, 0.5)
        kind = "rollback" if phase in record.rollbacks else phase.status
        segments.append(
            f'<div class="seg {_esc(kind)}" style="left:{left:.2f}%;width:{width:.2f}%" '
            f'title="{_esc(phase.name)}: {_esc(phase.status)}, {_seconds(phase.duration)}">'
            f"{_esc(phase.name)}</div>"
        )
    return f'<div class="bar">{"".join(segments)}</div>'


def render_html(record: RunRecord, run_dir: Path | None = None) -> str:
    """The run's report as one self-contained HTML page (inline CSS, no external assets)."""
    css = {True: "ok", False: "bad", None: "na"}
    phases = _rows(
        ("phase", "status", "start (UTC)", "duration", "budget", "changed tasks", "failed hosts"),
        (
            (
                _esc(p.title + _attempt(p)),
                f'<span class="{css[p.status == "successful"]}">{_esc(p.status)}</span>',
                _esc(_clock(p.started)),
                _esc(_seconds(p.duration)),
                _esc(_seconds(p.budget_seconds)),
                _esc(p.changed if p.hosts else "-"),
                _esc(", ".join(p.failed_hosts) or "-"),
            )
            for p in [*record.phases, *record.rollbacks]
        ),
    )
    metric_rows = _rows(
        ("metric", "verdict", "detail"),
        (
            (_esc(m.name), f'<span class="{css[m.met]}">{_esc(m.verdict)}</span>', _esc(m.detail))
            for m in metrics(record, run_dir)
        ),
    )
    sections = [
        f"<h1>Maintenance window {_esc(record.mode)}: {_esc(record.run_id)}</h1>",
        "<ul>",
        f"<li>outcome: <strong>{_esc(record.outcome)}</strong></li>",
        f"<li>operator: {_esc(record.user)}@{_esc(record.control_host)}</li>",
        f"<li>inventory: <code>{_esc(record.inventory)}</code></li>",
        f"<li>code revision: <code>{_esc(record.code_revision)}</code></li>",
        f"<li>manifest sha256: <code>{_esc(record.manifest_sha256 or 'none')}</code></li>",
        f"<li>started: {_esc(_day(record.started))}, finished: {_esc(_day(record.finished))}</li>",
        "</ul>",
        "<h2>Timeline</h2>",
        _timeline(record),
        "<h2>Phases</h2>",
        phases,
        "<h2>Success metrics</h2>",
        metric_rows,
    ]
    if record.decisions:
        sections += [
            "<h2>Decisions</h2>",
            _rows(
                ("at (UTC)", "decision", "phase", "reason"),
                (
                    (_esc(d.at), _esc(d.kind), _esc(d.phase or "-"), _esc(d.reason))
                    for d in record.decisions
                ),
            ),
        ]
    if record.failed_items:
        sections += [
            "<h2>Follow-up: failed items</h2>",
            _rows(
                ("phase", "host", "task", "message"),
                (
                    (_esc(f.phase), _esc(f.host), _esc(f.task), _esc(f.msg))
                    for f in record.failed_items
                ),
            ),
        ]
    if record.rollbacks:
        sections += [
            "<h2>Rollbacks</h2>",
            _rows(
                ("started (UTC)", "trigger", "status", "duration", "reason"),
                (
                    (
                        _esc(_day(r.started)),
                        _esc(r.trigger),
                        _esc(r.status),
                        _esc(_seconds(r.duration)),
                        _esc(r.reason),
                    )
                    for r in record.rollbacks
                ),
            ),
        ]
    noted = [phase for phase in record.phases if phase.rehearsal_notes]
    if noted:
        sections += [
            "<h2>Not carried out by the rehearsal</h2>",
            _rows(
                ("phase", "task", "hosts", "note"),
                (
                    (
                        _esc(phase.name),
                        _esc(note["task"]),
                        _esc(", ".join(note["hosts"])),
                        _esc(note["msg"]),
                    )
                    for phase in noted
                    for note in phase.rehearsal_notes
                ),
            ),
        ]
    if record.state_checks:
        sections += [
            "<h2>State against the pre-window state</h2>",
            _rows(
                ("after", "verdict", "manifest", "differences"),
                (
                    (
                        _esc(c.after),
                        f'<span class="{css[c.equal]}">{_esc(state_verdict(c))}</span>',
                        _esc(c.manifest),
                        "<br>".join(_esc(d) for d in c.differences[:_SHOWN_DIFFERENCES]) or "-",
                    )
                    for c in record.state_checks
                ),
            ),
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(record.mode)} {_esc(record.run_id)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def render_junit(record: RunRecord) -> str:
    """The run as JUnit XML: one test case per phase attempt and rollback."""
    entries = [*record.phases, *record.rollbacks]
    failing = {"failed", "canceled", "timeout", "error", "interrupted"}
    suite = ET.Element(
        "testsuite",
        name=f"mwctl.{record.mode}.{record.run_id}",
        tests=str(len(entries)),
        failures=str(sum(p.status in failing for p in entries)),
        skipped=str(sum(p.status not in failing | {"successful"} for p in entries)),
        time=f"{sum(p.duration or 0.0 for p in entries):.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.started)),
    )
    for phase in entries:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"mwctl.{record.mode}",
            name=phase.name + _attempt(phase),
            time=f"{phase.duration or 0.0:.3f}",
        )
        if phase.status in failing:
            items = [f for f in record.failed_items if f.phase == phase.name]
            text = "\n".join(f"{f.host}: {f.task}: {f.msg}" for f in items)
            failure = ET.SubElement(
                case,
                "failure",
                message=f"{phase.name} {phase.status} (rc={phase.rc}); failed hosts: "
                f"{', '.join(phase.failed_hosts) or 'none'}",
                type=phase.status,
            )
            failure.text = text or None
        elif phase.status != "successful":
            ET.SubElement(case, "skipped", message=phase.status)
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def render_json(record: RunRecord, run_dir: Path | None = None) -> str:
    """The run record with its success metrics, as JSON."""
    data = asdict(record)
    data["metrics"] = [
        {"name": m.name, "met": m.met, "verdict": m.verdict, "detail": m.detail}
        for m in metrics(record, run_dir)
    ]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render(record: RunRecord, fmt: str, run_dir: Path | None = None) -> str:
    """The report in format `fmt` (one of FORMATS)."""
    if fmt == "md":
        return render_markdown(record, run_dir)
    if fmt == "html":
        return render_html(record, run_dir)
    if fmt == "junit":
        return render_junit(record)
    return render_json(record, run_dir)


def write_reports(
    record: RunRecord, run_dir: Path, formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Write the run's reports into its directory; return the path of each format."""
    written = {}
    for fmt in formats:
        path = run_dir / _FILES[fmt]
        path.write_text(render(record, fmt, run_dir), encoding="utf-8")
        written[fmt] = path
    return written


def list_runs(project: Project) -> list[RunRecord]:
    """Every recorded run, oldest first; directories without run.json are skipped."""
    if not project.runs_dir.is_dir():
        return []
    runs = [
        load_record(path)
        for path in sorted(project.runs_dir.iterdir())
        if (path / "run.json").is_file()
    ]
    return sorted(runs, key=lambda r: r.started)


def runs_table(records: Iterable[RunRecord]) -> str:
    """A table of runs: id, mode, outcome, start and duration."""
    lines = [f"{'run id':<36} {'mode':<10} {'outcome':<25} {'started (UTC)':<21} duration"]
    for r in records:
        took = f"{r.finished - r.started:.0f}s" if r.finished else "-"
        lines.append(f"{r.run_id:<36} {r.mode:<10} {r.outcome:<25} {_day(r.started):<21} {took}")
    return "\n".join(lines)


def status_text(record: RunRecord) -> str:
    """A run's phases and decisions, for the terminal."""
    lines = [f"{record.mode} {record.run_id}: {record.outcome}", "", summary_table(record)]
    if record.decisions:
        lines += ["", "decisions:"]
        lines += [
            f"  {d.at} {d.kind}{' (' + d.phase + ')' if d.phase else ''}: {d.reason}"
            for d in record.decisions
        ]
    if record.failed_items:
        lines += ["", "failed items (follow-up):"]
        lines += [f"  {f.phase} {f.host}: {f.task}: {f.msg}" for f in record.failed_items]
    return "\n".join(lines)
