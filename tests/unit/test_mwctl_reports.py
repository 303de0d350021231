"""Reports of a run: Markdown, HTML with the plan's success metrics, JUnit XML, JSON."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from mwctl.playbook import HostStats
from mwctl.report import metrics, render_html, write_reports
from mwctl.window import Decision, PhaseFailure, PhaseRecord, RollbackRecord, RunRecord

NOW = time.time()


def _record() -> RunRecord:
    def done(name: str, status: str, hosts: dict[str, HostStats]) -> PhaseRecord:
        return PhaseRecord(
            name,
            f"Phase {name}",
            f"{name}.yml",
            status=status,
            rc=0 if status == "successful" else 2,
            started=NOW - 50,
            finished=NOW - 40,
            ident=f"{name}-1",
            hosts=hosts,
        )

    return RunRecord(
        run_id="20261205T020000Z-abcdef",
        mode="run",
        inventory="hosts",
        user="ops",
        control_host="ctl",
        code_revision="abc",
        manifest_sha256="f" * 64,
        started=NOW - 60,
        finished=NOW,
        outcome="rolled-back",
        phases=[
            done("prepare", "successful", {"proto1": HostStats(ok=3, changed=2)}),
            done("execute", "failed", {"proto1": HostStats(ok=1, failed=1)}),
        ],
        decisions=[Decision("2026-12-05T02:01:00Z", "rollback", "execute failed", "execute")],
        failed_items=[PhaseFailure("execute", "proto1", "Rename <scripts>", "target exists")],
        rollbacks=[
            RollbackRecord(
                "rollback",
                "Rollback",
                "rollback.yml",
                status="successful",
                rc=0,
                started=NOW - 30,
                finished=NOW - 5,
                trigger="critical-failure",
                reason="execute failed",
            )
        ],
        window={"start": "2026-12-05T02:00:00Z", "end": "2999-01-01T00:00:00Z", "end_ts": 3e10},
    )


def _validation(run_dir: Path) -> None:
    (run_dir / "validation").mkdir(parents=True)
    (run_dir / "validation" / "validation.json").write_text(
        json.dumps(
            {
                "passed": False,
                "checks": {"gates": "pass", "registry": "fail"},
                "failures": [{"check": "registry", "host": "registry1", "items": ["a", "b"]}],
            }
        ),
        encoding="utf-8",
    )


def test_metrics_are_judged_from_the_record_and_validation_json(tmp_path: Path) -> None:
    _validation(tmp_path)
    verdicts = {m.name: m.verdict for m in metrics(_record(), tmp_path)}
    assert verdicts == {
        "all phases successful": "not met",
        "zero broken references": "met",
        "registry reflects mappings": "not met",
        "completed within the window": "not met",  # rolled back, so not completed
    }
    assert {m.verdict for m in metrics(_record(), tmp_path / "none")} >= {"not measured"}


def test_every_format_is_written(tmp_path: Path) -> None:
    _validation(tmp_path)
    paths = write_reports(_record(), tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "report.html",
        "report.json",
        "report.junit.xml",
        "report.md",
    ]

    # The report is our own output, not untrusted input.
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")  # noqa: S314
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["prepare", "execute", "rollback"]
    assert cases["prepare"].find("failure") is None
    failure = cases["execute"].find("failure")
    assert failure is not None
    assert "proto1" in (failure.get("message") or "")
    assert "target exists" in (failure.text or "")
    assert suite.get("failures") == "1"

    page = paths["html"].read_text(encoding="utf-8")
    assert "<style>" in page
    assert "<link" not in page
    assert "<script" not in page
    for row in (
        '<tr><td>zero broken references</td><td><span class="ok">met</span>',
        '<tr><td>registry reflects mappings</td><td><span class="bad">not met</span>',
        '<tr><td>all phases successful</td><td><span class="bad">not met</span>',
        "<td>completed within the window</td>",
    ):
        assert row in page
    assert "Rename &lt;scripts&gt;" in page  # escaped
    assert 'class="seg rollback"' in page  # the timeline shows the rollback

    markdown = paths["md"].read_text(encoding="utf-8")
    assert "| execute | proto1 | Rename <scripts> | target exists |" in markdown
    assert "critical-failure, successful" in markdown

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["outcome"] == "rolled-back"
    assert data["phases"][1]["status"] == "failed"
    assert [m["verdict"] for m in data["metrics"]][:2] == ["not met", "met"]


def test_a_successful_run_meets_its_metrics(tmp_path: Path) -> None:
    record = _record()
    record.phases[1].status = "successful"
    record.outcome = "succeeded"
    record.rollbacks = []
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "validation.json").write_text(
        json.dumps({"checks": {"gates": "pass", "registry": "pass"}, "failures": []}),
        encoding="utf-8",
    )
    assert [m.verdict for m in metrics(record, tmp_path)] == ["met"] * 4
    assert render_html(record, tmp_path).count('class="ok">met<') == 4
