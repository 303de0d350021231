"""The `mwctl` command line: a thin layer over the mwctl API."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mwctl import __version__
from mwctl.errors import MwctlError, UsageError
from mwctl.lab import LabSpec, lab_down, lab_status, lab_up
from mwctl.project import Project
from mwctl.report import render_markdown, summary_table
from mwctl.window import run_window

log = logging.getLogger("mwctl")


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
    up.add_argument("--scripts", type=int, default=36, help="validation scripts (default 36)")
    up.add_argument("--seed", type=int, default=1, help="world seed: same seed, same world")
    up.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")
    lab_commands.add_parser("status", help="show the lab hosts and their units")
    down = lab_commands.add_parser("down", help="remove the lab's containers and world")
    down.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")

    for name, text in (
        ("run", "run the maintenance window, phase by phase"),
        ("rehearse", "run every phase in check and diff mode; nothing is changed"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "-i", "--inventory", type=Path, help="inventory (default: the built-in lab)"
        )
        command.add_argument("-q", "--quiet", action="store_true", help="hide the playbook output")
    return parser


def _window(args: argparse.Namespace, project: Project) -> int:
    inventory = (args.inventory or project.lab_inventory).resolve()
    if not inventory.exists():
        msg = f"inventory {str(inventory)!r} does not exist; pass -i with an inventory path"
        raise UsageError(msg)
    manifest = project.world_dir / "manifest.yml" if inventory == project.lab_inventory else None
    record = run_window(
        project,
        inventory=inventory,
        manifest=manifest,
        check=args.command == "rehearse",
        quiet=args.quiet,
    )
    run_dir = project.runs_dir / record.run_id
    report = run_dir / "report.md"
    report.write_text(render_markdown(record), encoding="utf-8")
    print(summary_table(record))
    print(f"\n{record.mode} {record.run_id}: {record.outcome}")
    print(f"report: {report}")
    return 0 if record.outcome in {"succeeded", "incomplete"} else 1


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run mwctl with `argv` and return its exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        project = Project.locate()
        if args.command == "lab":
            return _lab(args, project)
        return _window(args, project)
    except MwctlError as error:
        log.error("%s", error)  # noqa: TRY400 - the message is the report; no traceback for users
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
