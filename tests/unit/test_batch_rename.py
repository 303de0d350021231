"""mw_batch_rename: validation, renames, references, idempotence, revert, check and diff mode."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.batch_rename_helpers import load_module, make_tree, snapshot

mwb = load_module()

HOOK = (
    "#!/bin/sh\n"
    "./scripts/validate-p18-evidence.sh --strict\n"
    "validate-p18-evidence.sh\n"
    "run `validate-p18-evidence.sh` first\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def params(root: Path, journal_dir: Path, renames: Any, **extra: Any) -> Any:
    return mwb.BatchParams(
        root=str(root),
        renames=renames,
        batch_id=extra.pop("batch_id", "b1"),
        journal_dir=str(journal_dir),
        **extra,
    )


def run(root: Path, journal_dir: Path, renames: Any, **extra: Any) -> Any:
    check_mode = extra.pop("check_mode", False)
    want_diff = extra.pop("want_diff", False)
    return mwb.run_batch(
        params(root, journal_dir, renames, **extra), check_mode=check_mode, want_diff=want_diff
    )


def pairs(*items: tuple[str, str]) -> list[dict[str, str]]:
    return [{"src": src, "dest": dest} for src, dest in items]


def contents(root: Path, rel: str) -> str:
    return (root / rel).read_text()


# --- renames ---------------------------------------------------------------------------------


def test_simple_batch_renames_files_and_keeps_contents(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"scripts/a.sh": "A", "scripts/b.sh": "B"})

    run(
        root, journal_dir, pairs(("scripts/a.sh", "scripts/x.sh"), ("scripts/b.sh", "scripts/y.sh"))
    )

    assert sorted(p.name for p in (root / "scripts").iterdir()) == ["x.sh", "y.sh"]
    assert contents(root, "scripts/x.sh") == "A"
    assert contents(root, "scripts/y.sh") == "B"


def test_simple_batch_reports_renames_and_journal(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"scripts/a.sh": "A"})

    outcome = run(root, journal_dir, pairs(("scripts/a.sh", "scripts/x.sh")))

    assert outcome.changed is True
    assert outcome.renamed == [{"src": "scripts/a.sh", "dest": "scripts/x.sh"}]
    assert outcome.recovered is None
    assert outcome.journal == str(journal_dir / "b1.json")
    assert json.loads((journal_dir / "b1.json").read_text())["phase"] == "complete"


def test_journal_dir_is_created_private(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"a.sh": "A"})

    run(root, journal_dir, pairs(("a.sh", "b.sh")))

    assert journal_dir.stat().st_mode & 0o777 == 0o700


def test_chain_moves_each_file_one_step(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/p18.sh": "18", "s/p19.sh": "19"})

    run(root, journal_dir, pairs(("s/p18.sh", "s/p19.sh"), ("s/p19.sh", "s/p20.sh")))

    assert sorted(p.name for p in (root / "s").iterdir()) == ["p19.sh", "p20.sh"]
    assert contents(root, "s/p19.sh") == "18"
    assert contents(root, "s/p20.sh") == "19"


def test_swap_exchanges_two_files(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/b.sh": "B"})

    run(root, journal_dir, pairs(("s/a.sh", "s/b.sh"), ("s/b.sh", "s/a.sh")))

    assert contents(root, "s/a.sh") == "B"
    assert contents(root, "s/b.sh") == "A"
    assert sorted(p.name for p in (root / "s").iterdir()) == ["a.sh", "b.sh"]


def test_three_cycle_rotates_files(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a": "A", "s/b": "B", "s/c": "C"})

    run(root, journal_dir, pairs(("s/a", "s/b"), ("s/b", "s/c"), ("s/c", "s/a")))

    assert [contents(root, f"s/{name}") for name in "abc"] == ["C", "A", "B"]
    assert sorted(p.name for p in (root / "s").iterdir()) == ["a", "b", "c"]


def test_move_into_another_directory(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"legacy/check.sh": "L", "validation/keep.sh": "K"})

    run(root, journal_dir, pairs(("legacy/check.sh", "validation/check.sh")))

    assert contents(root, "validation/check.sh") == "L"
    assert not (root / "legacy" / "check.sh").exists()


def test_symlink_inside_root_is_renamed_itself(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/real.sh": "R"})
    (root / "s" / "link.sh").symlink_to("real.sh")

    run(root, journal_dir, pairs(("s/link.sh", "s/alias.sh")))

    assert (root / "s" / "alias.sh").readlink() == Path("real.sh")
    assert not (root / "s" / "link.sh").is_symlink()


def test_empty_batch_changes_nothing(root: Path, journal_dir: Path) -> None:
    outcome = run(root, journal_dir, [])

    assert outcome.changed is False
    assert not journal_dir.exists()


# --- references ------------------------------------------------------------------------------


def test_references_replace_whole_words(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"scripts/validate-p18-evidence.sh": "x", "hooks/pre-commit": HOOK})

    outcome = run(
        root,
        journal_dir,
        pairs(("scripts/validate-p18-evidence.sh", "scripts/validate-p19-evidence.sh")),
        reference_paths=["hooks"],
    )

    assert contents(root, "hooks/pre-commit") == HOOK.replace("p18", "p19")
    assert outcome.references_updated == [{"path": "hooks/pre-commit", "replacements": 3}]


@pytest.mark.parametrize(
    "text",
    [
        "validate-p18-evidence.sh.bak",
        "old-validate-p18-evidence.sh",
        "validate-p18-evidence.shx",
        "xvalidate-p18-evidence.sh",
        "validate-p18-evidence.sh_2",
        "validate-p18-evidence.sh+1",
        "see validate-p18-evidence.sh.",
        "validate-p18-evidence",
    ],
)
def test_references_leave_partial_words_alone(root: Path, journal_dir: Path, text: str) -> None:
    make_tree(root, {"s/validate-p18-evidence.sh": "x", "hooks/h": text + "\n"})

    outcome = run(
        root,
        journal_dir,
        pairs(("s/validate-p18-evidence.sh", "s/validate-p19-evidence.sh")),
        reference_paths=["hooks"],
    )

    assert contents(root, "hooks/h") == text + "\n"
    assert outcome.references_updated == []


def test_references_follow_chains_in_one_pass(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/p18.sh": "", "s/p19.sh": "", "hooks/h": "p18.sh then p19.sh\n"})

    run(
        root,
        journal_dir,
        pairs(("s/p18.sh", "s/p19.sh"), ("s/p19.sh", "s/p20.sh")),
        reference_paths=["hooks"],
    )

    assert contents(root, "hooks/h") == "p19.sh then p20.sh\n"


def test_reference_file_that_is_renamed_is_updated_at_its_new_path(
    root: Path, journal_dir: Path
) -> None:
    make_tree(root, {"s/a.sh": "exec ./b.sh\n", "s/b.sh": "echo b\n"})

    run(
        root,
        journal_dir,
        pairs(("s/a.sh", "s/a2.sh"), ("s/b.sh", "s/b2.sh")),
        reference_paths=["s"],
    )

    assert contents(root, "s/a2.sh") == "exec ./b2.sh\n"
    assert sorted(p.name for p in (root / "s").iterdir()) == ["a2.sh", "b2.sh"]


def test_reference_file_keeps_its_mode(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "", "hooks/h": "a.sh\n"})
    (root / "hooks" / "h").chmod(0o750)

    run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")), reference_paths=["hooks"])

    assert (root / "hooks" / "h").stat().st_mode & 0o7777 == 0o750


def test_references_skip_git_symlinks_and_binary_files(root: Path, journal_dir: Path) -> None:
    make_tree(
        root,
        {
            "s/a.sh": "",
            "repo/.git/config": "a.sh\n",
            "repo/blob": b"a.sh\0\n",
            "repo/text": "a.sh\n",
        },
    )
    (root / "repo" / "link").symlink_to("text")

    run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")), reference_paths=["repo"])

    assert contents(root, "repo/.git/config") == "a.sh\n"
    assert (root / "repo" / "blob").read_bytes() == b"a.sh\0\n"
    assert contents(root, "repo/text") == "b.sh\n"
    assert (root / "repo" / "link").is_symlink()


def test_replace_names_counts_each_occurrence() -> None:
    data, count = mwb.replace_names(b"a.sh a.sh,b.sh a.sh.bak", {b"a.sh": b"c.sh"})

    assert data == b"c.sh c.sh,b.sh a.sh.bak"
    assert count == 2


# --- idempotence -----------------------------------------------------------------------------


def test_rerun_of_completed_batch_changes_nothing(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/b.sh": "B", "hooks/h": "a.sh b.sh\n"})
    batch = pairs(("s/a.sh", "s/b.sh"), ("s/b.sh", "s/a.sh"))
    run(root, journal_dir, batch, reference_paths=["hooks"])
    after_first = snapshot(root)

    outcome = run(root, journal_dir, batch, reference_paths=["hooks"])

    assert outcome.changed is False
    assert outcome.renamed == []
    assert snapshot(root) == after_first


def test_applied_tree_without_journal_changes_nothing(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/x.sh": "A", "s/y.sh": "B"})
    before = snapshot(root)

    outcome = run(root, journal_dir, pairs(("s/a.sh", "s/x.sh"), ("s/b.sh", "s/y.sh")))

    assert outcome.changed is False
    assert snapshot(root) == before


def test_applied_tree_without_journal_warns_about_old_names(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/x.sh": "A", "hooks/h": "a.sh\n"})

    outcome = run(root, journal_dir, pairs(("s/a.sh", "s/x.sh")), reference_paths=["hooks"])

    assert outcome.changed is False
    assert len(outcome.warnings) == 1
    assert "'hooks/h'" in outcome.warnings[0]
    assert contents(root, "hooks/h") == "a.sh\n"


def test_partly_applied_tree_without_journal_is_rejected(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/x.sh": "A", "s/b.sh": "B"})
    before = snapshot(root)

    with pytest.raises(mwb.BatchError) as caught:
        run(root, journal_dir, pairs(("s/a.sh", "s/x.sh"), ("s/b.sh", "s/y.sh")))

    assert "renames[0] (src='s/a.sh', dest='s/x.sh'): source does not exist" in caught.value.errors
    assert snapshot(root) == before


# --- revert ----------------------------------------------------------------------------------


def test_revert_restores_the_original_tree(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/b.sh": "B", "s/c.sh": "C", "hooks/h": "a.sh b.sh c.sh\n"})
    original = snapshot(root)
    batch = pairs(("s/a.sh", "s/b.sh"), ("s/b.sh", "s/a.sh"), ("s/c.sh", "s/d.sh"))
    run(root, journal_dir, batch, reference_paths=["hooks"])

    outcome = run(root, journal_dir, batch, reference_paths=["hooks"], state="reverted")

    assert outcome.changed is True
    assert {"src": "s/d.sh", "dest": "s/c.sh"} in outcome.renamed
    assert snapshot(root) == original


def test_second_revert_changes_nothing(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "hooks/h": "a.sh\n"})
    batch = pairs(("s/a.sh", "s/b.sh"))
    run(root, journal_dir, batch, reference_paths=["hooks"])
    run(root, journal_dir, batch, reference_paths=["hooks"], state="reverted")
    reverted = snapshot(root)

    outcome = run(root, journal_dir, batch, reference_paths=["hooks"], state="reverted")

    assert outcome.changed is False
    assert snapshot(root) == reverted


def test_revert_without_journal_of_untouched_tree_is_a_noop(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})

    outcome = run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")), state="reverted")

    assert outcome.changed is False
    assert contents(root, "s/a.sh") == "A"


def test_apply_after_revert_applies_again(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})
    batch = pairs(("s/a.sh", "s/b.sh"))
    run(root, journal_dir, batch)
    run(root, journal_dir, batch, state="reverted")

    outcome = run(root, journal_dir, batch)

    assert outcome.changed is True
    assert contents(root, "s/b.sh") == "A"


def test_revert_refuses_reference_edited_after_apply(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "hooks/h": "a.sh\n"})
    batch = pairs(("s/a.sh", "s/b.sh"))
    run(root, journal_dir, batch, reference_paths=["hooks"])
    (root / "hooks" / "h").write_text("b.sh and a local edit\n")
    before = snapshot(root)

    with pytest.raises(mwb.BatchError) as caught:
        run(root, journal_dir, batch, reference_paths=["hooks"], state="reverted")

    assert "'hooks/h'" in caught.value.message()
    assert snapshot(root) == before


def test_revert_refuses_to_overwrite_a_recreated_source(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})
    batch = pairs(("s/a.sh", "s/b.sh"))
    run(root, journal_dir, batch)
    (root / "s" / "a.sh").write_text("new file")
    before = snapshot(root)

    with pytest.raises(mwb.BatchError) as caught:
        run(root, journal_dir, batch, state="reverted")

    assert "renames[0] (src='s/a.sh', dest='s/b.sh')" in caught.value.message()
    assert snapshot(root) == before


# --- check and diff mode ---------------------------------------------------------------------


def test_check_mode_touches_nothing(tmp_path: Path, root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/b.sh": "B", "hooks/h": "a.sh b.sh\n"})
    before = snapshot(tmp_path)

    run(
        root,
        journal_dir,
        pairs(("s/a.sh", "s/b.sh"), ("s/b.sh", "s/c.sh")),
        reference_paths=["hooks"],
        check_mode=True,
        want_diff=True,
    )

    assert snapshot(tmp_path) == before
    assert not journal_dir.exists()


def test_check_mode_reports_what_would_change(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "hooks/h": "a.sh a.sh\n", "hooks/other": "nothing\n"})

    outcome = run(
        root, journal_dir, pairs(("s/a.sh", "s/b.sh")), reference_paths=["hooks"], check_mode=True
    )

    assert outcome.changed is True
    assert outcome.renamed == [{"src": "s/a.sh", "dest": "s/b.sh"}]
    assert outcome.references_updated == [{"path": "hooks/h", "replacements": 2}]


def test_check_mode_after_apply_reports_no_change(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})
    batch = pairs(("s/a.sh", "s/b.sh"))
    run(root, journal_dir, batch)

    outcome = run(root, journal_dir, batch, check_mode=True)

    assert outcome.changed is False


def test_diff_lists_renames_and_reference_contents(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "hooks/h": "run a.sh\n"})

    outcome = run(
        root,
        journal_dir,
        pairs(("s/a.sh", "s/b.sh")),
        reference_paths=["hooks"],
        check_mode=True,
        want_diff=True,
    )

    renames, hook = outcome.diff
    assert renames["after"] == "s/a.sh -> s/b.sh\n"
    assert hook == {
        "before_header": "hooks/h",
        "after_header": "hooks/h",
        "before": "run a.sh\n",
        "after": "run b.sh\n",
    }


def test_diff_of_large_file_shows_changed_lines_only(root: Path, journal_dir: Path) -> None:
    filler = "".join(f"line {number}\n" for number in range(20000))
    make_tree(root, {"s/a.sh": "A", "hooks/big": filler + "call a.sh\n"})

    outcome = run(
        root,
        journal_dir,
        pairs(("s/a.sh", "s/b.sh")),
        reference_paths=["hooks"],
        check_mode=True,
        want_diff=True,
    )

    big = outcome.diff[1]
    assert "changed lines only" in big["before_header"]
    assert big["before"] == "20001: call a.sh\n"
    assert big["after"] == "20001: call b.sh\n"


def test_no_diff_when_nothing_changes(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/b.sh": "A"})

    outcome = run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")), want_diff=True)

    assert outcome.diff == []


# --- rejected batches ------------------------------------------------------------------------

OUTSIDE = "outside"

BAD_BATCHES: dict[str, tuple[Any, dict[str, Any], list[str]]] = {
    # name: (renames, extra params, fragments the message must contain)
    "missing source": (
        pairs(("s/a.sh", "s/x.sh"), ("s/nope.sh", "s/y.sh")),
        {},
        ["renames[1] (src='s/nope.sh', dest='s/y.sh')", "source does not exist"],
    ),
    "duplicate target": (
        pairs(("s/a.sh", "s/x.sh"), ("s/b.sh", "s/x.sh")),
        {},
        ["renames[1] (src='s/b.sh', dest='s/x.sh')", "target is also the target of renames[0]"],
    ),
    "existing target": (
        pairs(("s/a.sh", "s/b.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/b.sh')", "target already exists"],
    ),
    "self rename": (
        pairs(("s/a.sh", "s/a.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/a.sh')", "source and target are the same"],
    ),
    "dot-dot traversal": (
        pairs(("s/a.sh", "s/../../escaped.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/../../escaped.sh')", "contains '..'"],
    ),
    "absolute path": (
        pairs(("s/a.sh", "/srv/abs.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='/srv/abs.sh')", "is absolute"],
    ),
    "symlink escape": (
        pairs(("s/a.sh", "s/out/x.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/out/x.sh')", "leaves root through a symlink"],
    ),
    "source symlink pointing outside": (
        pairs(("s/outlink.sh", "s/z.sh")),
        {},
        ["renames[0] (src='s/outlink.sh', dest='s/z.sh')", "symlink pointing outside root"],
    ),
    "empty name": (
        pairs(("", "s/x.sh")),
        {},
        ["renames[0] (src='', dest='s/x.sh')", "src is empty"],
    ),
    "empty segment": (
        pairs(("s/a.sh", "s//x.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s//x.sh')", "empty or '.' segment"],
    ),
    "name with a space": (
        pairs(("s/a.sh", "s/my script.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/my script.sh')", "is not a valid name"],
    ),
    "unicode name": (
        pairs(("s/a.sh", "s/välidate.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/välidate.sh')", "is not a valid name"],
    ),
    "control character": (
        pairs(("s/a.sh", "s/a\tb.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/a\\tb.sh')", "is not a valid name"],
    ),
    "hidden name": (
        pairs(("s/a.sh", "s/.hidden.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='s/.hidden.sh')", "is not a valid name"],
    ),
    "manifest not a list": (
        {"src": "s/a.sh", "dest": "s/x.sh"},
        {},
        ["renames must be a list", "got dict"],
    ),
    "entry not a mapping": (
        ["s/a.sh"],
        {},
        ["renames[0]: must be a mapping with keys 'src' and 'dest', got str"],
    ),
    "entry missing a key": (
        [{"src": "s/a.sh"}],
        {},
        ["renames[0]: missing key 'dest'"],
    ),
    "entry with a misspelt key": (
        [{"src": "s/a.sh", "dst": "s/x.sh", "dest": "s/x.sh"}],
        {},
        ["renames[0]: unexpected key(s) 'dst'"],
    ),
    "entry with a non-string path": (
        [{"src": 18, "dest": "s/x.sh"}],
        {},
        ["renames[0] (src=18, dest='s/x.sh')", "src must be a string, got int"],
    ),
    "duplicate entries": (
        pairs(("s/a.sh", "s/x.sh"), ("s/a.sh", "s/x.sh")),
        {},
        ["renames[1] (src='s/a.sh', dest='s/x.sh')", "duplicate of renames[0]"],
    ),
    "same source twice": (
        pairs(("s/a.sh", "s/x.sh"), ("s/a.sh", "s/y.sh")),
        {},
        ["renames[1] (src='s/a.sh', dest='s/y.sh')", "source is also renamed by renames[0]"],
    ),
    "ambiguous basename with references": (
        pairs(("s/a.sh", "s/x.sh"), ("t/a.sh", "t/y.sh")),
        {"reference_paths": ["hooks"]},
        ["renames[1] (src='t/a.sh', dest='t/y.sh')", "references to it would be ambiguous"],
    ),
    "missing target directory": (
        pairs(("s/a.sh", "nowhere/x.sh")),
        {},
        ["renames[0] (src='s/a.sh', dest='nowhere/x.sh')", "'nowhere' does not exist"],
    ),
    "missing reference path": (
        pairs(("s/a.sh", "s/x.sh")),
        {"reference_paths": ["no-such-dir"]},
        ["reference_paths[0] 'no-such-dir' does not exist"],
    ),
    "reference paths not a list": (
        pairs(("s/a.sh", "s/x.sh")),
        {"reference_paths": "hooks"},
        ["reference_paths must be a list of paths, got str"],
    ),
    "directory as source": (
        pairs(("t", "t2")),
        {},
        ["renames[0] (src='t', dest='t2')", "not a regular file or a symlink"],
    ),
}


@pytest.fixture
def bad_tree(tmp_path: Path, root: Path) -> Path:
    make_tree(
        root,
        {"s/a.sh": "A", "s/b.sh": "B", "t/a.sh": "TA", "hooks/h": "a.sh\n"},
    )
    outside = tmp_path / OUTSIDE
    outside.mkdir()
    (outside / "secret").write_text("S")
    (root / "s" / "out").symlink_to(outside)
    (root / "s" / "outlink.sh").symlink_to(outside / "secret")
    return root


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batch_is_rejected_naming_the_entry(
    tmp_path: Path, bad_tree: Path, journal_dir: Path, case: str
) -> None:
    renames, extra, fragments = BAD_BATCHES[case]
    before = snapshot(tmp_path)

    with pytest.raises(mwb.BatchError) as caught:
        run(bad_tree, journal_dir, renames, **extra)

    message = caught.value.message()
    for fragment in fragments:
        assert fragment in message
    assert snapshot(tmp_path) == before


def test_every_problem_is_reported_together(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})

    with pytest.raises(mwb.BatchError) as caught:
        run(root, journal_dir, pairs(("s/a.sh", "s/bad name"), ("s/gone.sh", "s/x.sh"), ("", "y")))

    problems = caught.value.errors
    assert [problem.split(" ", 1)[0].rstrip(":") for problem in problems] == [
        "renames[0]",
        "renames[1]",
        "renames[2]",
    ]
    assert "source does not exist" in problems[1]
    for index in range(3):
        assert f"renames[{index}]" in caught.value.message()


def test_journal_dir_inside_root_is_rejected(root: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})

    with pytest.raises(mwb.BatchError, match="journal_dir"):
        run(root, root / "journal", pairs(("s/a.sh", "s/b.sh")))


def test_batch_id_reused_for_other_renames_is_rejected(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/c.sh": "C"})
    run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")))
    before = snapshot(root)

    with pytest.raises(mwb.BatchError, match="records a different batch"):
        run(root, journal_dir, pairs(("s/c.sh", "s/d.sh")))

    assert snapshot(root) == before


def test_run_while_another_holds_the_lock_is_rejected(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A"})
    journal_dir.mkdir()
    with (journal_dir / "b1.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        with pytest.raises(mwb.BatchError, match="another run"):
            run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")))

    assert contents(root, "s/a.sh") == "A"


def test_fault_injection_value_must_be_a_number() -> None:
    with pytest.raises(mwb.BatchError, match="MW_FAULT_KILL_AFTER_RENAMES"):
        mwb.FaultInjector.from_environ({"MW_FAULT_KILL_AFTER_RENAMES": "half"})


def test_leftover_temporary_name_is_rejected(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.sh": "A", "s/.mwtmp-b1-0": "stale"})

    with pytest.raises(mwb.BatchError, match="temporary path"):
        run(root, journal_dir, pairs(("s/a.sh", "s/b.sh")))


# --- the name rule ---------------------------------------------------------------------------


def test_valid_edge_names_are_accepted(root: Path, journal_dir: Path) -> None:
    make_tree(root, {"s/a.b.c.sh": "1", "s/x+y": "2", "s/A9": "3", "s/u_v-w": "4"})
    batch = pairs(
        ("s/a.b.c.sh", "s/validate-p19.v1.2.sh"),
        ("s/x+y", "s/c++_tool+x"),
        ("s/A9", "s/9A"),
        ("s/u_v-w", "s/under_score-dash.--"),
    )

    run(root, journal_dir, batch)

    for new, data in [
        ("validate-p19.v1.2.sh", "1"),
        ("c++_tool+x", "2"),
        ("9A", "3"),
        ("under_score-dash.--", "4"),
    ]:
        assert contents(root, f"s/{new}") == data


@pytest.mark.parametrize(
    "path", ["a", "A.b", "9", "a-b_c+d.e", "dir/sub/file.sh", "x" * 255, "a..b", "a.-"]
)
def test_name_rule_accepts(path: str) -> None:
    assert mwb.check_name_path(path, "dest") == []


@pytest.mark.parametrize(
    "path",
    [
        "",
        "-a",
        "_a",
        "+a",
        ".a",
        "a b",
        "a\nb",
        "é",
        "a/",
        "/a",
        "a//b",
        "./a",
        "a/../b",
        "..",
        "x" * 256,
        "a*b",
        "a:b",
        "a\\b",
    ],
)
def test_name_rule_rejects(path: str) -> None:
    assert mwb.check_name_path(path, "dest") != []


def test_name_rule_rejects_a_trailing_newline() -> None:
    assert mwb.check_name_path("abc\n", "dest") != []
