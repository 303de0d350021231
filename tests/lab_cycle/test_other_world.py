"""`mwctl lab up` with other parameters builds another world; it runs last, on its own lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mwctl.project import Project

REPO = Path(__file__).resolve().parents[2]
MWCTL = Path(sys.executable).parent / "mwctl"


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
