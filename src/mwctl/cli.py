"""The `mwctl` command line: a thin layer over the mwctl API."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mwctl import __version__
from mwctl.approvals import approve
from mwctl.errors import MwctlError, UsageError
from mwctl.lab import LabSpec, lab_down, lab_status, lab_up
from mwctl.plan import default_manifest, make_plan, render_plan
from mwctl.policy import load_policy
from mwctl.progress import Progress, StreamProgress
from mwctl.project import Project
from mwctl.report import (
    FORMATS,
    list_runs,
    runs_table,
    state_verdict,
    status_text,
    summary_table,
    write_reports,
)
from mwctl.schedule import TimeWindow
from mwctl.state import capture_state, diff_states, load_state, render_differences, summarize
from mwctl.window import RunRecord, load_record, resume_window, rollback_run, run_window

log = logging.getLogger("mwctl")

# Outcomes the CLI exits 0 for: the window did its work (follow-up items are listed).
_GOOD = {"succeeded", "succeeded-with-follow-up", "incomplete"}


def _protocols(text: str) -> list[int]:
    """Parse `18,19` or `18-20` (or a mix) into protocol numbers."""
    numbers: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, _, high = part.partition("-")
            numbers.update(range(int(low), int(high or low) + 1))
    except ValueError:
        msg = f"--protocols {text!r} is not a list like 18,19 or 18-20"
        raise argparse.ArgumentTypeError(msg) from None
    if not numbers:
        msg = f"--protocols {text!r} names no protocol"
        raise argparse.ArgumentTypeError(msg)
    return sorted(numbers)


def _extravar(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        msg = f"-e {text!r} is not KEY=VALUE"
        raise argparse.ArgumentTypeError(msg)
    # YAML, as ansible reads `-e`: numbers, lists and booleans keep their type.
    return key.strip(), yaml.safe_load(value) if value else ""


def _window(text: str) -> TimeWindow:
    try:
        return TimeWindow.parse(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")
    command.add_argument(
        "--take-over-stale-lock",
        action="store_true",
        help="take over the lock of a run that is no longer running",
    )
    command.add_argument(
        "-e",
        "--extra-var",
        dest="extravars",
        action="append",
        type=_extravar,
        default=[],
        metavar="KEY=VALUE",
        help="extra variable for every playbook (secrets are never recorded)",
    )


def _add_window_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's private type
    for name, text in (
        ("run", "run the maintenance window, phase by phase"),
        ("rehearse", "run every phase in check and diff mode; nothing is changed"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "-i", "--inventory", type=Path, help="inventory (default: the built-in lab)"
        )
        command.add_argument("--manifest", type=Path, help="rename manifest to fingerprint")
        command.add_argument(
            "--protocols", type=_protocols, default=[], help="protocols of this window: 18,19"
        )
        command.add_argument("--policy", type=Path, help="policy file (default: policy.yml)")
        command.add_argument(
            "--window", type=_window, help="START/DURATION, e.g. 2026-12-05T02:00Z/4h or now/90m"
        )
        if name == "run":
            command.add_argument(
                "--from-rehearsal",
                metavar="RUN",
                help="the rehearsal this run repeats; its approvals and fingerprints must match",
            )
        _add_common(command)

    resume = commands.add_parser("resume", help="carry on a stopped run from its failed phase")
    resume.add_argument("run_id", metavar="RUN")
    resume.add_argument("--policy", type=Path, help="policy file (default: policy.yml)")
    resume.add_argument("--window", type=_window, help="START/DURATION of the window")
    _add_common(resume)
    rollback = commands.add_parser("rollback", help="roll a run back from its backups")
    rollback.add_argument("run_id", metavar="RUN")
    _add_common(rollback)


def _add_state_command(commands: Any) -> None:  # noqa: ANN401 - argparse's private type
    state = commands.add_parser(
        "state",
        help="record the state the window touches in a manifest, or compare two manifests",
    )
    state.add_argument("-i", "--inventory", type=Path, help="inventory (default: the built-in lab)")
    state.add_argument("--out", type=Path, help="file to write the state manifest to (JSON)")
    state.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")
    # Optional, so that `mwctl state --out FILE` captures and `mwctl state diff A B` compares.
    state_commands = state.add_subparsers(dest="state_command", metavar="{diff}")
    diff = state_commands.add_parser(
        "diff", help="compare two state manifests; exit 1 when they differ"
    )
    diff.add_argument("before", type=Path, metavar="A", help="the earlier manifest")
    diff.add_argument("after", type=Path, metavar="B", help="the later manifest")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwctl",
        description="Rehearse, run, prove and roll back a maintenance window.",
    )
    parser.add_argument("--version", action="version", version=f"mwctl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser("lab", help="manage the built-in lab of systemd containers")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_commands.add_parser("up", help="build, start and seed the lab")
    up.add_argument("--protocols", default="18-23", help="protocols to generate (default 18-23)")
    up.add_argument("--scripts", type=int, default=96, help="validation scripts (default 96)")
    up.add_argument("--seed", type=int, default=1, help="world seed: same seed, same world")
    up.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")
    lab_commands.add_parser("status", help="show the lab hosts and their units")
    down = lab_commands.add_parser("down", help="remove the lab's containers and world")
    down.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")

    _add_window_commands(commands)

    plan = commands.add_parser("plan", help="show the renames the window would apply, or why not")
    plan.add_argument("-i", "--inventory", type=Path, help="inventory (default: the built-in lab)")
    plan.add_argument("--manifest", type=Path, help="rename manifest (default: the inventory's)")
    plan.add_argument("--protocols", type=_protocols, default=[], help="protocols: 18,19")

    approve_cmd = commands.add_parser("approve", help="approve a rehearsal (or run) to go ahead")
    approve_cmd.add_argument("run_id", metavar="RUN")
    approve_cmd.add_argument("--role", required=True, help="the approver's role in the change")
    approve_cmd.add_argument("--name", required=True, help="the approver's name")

    _add_state_command(commands)

    commands.add_parser("runs", help="list the recorded runs")
    status = commands.add_parser("status", help="show a run's phases and decisions")
    status.add_argument("run_id", metavar="RUN")
    report = commands.add_parser("report", help="write a run's report")
    report.add_argument("run_id", metavar="RUN")
    report.add_argument("--format", choices=FORMATS, default="md", help="report format")
    return parser


def _inventory(args: argparse.Namespace, project: Project) -> Path:
    inventory: Path = (args.inventory or project.lab_inventory).resolve()
    if not inventory.exists():
        msg = f"inventory {str(inventory)!r} does not exist; pass -i with an inventory path"
        raise UsageError(msg)
    return inventory


def _progress(args: argparse.Namespace) -> Progress | None:
    return None if args.quiet else StreamProgress(sys.stderr)


def _finish(project: Project, record: RunRecord, good: set[str] = _GOOD) -> int:
    run_dir = project.runs_dir / record.run_id
    reports = write_reports(record, run_dir)
    print(summary_table(record))
    for item in record.failed_items:
        print(f"follow-up: {item.phase} {item.host}: {item.task}: {item.msg}")
    for check in record.state_checks:
        print(f"state after {check.after}: {state_verdict(check)}")
        for difference in check.differences[:20]:
            print(f"  {difference}")
    print(f"\n{record.mode} {record.run_id}: {record.outcome}")
    print(f"report: {reports['md']}")
    return 0 if record.outcome in good else 1


def _run(args: argparse.Namespace, project: Project) -> int:
    inventory = _inventory(args, project)
    manifest = args.manifest.resolve() if args.manifest else default_manifest(project, inventory)
    record = run_window(
        project,
        inventory=inventory,
        manifest=manifest,
        check=args.command == "rehearse",
        quiet=args.quiet,
        policy=load_policy(project, args.policy),
        window=args.window,
        protocols=args.protocols,
        extravars=dict(args.extravars),
        from_rehearsal=getattr(args, "from_rehearsal", None),
        take_over_stale_lock=args.take_over_stale_lock,
        progress=_progress(args),
    )
    return _finish(project, record)


def _resume(args: argparse.Namespace, project: Project) -> int:
    record = resume_window(
        project,
        args.run_id,
        quiet=args.quiet,
        policy=load_policy(project, args.policy),
        window=args.window,
        extravars=dict(args.extravars),
        take_over_stale_lock=args.take_over_stale_lock,
        progress=_progress(args),
    )
    return _finish(project, record)


def _rollback(args: argparse.Namespace, project: Project) -> int:
    record = rollback_run(
        project,
        args.run_id,
        quiet=args.quiet,
        extravars=dict(args.extravars),
        take_over_stale_lock=args.take_over_stale_lock,
        progress=_progress(args),
    )
    return _finish(project, record, {"rolled-back"})


def _state(args: argparse.Namespace, project: Project) -> int:
    if args.state_command == "diff":
        # Unreadable input raises StateFileError, a usage error: exit 2, as diff(1) does.
        differences = diff_states(load_state(args.before), load_state(args.after))
        print(render_differences(differences))
        return 1 if differences else 0
    if args.out is None:
        msg = "mwctl state needs --out FILE, the manifest to write (or: mwctl state diff A B)"
        raise UsageError(msg)
    path = capture_state(project, _inventory(args, project), args.out, quiet=args.quiet)
    print(f"state: {path}")
    print(summarize(load_state(path)))
    return 0


def _lab(args: argparse.Namespace, project: Project) -> int:
    if args.lab_command == "up":
        spec = LabSpec.parse(args.protocols, args.scripts, args.seed)
        result = lab_up(project, spec, quiet=args.quiet)
        print(f"lab up: {len(result.hosts)} hosts ready in {result.duration:.0f}s")
        return 0
    if args.lab_command == "down":
        lab_down(project, quiet=args.quiet)
        print("lab down: containers, network and world removed")
        return 0
    statuses = lab_status(project)
    healthy = True
    for status in statuses:
        units = " ".join(f"{unit}={state}" for unit, state in status.units.items())
        print(f"{status.host:<10} {status.group:<15} {status.container:<8} {units}")
        healthy &= status.container == "running" and all(
            state == "active" for state in status.units.values()
        )
    return 0 if healthy else 1


def _records(args: argparse.Namespace, project: Project) -> int:
    if args.command == "plan":
        plan = make_plan(
            project,
            _inventory(args, project),
            manifest=args.manifest.resolve() if args.manifest else None,
            protocols=args.protocols,
        )
        print(render_plan(plan))
        return 0 if plan.go else 1
    if args.command == "approve":
        approval = approve(project.runs_dir / args.run_id, role=args.role, name=args.name)
        print(f"approved {args.run_id}: {approval.role} {approval.name} at {approval.at}")
        return 0
    if args.command == "runs":
        print(runs_table(list_runs(project)))
        return 0
    run_dir = project.runs_dir / args.run_id
    record = load_record(run_dir)
    if args.command == "status":
        print(status_text(record))
        return 0
    path = write_reports(record, run_dir, [args.format])[args.format]
    print(f"report: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run mwctl with `argv` and return its exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {
        "lab": _lab,
        "run": _run,
        "rehearse": _run,
        "resume": _resume,
        "rollback": _rollback,
        "state": _state,
    }
    try:
        project = Project.locate()
        return handlers.get(args.command, _records)(args, project)
    except MwctlError as error:
        log.error("%s", error)  # noqa: TRY400 - the message is the report; no traceback for users
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
