"""run_playbook on localhost: extra variables reach the play and no record keeps them."""

from __future__ import annotations

import stat
import sys
import tempfile
from pathlib import Path

import pytest

from mwctl.errors import ProjectError
from mwctl.playbook import run_playbook
from tests.unit.mwctl_helpers import inventory, make_project, playbook

SECRET = "s3cret-extra-var-4711"  # noqa: S105 - a test value, meant to be found


def test_extra_vars_reach_the_play_but_no_record_or_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    out = tmp_path / "seen.txt"
    name = playbook(
        project,
        "secret",
        "- ansible.builtin.copy:\n"
        "        content: '{{ db_password }}'\n"
        f"        dest: {out}\n"
        "        mode: '0600'",
    )
    # mwctl's scratch files go to a directory of the test's own, to be watched.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    modes: set[int] = set()

    def watch(_event: dict[str, object]) -> bool:
        # While the play runs, the file holding the variables exists, readable by us only.
        modes.update(stat.S_IMODE(p.stat().st_mode) for p in scratch.glob("mwctl-vars-*/*"))
        return True

    result = run_playbook(
        project,
        name,
        private_dir=tmp_path / "runner",
        inventory=inventory(project),
        extravars={"db_password": SECRET},
        event_handler=watch,
    )

    assert result.succeeded, result
    assert out.read_text(encoding="utf-8") == SECRET
    leaking = [
        str(path)
        for path in (tmp_path / "runner").rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]
    assert leaking == []
    command = next((tmp_path / "runner").rglob("command")).read_text(encoding="utf-8")
    assert "--extra-vars" in command
    assert modes == {0o600}, "the variables were not passed through a private file"
    assert list(scratch.iterdir()) == []


def test_the_ansible_beside_mwctls_python_runs_without_it_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    name = playbook(project, "plain", "- ansible.builtin.debug:\n        msg: ok")
    # Where the virtualenv's mwctl is started by its path: the system's PATH only.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    result = run_playbook(
        project, name, private_dir=tmp_path / "runner", inventory=inventory(project)
    )
    assert (result.status, result.rc) == ("successful", 0)
    command = next((tmp_path / "runner").rglob("command")).read_text(encoding="utf-8")
    assert str(Path(sys.executable).parent) in command


def test_a_missing_ansible_playbook_is_named_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, monkeypatch)
    name = playbook(project, "never", "- ansible.builtin.debug:\n        msg: ok")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty" / "python3"))

    with pytest.raises(
        ProjectError, match=r"ansible-playbook is neither beside .* nor on PATH.*make venv"
    ):
        run_playbook(project, name, private_dir=tmp_path / "runner", inventory=inventory(project))
    assert not (tmp_path / "runner").exists()
