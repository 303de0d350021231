"""Finding the checkout and the environment given to ansible and podman."""

from __future__ import annotations

from pathlib import Path

import pytest

from mwctl.errors import ProjectError
from mwctl.project import Project

REPO = Path(__file__).resolve().parents[2]


def test_locate_finds_the_checkout_from_a_subdirectory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MWCTL_PROJECT_DIR", raising=False)
    assert Project.locate(REPO / "roles" / "lab_image").root == REPO


def test_locate_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MWCTL_PROJECT_DIR", str(REPO))
    assert Project.locate(tmp_path).root == REPO


def test_locate_outside_a_checkout_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MWCTL_PROJECT_DIR", raising=False)
    with pytest.raises(ProjectError, match="MWCTL_PROJECT_DIR") as caught:
        Project.locate(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_env_points_ansible_and_podman_into_the_checkout() -> None:
    env = Project(REPO).env()
    assert env["ANSIBLE_CONFIG"] == str(REPO / "ansible.cfg")
    assert Path(env["CONTAINERS_CONF"]).is_file()
    assert "runc" in Path(env["CONTAINERS_CONF"]).read_text(encoding="utf-8")
