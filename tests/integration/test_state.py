"""`mwctl state`: the state manifest of the lab, and its diff, on real hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mwctl.project import Project
from tests.integration.conftest import REPO
from tests.integration.lab_state import podman_exec

MWCTL = Path(sys.executable).parent / "mwctl"


def mwctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MWCTL), *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def capture(path: Path) -> dict[str, object]:
    result = mwctl("state", "--out", str(path), "-q")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def tampered(lab: Project) -> Iterator[str]:
    """One script of proto1 changed in content and mode, and a runner's timer stopped."""
    del lab
    script = podman_exec("proto1", "ls /opt/project/scripts/validation | head -n 1").strip()
    path = f"/opt/project/scripts/validation/{script}"
    podman_exec(
        "proto1", f"cp -p {path} /root/kept && echo '# edited' >> {path} && chmod 600 {path}"
    )
    podman_exec("runner2", "systemctl stop ci-scheduler.timer")
    try:
        yield f"scripts/validation/{script}"
    finally:
        podman_exec("proto1", f"cp -p /root/kept {path} && rm /root/kept")
        podman_exec("runner2", "systemctl start ci-scheduler.timer")


def test_two_captures_of_an_idle_lab_are_equal(lab: Project, tmp_path: Path) -> None:
    first = capture(tmp_path / "a.json")
    capture(tmp_path / "b.json")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600
    hosts = first["hosts"]
    assert isinstance(hosts, dict)
    assert {"proto1", "proto2", "registry1", "runner1", "runner2", "cache1"} <= set(hosts)
    assert hosts["registry1"]["registry"], hosts["registry1"]
    result = mwctl("state", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stdout
    assert "no differences" in result.stdout
    del lab


def test_diff_names_every_change(lab: Project, tmp_path: Path, tampered: str) -> None:
    del lab
    # The tampered lab is captured first, then put back and captured again: the diff from the
    # restored capture to the tampered one must name each change.
    after = tmp_path / "after.json"
    capture(after)
    podman_exec("proto1", f"cp -p /root/kept /opt/project/{tampered}")
    podman_exec("runner2", "systemctl start ci-scheduler.timer")
    before = tmp_path / "before.json"
    capture(before)
    result = mwctl("state", "diff", str(before), str(after))
    assert result.returncode == 1, result.stdout
    assert f"proto1 files {tampered}: mode 0755 -> 0600" in result.stdout, result.stdout
    assert "runner2 units ci-scheduler.timer" in result.stdout, result.stdout
    assert "proto1 git clean: true -> false" in result.stdout, result.stdout
