"""Tests of the reference-world generator: determinism, misalignments, outputs and scripts."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import tarfile
from typing import TYPE_CHECKING

import pytest
import yaml

from mwctl.world import (
    DEFAULT_PROTOCOLS,
    DEFAULT_SCRIPTS,
    DEFAULT_SEED,
    FIXED_MTIME,
    MAX_SCRIPTS,
    World,
    generate_world,
    write_world,
)

if TYPE_CHECKING:
    from pathlib import Path

OUTPUTS = (
    "cache.txt",
    "checkout.tar.gz",
    "ci_jobs.json",
    "manifest.yml",
    "registry.sql",
    "world.json",
)
SCRIPTS_DIR = "scripts/validation"
TREE = ".cursor/ai-driven-workflow"

# A whole-word name: not preceded or followed by a letter, digit, dot, dash or underscore.
WORD = r"(?<![\w.-]){}(?![\w.-])"


def default_world() -> World:
    return generate_world(DEFAULT_PROTOCOLS, DEFAULT_SCRIPTS, DEFAULT_SEED)


def written(world: World, out_dir: Path) -> dict[str, bytes]:
    write_world(world, out_dir)
    return {name: (out_dir / name).read_bytes() for name in OUTPUTS}


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {member.name: member for member in archive.getmembers()}


def extract(world: World, dest: Path) -> Path:
    write_world(world, dest / "out")
    root = dest / "project"
    root.mkdir()
    # GNU tar, as on the lab's hosts; tarfile's extraction filters differ between 3.11 releases.
    subprocess.run(
        ["tar", "-xzf", str(dest / "out" / "checkout.tar.gz"), "-C", str(root)], check=True
    )
    return root


def run_script(root: Path, name: str, evidence: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", f"{SCRIPTS_DIR}/{name}", "--self-test"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "EVIDENCE_DIR": str(evidence)},
        timeout=30,
    )


def apply_renames(root: Path, world: World) -> None:
    """Rename through temporary names, the way a swap or a chain has to be done."""
    scripts = root / SCRIPTS_DIR
    for entry in world.renames:
        (scripts / entry.source).rename(scripts / f"{entry.source}.moving")
    for entry in world.renames:
        (scripts / f"{entry.source}.moving").rename(scripts / entry.target)


def test_same_parameters_give_identical_bytes(tmp_path: Path) -> None:
    first = written(default_world(), tmp_path / "a")
    second = written(default_world(), tmp_path / "b")
    assert first == second


def test_different_seed_gives_different_world(tmp_path: Path) -> None:
    one = written(default_world(), tmp_path / "a")
    other = written(generate_world(DEFAULT_PROTOCOLS, DEFAULT_SCRIPTS, 2), tmp_path / "b")
    assert one["manifest.yml"] != other["manifest.yml"]
    assert one["world.json"] != other["world.json"]
    assert one["checkout.tar.gz"] != other["checkout.tar.gz"]


def test_small_world_works_and_differs_from_default(tmp_path: Path) -> None:
    small = generate_world([3, 4, 5], 12, 7)
    summary = json.loads(written(small, tmp_path / "small")["world.json"])
    default = json.loads(written(default_world(), tmp_path / "default")["world.json"])
    assert summary["protocols"] == [3, 4, 5]
    assert summary["script_count"] == 12
    assert summary["seed"] == 7
    assert {s["protocol"] for s in summary["scripts"]} == {3, 4, 5}
    assert summary["id"] != default["id"]
    assert default["protocols"] == list(range(18, 24))
    assert default["script_count"] == 96


@pytest.mark.parametrize(
    ("protocols", "scripts"),
    [(DEFAULT_PROTOCOLS, DEFAULT_SCRIPTS), ((3, 4, 5), 12), ((3, 4, 5), 5), ((1, 2, 3, 4), 5)],
)
@pytest.mark.parametrize("seed", range(8))
def test_chain_and_swap_always_present(protocols: tuple[int, ...], scripts: int, seed: int) -> None:
    world = generate_world(protocols, scripts, seed)
    chains = [m for m in world.misalignments if m.kind == "chain"]
    swaps = [m for m in world.misalignments if m.kind == "swap"]
    assert any(len(chain.protocols) >= 3 for chain in chains)
    assert swaps
    by_target = {s.target: s for s in world.scripts}
    for chain in chains:
        # a -> b while b -> c: the file named for each protocol belongs to the next one.
        numbers = chain.protocols
        for named, owner in itertools.pairwise(numbers):
            script = by_target[f"validate-p{owner}-{chain.topic}.sh"]
            assert script.name == f"validate-p{named}-{chain.topic}.sh"
        positions = [world.protocols.index(p) for p in numbers]
        assert all(abs(b - a) == 1 for a, b in itertools.pairwise(positions))
    for swap in swaps:
        first, second = swap.protocols
        assert (
            by_target[f"validate-p{first}-{swap.topic}.sh"].name
            == by_target[f"validate-p{second}-{swap.topic}.sh"].target
        )


def test_about_a_third_misnumbered_and_only_those_in_manifest() -> None:
    world = default_world()
    wrong = [s for s in world.scripts if s.misnumbered]
    # About a third of the scripts: 32 of the default 96 (the plan's 30+).
    assert 30 <= len(wrong) <= 34
    assert {(e.protocol, e.source, e.target) for e in world.renames} == {
        (s.protocol, s.name, s.target) for s in wrong
    }
    assert all(
        s.name == f"validate-p{s.protocol}-{s.topic}.sh"
        for s in world.scripts
        if s.kind == "aligned"
    )


def test_manifest_sources_exist_and_targets_do_not_collide(tmp_path: Path) -> None:
    world = default_world()
    files = written(world, tmp_path)
    members = tar_members(files["checkout.tar.gz"])
    manifest = yaml.safe_load(files["manifest.yml"])["mw_rename_manifest"]
    assert manifest
    present = {name.rsplit("/", 1)[1] for name in members if name.startswith(SCRIPTS_DIR + "/")}
    sources = {entry["from"] for entry in manifest}
    assert sources <= present
    kept = present - sources
    targets = [entry["to"] for entry in manifest]
    assert len(targets) == len(set(targets))
    assert not set(targets) & kept
    assert (present - sources) | set(targets) == {s.target for s in world.scripts}


def test_archive_is_reproducible_and_keeps_modes(tmp_path: Path) -> None:
    members = tar_members(written(default_world(), tmp_path)["checkout.tar.gz"])
    assert ".gitignore" in members
    assert "README.md" in members
    assert all(not name.startswith(("/", "./")) for name in members)
    assert all(m.mtime == FIXED_MTIME and m.uid == 0 and m.gid == 0 for m in members.values())
    scripts = [
        m for name, m in members.items() if name.startswith(SCRIPTS_DIR + "/") and m.isfile()
    ]
    assert len(scripts) == DEFAULT_SCRIPTS
    assert all(m.mode == 0o755 for m in scripts)
    assert members[".gitignore"].mode == 0o644
    assert (tmp_path / "checkout.tar.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime


def test_gitignore_ignores_evidence(tmp_path: Path) -> None:
    root = extract(default_world(), tmp_path)
    assert "evidence/" in (root / ".gitignore").read_text().splitlines()


def test_self_test_fails_for_misnumbered_and_passes_after_renames(tmp_path: Path) -> None:
    world = default_world()
    root = extract(world, tmp_path)
    evidence = tmp_path / "evidence"

    for script in world.scripts:
        result = run_script(root, script.name, evidence)
        if script.misnumbered:
            assert result.returncode == 1, script
            expected = f"numbering mismatch: {script.name} belongs to protocol {script.protocol}"
            assert expected in result.stdout + result.stderr
        else:
            assert result.returncode == 0, result.stderr
        record = json.loads(
            (evidence / script.name.removesuffix(".sh")).with_suffix(".json").read_text()
        )
        assert record["name"] == script.name
        assert record["protocol"] == script.protocol
        assert record["status"] == ("fail" if script.misnumbered else "pass")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["timestamp"])

    apply_renames(root, world)
    for script in world.scripts:
        result = run_script(root, script.target, evidence)
        assert result.returncode == 0, result.stderr


def test_script_without_flag_checks_protocol_tree_and_defaults_evidence_dir(tmp_path: Path) -> None:
    world = default_world()
    root = extract(world, tmp_path)
    script = world.scripts[0]
    result = subprocess.run(
        [f"./{SCRIPTS_DIR}/{script.name}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (root / "evidence" / script.name.replace(".sh", ".json")).is_file()


@pytest.mark.parametrize(
    ("protocols", "scripts", "fragment"),
    [
        ([], 10, "protocols is empty"),
        ([18, 19, 20], 2, "scripts 2 is fewer than the 3 protocols: accepted range is 3 to 50000"),
        ([18], MAX_SCRIPTS + 1, f"scripts {MAX_SCRIPTS + 1} is too many: accepted range is 1 to"),
        ([18, -1], 10, "protocol -1 is negative: protocol numbers must be >= 0"),
        ([18, 18], 10, "protocols [18] given more than once"),
    ],
)
def test_bad_parameters_raise_clear_value_error(
    protocols: list[int], scripts: int, fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        generate_world(protocols, scripts, 1)


def test_edge_sizes_are_accepted() -> None:
    assert len(generate_world([5], 1, 1).scripts) == 1
    assert not generate_world([5], 3, 1).renames
    assert len(generate_world([3, 4, 5], 3, 1).scripts) == 3


def test_whole_word_decoys_present_and_untouched_by_whole_word_rename(tmp_path: Path) -> None:
    world = default_world()
    root = extract(world, tmp_path)
    docs = {p: (root / TREE / f"protocol-{p}" / "protocol.md").read_text() for p in world.protocols}
    text = "\n".join(docs.values())
    assert world.decoys
    for decoy in world.decoys:
        assert decoy in text
    assert any(d.endswith(".sh.bak") for d in world.decoys)
    assert any(d.startswith("legacy-validate-p") for d in world.decoys)
    assert any(d.endswith(".shx") for d in world.decoys)

    # The decoys are built from names the manifest renames, so a plain substring replace would
    # corrupt them; a whole-word replace must rename every real reference and keep every decoy.
    # One pass over all names at once: renaming one by one would move a swap's names twice.
    mapping = {entry.source: f"@{entry.target}@" for entry in world.renames}
    alternatives = "|".join(re.escape(source) for source in sorted(mapping))
    renamed = re.sub(WORD.format(f"({alternatives})"), lambda m: mapping[m.group(1)], text)
    for decoy in world.decoys:
        assert decoy in renamed
    for entry in world.renames:
        assert f"`@{entry.target}@`" in renamed
        assert f"{SCRIPTS_DIR}/@{entry.target}@" in renamed
    naive = text
    for entry in world.renames:
        naive = naive.replace(entry.source, f"@{entry.target}@")
    assert any(decoy not in naive for decoy in world.decoys)


def test_hooks_list_every_script_once(tmp_path: Path) -> None:
    world = default_world()
    root = extract(world, tmp_path)
    listed: list[str] = []
    for protocol in world.protocols:
        for hook in ("pre-gate", "post-gate"):
            data = yaml.safe_load(
                (root / TREE / f"protocol-{protocol}" / "hooks" / f"{hook}.yaml").read_text()
            )
            assert data["protocol"] == protocol
            assert data["hook"] == hook
            listed += data["scripts"]
    assert sorted(listed) == sorted(s.path for s in world.scripts)


def test_registry_sql_has_tables_and_current_names(tmp_path: Path) -> None:
    world = default_world()
    sql = written(world, tmp_path)["registry.sql"].decode()
    assert "CREATE DATABASE" not in sql.upper()
    assert not re.search(r"^\s*USE\s", sql, re.IGNORECASE | re.MULTILINE)
    assert "CREATE TABLE scripts (" in sql
    assert "CREATE TABLE protocol_hooks (" in sql
    assert sql.count("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") == 2
    for script in world.scripts:
        assert f"{script.protocol}, '{script.name}', '{SCRIPTS_DIR}/{script.name}', '" in sql
    rows = re.findall(r"^  \(\d+, \d+, 'validate-", sql, re.MULTILINE)
    assert len(rows) == DEFAULT_SCRIPTS


def test_cache_jobs_and_summary(tmp_path: Path) -> None:
    world = default_world()
    files = written(world, tmp_path)
    commands = files["cache.txt"].decode().splitlines()
    assert all(line.startswith("SET ") and len(line.split()) == 3 for line in commands)
    keys = [line.split()[1] for line in commands]
    assert sum(key.startswith("ci:") for key in keys) > len(world.protocols)
    assert any(key.startswith("session:") for key in keys)

    jobs = json.loads(files["ci_jobs.json"])["jobs"]
    assert [job["protocol"] for job in jobs] == list(world.protocols)
    assert all({"id", "protocol", "schedule"} <= job.keys() for job in jobs)

    summary = json.loads(files["world.json"])
    assert summary["counts"]["chains"] >= 1
    assert summary["counts"]["swaps"] >= 1
    assert summary["counts"]["misnumbered"] == len(world.renames)
    assert len(summary["scripts"]) == DEFAULT_SCRIPTS


def test_large_world_keeps_names_unique() -> None:
    world = generate_world(range(10), 5000, 3)
    names = [s.name for s in world.scripts]
    targets = [s.target for s in world.scripts]
    assert len(set(names)) == len(names) == 5000
    assert len(set(targets)) == len(targets)
    assert any(s.topic.endswith("-2") for s in world.scripts)


@pytest.mark.parametrize("seed", range(4))
def test_default_world_renames_thirty_or_more_scripts(seed: int) -> None:
    # The plan's window renames 30+ scripts; the default lab must be at least that big.
    world = generate_world(DEFAULT_PROTOCOLS, DEFAULT_SCRIPTS, seed)
    assert sum(1 for script in world.scripts if script.kind != "aligned") >= 30
