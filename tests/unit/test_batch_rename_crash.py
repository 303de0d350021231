"""mw_batch_rename as a real process: killed at every rename, then recovered; and under Ansible.

Each crash test runs the module file with MW_FAULT_KILL_AFTER_RENAMES=N, which makes it SIGKILL
itself right after its Nth rename syscall (both rename passes, then the replace of each
reference file). The next run must leave exactly the fully renamed tree (roll forward) or
exactly the original tree (roll back), hidden files included. Recoveries of an applied batch
run as a process too, to check what the module reports; those of a revert run in-process,
which is faster and exercises the same code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.batch_rename_helpers import (
    BIN,
    LIBRARY,
    load_module,
    make_tree,
    run_module_process,
    snapshot,
)

mwb = load_module()

ORIGINAL: dict[str, str | bytes] = {
    "scripts/validate-p18-evidence.sh": "#!/bin/sh\n./scripts/validate-p20-gates.sh\n",
    "scripts/validate-p20-gates.sh": "gates 20\n",
    "scripts/validate-p21-gates.sh": "gates 21\n",
    "scripts/validate-p22-x.sh": "x22\n",
    "scripts/validate-p23-x.sh": "x23\n",
    "scripts/legacy/check-p18.sh": "legacy\n",
    "scripts/validation/README": "validators live here\n",
    "hooks/pre-commit": (
        "validate-p18-evidence.sh\nvalidate-p20-gates.sh validate-p21-gates.sh\ncheck-p18.sh\n"
    ),
    "protocols/protocol-22.md": "Run `validate-p22-x.sh` then `validate-p23-x.sh`.\n",
    "protocols/untouched.md": "nothing here\n",
}

# Written out by hand rather than computed, so that the module is checked against intent.
APPLIED: dict[str, str | bytes] = {
    "scripts/validate-p19-evidence.sh": "#!/bin/sh\n./scripts/validate-p21-gates.sh\n",
    "scripts/validate-p21-gates.sh": "gates 20\n",
    "scripts/validate-p22-gates.sh": "gates 21\n",
    "scripts/validate-p23-x.sh": "x22\n",
    "scripts/validate-p22-x.sh": "x23\n",
    "scripts/validation/check-p18-v2.sh": "legacy\n",
    "scripts/validation/README": "validators live here\n",
    "hooks/pre-commit": (
        "validate-p19-evidence.sh\nvalidate-p21-gates.sh validate-p22-gates.sh\ncheck-p18-v2.sh\n"
    ),
    "protocols/protocol-22.md": "Run `validate-p23-x.sh` then `validate-p22-x.sh`.\n",
    "protocols/untouched.md": "nothing here\n",
}

RENAMES = [
    {"src": "scripts/validate-p18-evidence.sh", "dest": "scripts/validate-p19-evidence.sh"},
    {"src": "scripts/validate-p20-gates.sh", "dest": "scripts/validate-p21-gates.sh"},
    {"src": "scripts/validate-p21-gates.sh", "dest": "scripts/validate-p22-gates.sh"},
    {"src": "scripts/validate-p22-x.sh", "dest": "scripts/validate-p23-x.sh"},
    {"src": "scripts/validate-p23-x.sh", "dest": "scripts/validate-p22-x.sh"},
    {"src": "scripts/legacy/check-p18.sh", "dest": "scripts/validation/check-p18-v2.sh"},
]
REFERENCE_PATHS = ["hooks", "protocols", "scripts"]
REFERENCE_FILES = 3
SYSCALLS = 2 * len(RENAMES) + REFERENCE_FILES
KILL_POINTS = range(SYSCALLS + 1)


def build(base: Path, files: dict[str, str | bytes]) -> Path:
    root = base / "root"
    make_tree(root, files)
    (root / "scripts" / "legacy").mkdir(exist_ok=True)
    return root


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The tree to work on, and the fingerprints of its original and fully renamed forms."""
    original = snapshot(build(tmp_path / "want-original", ORIGINAL))
    applied = snapshot(build(tmp_path / "want-applied", APPLIED))
    return build(tmp_path / "work", ORIGINAL), original, applied


def module_args(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "root": str(root),
        "renames": RENAMES,
        "reference_paths": REFERENCE_PATHS,
        "batch_id": "crash",
        "journal_dir": str(root.parent / "journal"),
        **extra,
    }


def kill_run(tmp_path: Path, root: Path, kill_after: int, **extra: Any) -> None:
    status, _ = run_module_process(
        tmp_path,
        module_args(root, **extra),
        env={"MW_FAULT_KILL_AFTER_RENAMES": str(kill_after)},
    )
    assert status == -signal.SIGKILL


def test_fixture_batch_counts_its_syscalls(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]]
) -> None:
    root, _, applied = trees

    status, result = run_module_process(tmp_path, module_args(root))

    assert status == 0
    assert result is not None
    assert len(result["renamed"]) == len(RENAMES)
    assert len(result["references_updated"]) == REFERENCE_FILES
    assert snapshot(root) == applied


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_killed_apply_is_rolled_forward(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]], kill_after: int
) -> None:
    root, _, applied = trees
    kill_run(tmp_path, root, kill_after)

    status, result = run_module_process(tmp_path, module_args(root))

    assert status == 0, result
    assert result is not None
    assert result["recovered"] == "forward"
    assert snapshot(root) == applied


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_killed_apply_is_rolled_back(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]], kill_after: int
) -> None:
    root, original, _ = trees
    kill_run(tmp_path, root, kill_after)

    status, result = run_module_process(tmp_path, module_args(root, on_incomplete="back"))

    assert status == 1
    assert result is not None
    assert result["recovered"] == "back"
    assert "not applied" in result["msg"]
    assert snapshot(root) == original


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_killed_revert_is_finished_by_the_next_revert(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]], kill_after: int
) -> None:
    root, original, _ = trees
    mwb.run_batch(mwb.BatchParams(**module_args(root)))
    kill_run(tmp_path, root, kill_after, state="reverted")

    outcome = mwb.run_batch(mwb.BatchParams(**module_args(root, state="reverted")))

    assert outcome.recovered == "back"
    assert snapshot(root) == original


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_killed_revert_can_be_rolled_forward_again(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]], kill_after: int
) -> None:
    root, _, applied = trees
    mwb.run_batch(mwb.BatchParams(**module_args(root)))
    kill_run(tmp_path, root, kill_after, state="reverted")

    outcome = mwb.run_batch(mwb.BatchParams(**module_args(root)))

    assert outcome.recovered == "forward"
    assert snapshot(root) == applied


def test_rerun_after_recovery_changes_nothing(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]]
) -> None:
    root, _, applied = trees
    kill_run(tmp_path, root, len(RENAMES))
    run_module_process(tmp_path, module_args(root))

    status, result = run_module_process(tmp_path, module_args(root))

    assert status == 0
    assert result is not None
    assert result["changed"] is False
    assert result["recovered"] is None
    assert snapshot(root) == applied


def test_rejected_batch_fails_with_every_error(tmp_path: Path) -> None:
    root = build(tmp_path / "work", ORIGINAL)
    renames = [*RENAMES, {"src": "scripts/gone.sh", "dest": "scripts/new.sh"}, {"src": "x"}]

    status, result = run_module_process(tmp_path, module_args(root, renames=renames))

    assert status == 1
    assert result is not None
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["errors"] == [
        "renames[6] (src='scripts/gone.sh', dest='scripts/new.sh'): source does not exist",
        "renames[7]: missing key 'dest'",
    ]
    assert "renames[6]" in result["msg"]
    assert "renames[7]" in result["msg"]


def test_missing_source_fails_naming_the_entry(tmp_path: Path) -> None:
    root = build(tmp_path / "work", ORIGINAL)
    renames = [*RENAMES, {"src": "scripts/gone.sh", "dest": "scripts/new.sh"}]

    status, result = run_module_process(tmp_path, module_args(root, renames=renames))

    assert status == 1
    assert result is not None
    assert result["errors"] == [
        "renames[6] (src='scripts/gone.sh', dest='scripts/new.sh'): source does not exist",
    ]
    assert snapshot(root) == snapshot(build(tmp_path / "want", ORIGINAL))


# --- through Ansible -------------------------------------------------------------------------


def ansible(tmp_path: Path, root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(
        [
            str(BIN / "ansible"),
            "localhost",
            "--inventory",
            "localhost,",
            "--connection",
            "local",
            "--module-path",
            str(LIBRARY),
            "--module-name",
            "mw_batch_rename",
            "--args",
            json.dumps(module_args(root)),
            "--extra-vars",
            f"ansible_python_interpreter={sys.executable}",
            *options,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=300,
    )


def tree_result(tree_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((tree_dir / "localhost").read_text())
    return result


def test_module_runs_under_ansible_with_check_diff_then_for_real(
    tmp_path: Path, trees: tuple[Path, dict[str, str], dict[str, str]]
) -> None:
    root, original, applied = trees

    checked = ansible(tmp_path, root, "--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "scripts/validate-p22-x.sh -> scripts/validate-p23-x.sh" in checked.stdout
    assert "+Run `validate-p23-x.sh` then `validate-p22-x.sh`." in checked.stdout
    assert snapshot(root) == original
    assert not (root.parent / "journal").exists()

    applied_run = ansible(tmp_path, root, "--tree", str(tmp_path / "first"))
    assert applied_run.returncode == 0, applied_run.stdout + applied_run.stderr
    first = tree_result(tmp_path / "first")
    assert first["changed"] is True
    assert len(first["renamed"]) == len(RENAMES)
    assert snapshot(root) == applied

    rerun = ansible(tmp_path, root, "--tree", str(tmp_path / "second"))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert tree_result(tmp_path / "second")["changed"] is False
