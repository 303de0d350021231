"""`mwctl lab up` with other parameters builds another world; the window fixes it too.

It runs last, on its own lab: a different seed, protocol range and size than the default.
The rehearsal leaves that world as it was, and the rollback after the window restores
exactly the state captured before phase 1.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mwctl.project import Project

REPO = Path(__file__).resolve().parents[2]
MWCTL = Path(sys.executable).parent / "mwctl"
# Prints every script whose self-test fails: one misnumbered for its protocol.
SELF_TESTS = (
    "cd /opt/project && for f in scripts/validation/*.sh; do "
    "sh $f --self-test >/dev/null 2>&1 || echo $f; done"
)


# The window's run id, for the rollback after it.
WINDOW_RUN: list[str] = []


def mwctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MWCTL), *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_other_parameters_build_another_world() -> None:
    project = Project(REPO)
    default = json.loads((project.world_dir / "world.json").read_text(encoding="utf-8"))

    refused = mwctl("lab", "up", "--protocols", "3-5", "--scripts", "12", "--seed", "7", "-q")
    assert refused.returncode == 2, refused.stderr
    assert "run `mwctl lab down`" in refused.stderr

    assert mwctl("lab", "down", "-q").returncode == 0
    built = mwctl("lab", "up", "--protocols", "3-5", "--scripts", "12", "--seed", "7", "-q")
    assert built.returncode == 0, built.stderr[-3000:]

    other = json.loads((project.world_dir / "world.json").read_text(encoding="utf-8"))
    assert other["protocols"] == [3, 4, 5]
    assert other["script_count"] == 12
    assert other["id"] != default["id"]
    listing = subprocess.run(
        ["podman", "exec", "mwlab-proto1", "ls", "/opt/project/.cursor/ai-driven-workflow"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout.split() == ["protocol-3", "protocol-4", "protocol-5"]
    status = mwctl("lab", "status")
    assert status.returncode == 0, status.stdout


def state_checks(output: str, mode: str) -> tuple[str, list[tuple[str, bool | None]]]:
    """The run id mwctl's output names, and the state comparisons its run.json records."""
    match = re.search(rf"^{mode} (\S+): ", output, re.MULTILINE)
    assert match, output[-3000:]
    record = json.loads(
        (Project(REPO).runs_dir / match.group(1) / "run.json").read_text(encoding="utf-8")
    )
    return match.group(1), [(c["after"], c["equal"]) for c in record["state_checks"]]


def test_a_rehearsal_leaves_the_other_world_unchanged() -> None:
    result = mwctl("rehearse", "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert state_checks(result.stdout, "rehearsal")[1] == [("rehearsal", True)]


def test_the_window_fixes_the_other_world() -> None:
    project = Project(REPO)
    world = json.loads((project.world_dir / "world.json").read_text(encoding="utf-8"))
    assert world["protocols"] == [3, 4, 5], "the other world is not the lab's"
    result = mwctl("run", "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^run \S+: succeeded$", result.stdout, re.MULTILINE), result.stdout[-3000:]
    WINDOW_RUN.append(state_checks(result.stdout, "run")[0])
    for host in ("proto1", "proto2"):
        failing = subprocess.run(
            [
                "podman",
                "exec",
                f"mwlab-{host}",
                "sh",
                "-c",
                SELF_TESTS,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert failing == "", f"{host}: scripts still misnumbered after the window: {failing}"


def test_rollback_restores_the_other_world_exactly() -> None:
    assert WINDOW_RUN, "the window did not run"
    result = mwctl("rollback", "-q", WINDOW_RUN[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert state_checks(result.stdout, "run")[1] == [("rollback 1", True)]
