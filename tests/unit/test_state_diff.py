"""State manifests: loading, comparing and rendering them, and `mwctl state diff`."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mwctl.cli import main
from mwctl.playbook import run_playbook
from mwctl.project import Project
from mwctl.state import (
    MISSING,
    Difference,
    StateFileError,
    capture_state,
    diff_states,
    load_state,
)
from mwctl.state import render_differences as render
from tests.unit.mwctl_helpers import REPO, VENV_BIN

SUM_X = "ab12" + "0" * 60
SUM_X2 = "cd34" + "1" * 60
SUM_Y = "ef56" + "2" * 60


def manifest() -> dict[str, Any]:
    """A small manifest as playbooks/state.yml writes one."""
    return {
        "format": 1,
        "taken_at": "2026-12-05T01:50:00Z",
        "inventory": ["/work/inventory/lab/hosts.yml"],
        "hosts": {
            "proto1": {
                "files": {
                    "scripts/validation/x.sh": {
                        "sha256": SUM_X,
                        "mode": "0755",
                        "owner": "root",
                        "group": "root",
                    },
                    "scripts/validation/y.sh": {
                        "sha256": SUM_Y,
                        "mode": "0755",
                        "owner": "root",
                        "group": "root",
                    },
                },
                "git": {"head": "1" * 40, "tree": "2" * 40, "clean": True},
                "locks": {},
            },
            "registry1": {
                "registry": {
                    "scripts": {"checksum": 123, "rows": 96},
                    "protocol_hooks": {"checksum": 77, "rows": 12},
                }
            },
            "runner1": {
                "units": {
                    "ci-runner.service": {"enabled": "enabled", "active": "active"},
                    "ci-scheduler.timer": {"enabled": "enabled", "active": "active"},
                },
                "caches": {"ci_cache": {"path": "/var/cache/ci", "files": 40}},
            },
            "cache1": {"caches": {"redis": {"dbsize": 50, "pattern": "ci:*", "matching": 20}}},
        },
    }


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_equal_manifests_have_no_differences() -> None:
    assert diff_states(manifest(), manifest()) == []
    assert render([]) == "no differences"


def test_the_capture_time_and_the_caches_are_left_out() -> None:
    after = manifest()
    after["taken_at"] = "2026-12-05T05:10:00Z"
    after["hosts"]["runner1"]["caches"]["ci_cache"]["files"] = 0
    after["hosts"]["cache1"]["caches"] = {"redis": {"dbsize": 30, "pattern": "ci:*", "matching": 0}}
    assert diff_states(manifest(), after) == []


def test_a_changed_file_is_reported_with_its_checksums() -> None:
    after = manifest()
    after["hosts"]["proto1"]["files"]["scripts/validation/x.sh"]["sha256"] = SUM_X2
    differences = diff_states(manifest(), after)
    assert differences == [
        Difference(
            "proto1", "files", "scripts/validation/x.sh", {"sha256": SUM_X}, {"sha256": SUM_X2}
        )
    ]
    assert (
        render(differences)
        == "proto1 files scripts/validation/x.sh: sha256 ab1200000000.. -> cd3411111111.."
    )


def test_a_missing_file_is_reported_either_way() -> None:
    after = manifest()
    del after["hosts"]["proto1"]["files"]["scripts/validation/y.sh"]
    gone = diff_states(manifest(), after)
    assert len(gone) == 1
    assert (gone[0].host, gone[0].section, gone[0].key) == (
        "proto1",
        "files",
        "scripts/validation/y.sh",
    )
    assert gone[0].after is MISSING
    assert render(gone) == "proto1 files scripts/validation/y.sh: present -> missing"
    assert render(diff_states(after, manifest())) == (
        "proto1 files scripts/validation/y.sh: missing -> present"
    )


def test_a_changed_mode_is_reported_alone() -> None:
    after = manifest()
    after["hosts"]["proto1"]["files"]["scripts/validation/x.sh"]["mode"] = "0555"
    assert render(diff_states(manifest(), after)) == (
        "proto1 files scripts/validation/x.sh: mode 0755 -> 0555"
    )


def test_a_changed_registry_checksum_is_reported() -> None:
    after = manifest()
    after["hosts"]["registry1"]["registry"]["scripts"]["checksum"] = 456
    assert (
        render(diff_states(manifest(), after)) == "registry1 registry scripts: checksum 123 -> 456"
    )


def test_a_changed_unit_state_is_reported() -> None:
    after = manifest()
    after["hosts"]["runner1"]["units"]["ci-runner.service"] = {
        "enabled": "disabled",
        "active": "inactive",
    }
    assert render(diff_states(manifest(), after)) == (
        "runner1 units ci-runner.service: active active -> inactive, enabled enabled -> disabled"
    )


def test_git_locks_and_the_inventory_are_compared() -> None:
    after = manifest()
    after["inventory"] = ["/elsewhere/hosts.yml"]
    after["hosts"]["proto1"]["git"]["clean"] = False
    after["hosts"]["proto1"]["locks"] = {
        "/var/lib/maintenance-window/protocol.lock": {"run_id": "r1"}
    }
    assert render(diff_states(manifest(), after)).splitlines() == [
        'manifest inventory: ["/work/inventory/lab/hosts.yml"] -> ["/elsewhere/hosts.yml"]',
        "proto1 git clean: true -> false",
        "proto1 locks /var/lib/maintenance-window/protocol.lock: missing -> present",
    ]


def test_an_unreachable_or_missing_host_is_always_a_difference() -> None:
    after = manifest()
    after["hosts"]["proto1"] = {"unreachable": True}
    del after["hosts"]["runner1"]
    assert render(diff_states(manifest(), after)).splitlines() == [
        "proto1 host: captured -> unreachable",
        "runner1 host: captured -> missing",
    ]
    # Not reached either time: nothing proves it unchanged.
    assert (
        render(diff_states(after, copy.deepcopy(after)))
        == "proto1 host: unreachable -> unreachable"
    )


def test_load_state_reads_a_manifest(tmp_path: Path) -> None:
    assert load_state(write(tmp_path / "state.json", manifest())) == manifest()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "cannot read the state manifest"),
        ("{not json", "is not a state manifest: not JSON"),
        ('{"format": 2, "hosts": {}}', "is not a state manifest of format 1 (format: 2)"),
        ("[1, 2]", "is not a state manifest of format 1 (format: 'list')"),
        ('{"format": 1, "hosts": {"proto1": []}}', "'hosts' must map each host"),
    ],
)
def test_load_state_names_the_file_it_cannot_use(
    tmp_path: Path, content: str | None, error: str
) -> None:
    path = tmp_path / "state.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(StateFileError, match="state manifest") as raised:
        load_state(path)
    assert str(path) in str(raised.value)
    assert error in str(raised.value)
    assert raised.value.exit_code == 2


def test_cli_state_diff_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MWCTL_PROJECT_DIR", str(REPO))
    before = write(tmp_path / "before.json", manifest())
    same = write(tmp_path / "same.json", manifest())
    changed = manifest()
    changed["hosts"]["registry1"]["registry"]["scripts"]["checksum"] = 456
    after = write(tmp_path / "after.json", changed)

    assert main(["state", "diff", str(before), str(same)]) == 0
    assert capsys.readouterr().out == "no differences\n"

    assert main(["state", "diff", str(before), str(after)]) == 1
    assert capsys.readouterr().out == "registry1 registry scripts: checksum 123 -> 456\n"

    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert main(["state", "diff", str(before), str(tmp_path / "bad.json")]) == 2
    assert main(["state", "diff", str(tmp_path / "absent.json"), str(before)]) == 2
    assert capsys.readouterr().out == ""


def test_cli_state_without_out_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MWCTL_PROJECT_DIR", str(REPO))
    assert main(["state"]) == 2


def _checkout(root: Path) -> None:
    """A git checkout with one script and one protocol file, committed."""
    (root / "scripts" / "validation").mkdir(parents=True)
    (root / "scripts" / "validation" / "x.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (root / "proto" / "protocol-18").mkdir(parents=True)
    (root / "proto" / "protocol-18" / "hooks.yml").write_text("x.sh\n", encoding="utf-8")
    for argv in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "seed"],
    ):
        subprocess.run(["git", "-C", str(root), *argv], check=True)


def test_capture_on_localhost_records_the_checkout_and_an_unreachable_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A project whose playbooks and roles are this checkout's, with its runner files under tmp.
    root = tmp_path / "project"
    root.mkdir()
    for name in ("ansible.cfg", "maintenance.yml", "playbooks", "roles", "plugins", "group_vars"):
        (root / name).symlink_to(REPO / name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    _checkout(tmp_path / "checkout")
    (tmp_path / "state" / "protocol_lock").mkdir(parents=True)
    (tmp_path / "state" / "protocol_lock" / "modes.json").write_text('{"a": 1}', encoding="utf-8")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "entry").write_text("x", encoding="utf-8")
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "state_manifest_python": sys.executable,
        "mw_project_root": str(tmp_path / "checkout"),
        "mw_protocol_tree": "proto",
        "mw_state_dir": str(tmp_path / "state"),
        "mw_ci_cache_dir": str(tmp_path / "cache"),
    }
    control = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    # Nothing listens on port 1: the connection is refused at once.
    ghost = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {"localhost": control},
                    "children": {
                        "protocol_hosts": {"hosts": {"here": local, "ghost": ghost}},
                        "ci_runners": {"hosts": {"here": {}}},
                    },
                }
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out" / "state.json"

    assert capture_state(Project(root), inventory, out) == out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    state = load_state(out)
    assert state["inventory"] == [str(inventory)]
    assert state["hosts"]["ghost"] == {"unreachable": True}
    here = state["hosts"]["here"]
    assert sorted(here["files"]) == ["proto/protocol-18/hooks.yml", "scripts/validation/x.sh"]
    script = here["files"]["scripts/validation/x.sh"]
    assert script["sha256"] == hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    assert {"mode", "owner", "group"} <= set(script)
    assert here["git"]["clean"] is True
    assert len(here["git"]["head"]) == 40
    assert here["locks"] == {str(tmp_path / "state" / "protocol_lock" / "modes.json"): {"a": 1}}
    assert here["caches"]["ci_cache"]["files"] == 1
    assert set(here["units"]) == {"ci-runner.service", "ci-scheduler.timer"}
    assert "localhost" not in state["hosts"]

    # In check mode the same capture is written, and nothing counts as changed.
    rehearsed = tmp_path / "out" / "rehearsed.json"
    result = run_playbook(
        Project(root),
        "playbooks/state.yml",
        private_dir=tmp_path / "runner",
        inventory=inventory,
        extravars={"state_manifest_out": str(rehearsed)},
        check=True,
        diff=True,
    )
    assert result.succeeded
    assert result.changed == 0
    assert diff_states(state, load_state(rehearsed)) == [
        Difference("ghost", "host", "", "unreachable", "unreachable")
    ]
