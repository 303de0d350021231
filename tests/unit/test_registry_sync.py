"""mw_registry_sync: batch checks, planning, verification and the transaction, without a database.

The planning and verification are pure functions over snapshots of the registry. The transaction
runs against MemoryRegistry, an in-memory stand-in that enforces the UNIQUE constraint on
``scripts.name`` statement by statement and keeps uncommitted writes apart, the way InnoDB does.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mwctl.world import generate_world

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "roles" / "registry_sync" / "library" / "mw_registry_sync.py"
FILTER_FILE = REPO / "plugins" / "filter" / "mw_manifest.py"
SCRIPTS = "scripts/validation"


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body is processed.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rs = _load("mw_registry_sync", MODULE_FILE)
manifest_batch = _load("mw_manifest", FILTER_FILE).mw_manifest_batch


def name(protocol: int, topic: str) -> str:
    return f"validate-p{protocol}-{topic}.sh"


def batch(*entries: tuple[int, str, str]) -> list[dict[str, Any]]:
    """Build a batch the way the manifest filter does: (owning protocol, from, to)."""
    manifest = [{"protocol": p, "from": old, "to": new} for p, old, new in entries]
    return manifest_batch(manifest, SCRIPTS)


# A chain 18 -> 19 -> 20 of topic "gates": the file named for 18 belongs to 19, the file named
# for 19 belongs to 20. A swap of topic "risks" between 21 and 22. A 3-cycle of topic "docs":
# 18 -> 19 -> 20 -> 18. Each tuple is (owning protocol, current name, correct name).
CHAIN = [(19, name(18, "gates"), name(19, "gates")), (20, name(19, "gates"), name(20, "gates"))]
SWAP = [(21, name(22, "risks"), name(21, "risks")), (22, name(21, "risks"), name(22, "risks"))]
CYCLE = [
    (19, name(18, "docs"), name(19, "docs")),
    (20, name(19, "docs"), name(20, "docs")),
    (18, name(20, "docs"), name(18, "docs")),
]
ALIGNED = [(18, name(18, "lint"), name(18, "lint"))]


def moves(entries: Sequence[tuple[int, str, str]], state: str = "applied") -> Any:
    return rs.moves_for(rs.parse_batch(batch(*entries), "b1"), state)


# ---------------------------------------------------------------------------------------------
# An in-memory registry.


@dataclass
class Tables:
    scripts: dict[int, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)

    def copy(self) -> Tables:
        return Tables(
            {k: dict(v) for k, v in self.scripts.items()},
            {k: dict(v) for k, v in self.hooks.items()},
        )

    def names(self) -> dict[str, tuple[int, str]]:
        """Map each registered name to (protocol, path)."""
        return {r["name"]: (r["protocol"], r["path"]) for r in self.scripts.values()}

    def hook_names(self) -> list[tuple[int, str]]:
        return sorted((h["protocol"], h["script_name"]) for h in self.hooks.values())


def tables(*groups: Sequence[tuple[int, str, str]], hooks: bool = True) -> Tables:
    """Registry before the window: one row per script under its current name, one hook each."""
    db = Tables()
    for group in groups:
        for protocol, current, _ in group:
            row_id = len(db.scripts) + 1
            db.scripts[row_id] = {
                "protocol": protocol,
                "name": current,
                "path": f"{SCRIPTS}/{current}",
                "updated_at": "2025-11-01 00:00:00",
            }
            if hooks:
                db.hooks[row_id] = {
                    "protocol": protocol,
                    "hook": "pre-gate",
                    "script_name": current,
                }
    return db


class DuplicateKeyError(Exception):
    pass


class MemoryRegistry:
    """One session on a Tables 'server': writes go to a private copy until commit."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.work: Tables | None = None
        server.sessions += 1

    def _tables(self) -> Tables:
        return self.work if self.work is not None else self.server.db

    def begin(self) -> None:
        self.server.log.append("begin")
        self.work = self.server.db.copy()

    def read(self, names: Sequence[str], *, lock: bool) -> Any:
        self.server.log.append("read-lock" if lock else "read")
        db = self._tables()
        wanted = {n.lower() for n in names}  # the column's collation ignores case
        rows = tuple(
            rs.Row(i, r["protocol"], r["name"], r["path"])
            for i, r in sorted(db.scripts.items())
            if r["name"].lower() in wanted
        )
        hooks = tuple(
            rs.HookRow(i, h["protocol"], h["hook"], h["script_name"])
            for i, h in sorted(db.hooks.items())
            if h["script_name"].lower() in wanted
        )
        return rs.Snapshot(rows, hooks, rs.Counts(len(db.scripts), len(db.hooks)))

    def set_script(self, row_id: int, name: str, path: str | None) -> None:
        assert self.work is not None, "write outside a transaction"
        for other_id, row in self.work.scripts.items():
            if other_id != row_id and row["name"].lower() == name.lower():
                msg = f"Duplicate entry {name!r} for key 'name'"
                raise DuplicateKeyError(msg)
        self.server.log.append(f"set {row_id} {name}")
        self.work.scripts[row_id]["name"] = name
        if path is not None:
            self.work.scripts[row_id]["path"] = path
            self.work.scripts[row_id]["updated_at"] = "now"

    def rename_hooks(self, mapping: Mapping[str, str]) -> int:
        assert self.work is not None, "write outside a transaction"
        self.server.log.append("hooks")
        changed = 0
        for hook in self.work.hooks.values():
            if hook["script_name"] in mapping:
                hook["script_name"] = mapping[hook["script_name"]]
                changed += 1
        return changed

    def commit(self) -> None:
        if self.server.fail_commit:
            msg = "Lost connection to server during query"
            raise ConnectionError(msg)
        self.server.log.append("commit")
        assert self.work is not None
        self.server.db = self.work
        self.work = None

    def rollback(self) -> None:
        self.server.log.append("rollback")
        self.work = None

    def close(self) -> None:
        self.work = None


@dataclass
class Server:
    db: Tables
    log: list[str] = field(default_factory=list)
    sessions: int = 0
    fail_commit: bool = False

    def connect(self) -> MemoryRegistry:
        return MemoryRegistry(self)


def run(
    server: Server,
    entries: Sequence[tuple[int, str, str]],
    state: str = "applied",
    **options: Any,
) -> Any:
    request = rs.Request(moves(entries, state), "run-1", state)
    return rs.run_sync(request, server.connect, **options)


def applied_names(*groups: Sequence[tuple[int, str, str]]) -> dict[str, tuple[int, str]]:
    return {new: (p, f"{SCRIPTS}/{new}") for group in groups for p, _, new in group}


# ---------------------------------------------------------------------------------------------
# The batch.


def test_batch_from_the_manifest_filter_is_accepted() -> None:
    entries = rs.parse_batch(batch(*CHAIN), "run-1")

    assert [(e.protocol, e.source, e.target, e.dest) for e in entries] == [
        (19, name(18, "gates"), name(19, "gates"), f"{SCRIPTS}/{name(19, 'gates')}"),
        (20, name(19, "gates"), name(20, "gates"), f"{SCRIPTS}/{name(20, 'gates')}"),
    ]


def test_every_batch_problem_is_reported_at_once() -> None:
    bad: list[Any] = [
        "not a mapping",
        {"protocol": True, "from": "a", "to": "b", "src": "s/a", "dest": "s/b"},
        {"protocol": 18, "from": "a", "to": "a", "src": "s/a", "dest": "s/a"},
        {"protocol": 18, "from": "c"},
        {"protocol": 18, "from": "__mwtmp__x", "to": "d", "src": "s/x", "dest": "s/d"},
    ]

    with pytest.raises(rs.SyncError) as caught:
        rs.parse_batch(bad, "bad id!")

    problems = caught.value.problems
    assert caught.value.kind == "params"
    assert any("batch_id 'bad id!'" in p for p in problems)
    assert any(p.startswith("renames[0] is str") for p in problems)
    assert any("renames[1]: protocol True" in p for p in problems)
    assert any("renames[2] renames 'a' to itself" in p for p in problems)
    assert any("renames[3] lacks 'to'" in p for p in problems)
    assert any("renames[4]" in p and "reserved" in p for p in problems)


def test_repeated_names_are_rejected() -> None:
    entries = batch(*CHAIN)
    entries.append({**entries[0], "to": name(30, "gates"), "dest": f"{SCRIPTS}/x"})

    with pytest.raises(rs.SyncError, match=r"renames\[0\] and renames\[2\] share the 'from'"):
        rs.parse_batch(entries, "run-1")


def test_a_batch_that_is_not_a_list_is_rejected() -> None:
    with pytest.raises(rs.SyncError, match="renames must be a list"):
        rs.parse_batch("validate-p18-gates.sh", "run-1")


def test_reverted_moves_are_the_inverse_renames() -> None:
    (move, _) = moves(CHAIN, "reverted")

    assert (move.old, move.new, move.new_path) == (
        name(19, "gates"),
        name(18, "gates"),
        f"{SCRIPTS}/{name(18, 'gates')}",
    )


# ---------------------------------------------------------------------------------------------
# Planning.


def snapshot_of(db: Tables, batch_moves: Sequence[Any]) -> Any:
    return MemoryRegistry(Server(db)).read(rs.affected_names(batch_moves), lock=False)


@pytest.mark.parametrize("group", [CHAIN, SWAP, CYCLE], ids=["chain", "swap", "3-cycle"])
def test_pending_batch_renames_every_row_and_hook(group: list[tuple[int, str, str]]) -> None:
    db = tables(group, ALIGNED)
    planned = rs.plan_sync(moves(group), snapshot_of(db, moves(group)))

    assert {(u.id, u.before_name, u.after_name) for u in planned.updates} == {
        (i + 1, old, new) for i, (_, old, new) in enumerate(group)
    }
    assert all(u.after_path == f"{SCRIPTS}/{u.after_name}" for u in planned.updates)
    assert len(planned.hook_updates) == len(group)


def test_applied_batch_is_a_no_op() -> None:
    server = Server(tables(CHAIN, SWAP, CYCLE))
    run(server, CHAIN + SWAP + CYCLE)

    planned = rs.plan_sync(
        moves(CHAIN + SWAP + CYCLE), snapshot_of(server.db, moves(CHAIN + SWAP + CYCLE))
    )

    assert not planned.changes


def test_empty_batch_is_a_no_op() -> None:
    planned = rs.plan_sync((), snapshot_of(tables(ALIGNED), ()))

    assert not planned.changes


def test_partly_applied_registry_is_refused_with_both_lists() -> None:
    db = tables(SWAP, [CHAIN[0]])
    # Someone renamed the chain's row by hand, outside any sync.
    db.scripts[3].update(name=CHAIN[0][2], path=f"{SCRIPTS}/{CHAIN[0][2]}")
    batch_moves = moves([*SWAP, CHAIN[0]])

    with pytest.raises(rs.SyncError) as caught:
        rs.plan_sync(batch_moves, snapshot_of(db, batch_moves))

    message = caught.value.message()
    assert "partly synchronised" in message
    assert "already in the requested state: renames[2] (protocol 19" in message
    assert "not yet in the requested state: renames[0] (protocol 21" in message


def test_unknown_names_are_listed() -> None:
    ghost = (19, name(18, "ghost"), name(19, "ghost"))
    batch_moves = moves([*CHAIN, ghost])

    with pytest.raises(rs.SyncError) as caught:
        rs.plan_sync(batch_moves, snapshot_of(tables(CHAIN), batch_moves))

    assert "(1 unknown names)" in caught.value.summary
    expected = (
        f"renames[2] (protocol 19, {ghost[1]} -> {ghost[2]}): unknown name, neither "
        f"{ghost[1]!r} nor {ghost[2]!r} is registered"
    )
    assert caught.value.problems == [expected]


def test_protocol_mismatch_names_the_entry() -> None:
    db = tables(CHAIN)
    db.scripts[1]["protocol"] = 23
    batch_moves = moves(CHAIN)

    with pytest.raises(rs.SyncError) as caught:
        rs.plan_sync(batch_moves, snapshot_of(db, batch_moves))

    (problem,) = caught.value.problems
    assert problem.startswith(f"renames[0] (protocol 19, {CHAIN[0][1]} -> {CHAIN[0][2]})")
    assert "protocol mismatch" in problem
    assert "protocol 23" in problem


def test_target_held_by_a_row_the_batch_keeps_is_refused() -> None:
    # Only the first link of the chain is in the batch: its target is still the other row's name.
    batch_moves = moves([CHAIN[0]])

    with pytest.raises(rs.SyncError) as caught:
        rs.plan_sync(batch_moves, snapshot_of(tables(CHAIN), batch_moves))

    assert "does not rename it away" in caught.value.problems[0]


def test_name_matching_only_without_case_is_refused() -> None:
    db = tables(CHAIN)
    db.scripts[2]["name"] = CHAIN[1][1].upper()
    batch_moves = moves(CHAIN)

    with pytest.raises(rs.SyncError, match="only when case is ignored"):
        rs.plan_sync(batch_moves, snapshot_of(db, batch_moves))


def test_stale_hook_after_the_sync_is_refused() -> None:
    server = Server(tables(CHAIN))
    run(server, CHAIN)
    server.db.hooks[99] = {"protocol": 19, "hook": "post-gate", "script_name": CHAIN[0][1]}
    batch_moves = moves(CHAIN)

    with pytest.raises(rs.SyncError) as caught:
        rs.plan_sync(batch_moves, snapshot_of(server.db, batch_moves))

    assert caught.value.problems == [
        f"protocol_hooks row id 99 (protocol 19, hook post-gate) names {CHAIN[0][1]!r}"
    ]


def test_cycle_within_one_protocol_is_refused_as_undecidable() -> None:
    same = [(18, name(18, "a"), name(18, "b")), (18, name(18, "b"), name(18, "a"))]
    batch_moves = moves(same)

    with pytest.raises(rs.SyncError, match="cannot tell whether it was applied"):
        rs.plan_sync(batch_moves, snapshot_of(tables(same), batch_moves))


def test_cycle_within_one_protocol_follows_the_rest_of_the_batch() -> None:
    same = [(18, name(18, "a"), name(18, "b")), (18, name(18, "b"), name(18, "a"))]
    server = Server(tables(same, CHAIN))

    run(server, same + CHAIN)

    assert server.db.names() == applied_names(same, CHAIN)


def test_unexpected_path_is_a_warning_and_is_corrected() -> None:
    db = tables(CHAIN)
    db.scripts[1]["path"] = "old/place.sh"
    batch_moves = moves(CHAIN)

    planned = rs.plan_sync(batch_moves, snapshot_of(db, batch_moves))

    assert planned.updates[0].after_path == f"{SCRIPTS}/{CHAIN[0][2]}"
    assert "had path 'old/place.sh'" in planned.warnings[0]


# ---------------------------------------------------------------------------------------------
# Verification.


def test_verification_passes_after_the_sync() -> None:
    server = Server(tables(CHAIN, SWAP))
    before = MemoryRegistry(server).read([], lock=False).counts
    planned = rs.plan_sync(moves(CHAIN + SWAP), snapshot_of(server.db, moves(CHAIN + SWAP)))
    run(server, CHAIN + SWAP)

    after = snapshot_of(server.db, moves(CHAIN + SWAP))

    assert rs.verify_sync(moves(CHAIN + SWAP), planned, before, after) == []


def test_verification_lists_every_mismatch() -> None:
    server = Server(tables(CHAIN))
    planned = rs.plan_sync(moves(CHAIN), snapshot_of(server.db, moves(CHAIN)))
    run(server, CHAIN)
    server.db.scripts[2]["path"] = "elsewhere.sh"
    server.db.scripts[3] = {"protocol": 19, "name": CHAIN[0][1], "path": "x", "updated_at": ""}
    server.db.hooks[1]["script_name"] = CHAIN[0][1]

    found = rs.verify_sync(
        moves(CHAIN), planned, rs.Counts(2, 2), snapshot_of(server.db, moves(CHAIN))
    )

    assert any("is row id 2 (protocol 20, path elsewhere.sh)" in m for m in found)
    assert any(f"{CHAIN[0][1]!r} is still registered as row id 3" in m for m in found)
    assert any(
        "protocol_hooks row id 1 (protocol 19, hook pre-gate) still names" in m for m in found
    )
    assert "scripts has 3 rows, 2 before the sync" in found


# ---------------------------------------------------------------------------------------------
# The transaction.


def test_temporary_names_are_needed_for_a_swap() -> None:
    server = Server(tables(SWAP))
    session = server.connect()
    session.begin()

    with pytest.raises(DuplicateKeyError):
        session.set_script(1, SWAP[0][2], None)


@pytest.mark.parametrize("group", [CHAIN, SWAP, CYCLE], ids=["chain", "swap", "3-cycle"])
def test_sync_applies_under_the_unique_constraint(group: list[tuple[int, str, str]]) -> None:
    server = Server(tables(group, ALIGNED))

    outcome = run(server, group)

    assert outcome.changed
    assert outcome.verified
    assert server.db.names() == {**applied_names(group), **applied_names(ALIGNED)}
    assert server.db.hook_names() == sorted(
        [(p, new) for p, _, new in group] + [(p, new) for p, _, new in ALIGNED]
    )


def test_every_row_takes_a_temporary_name_before_any_final_name() -> None:
    server = Server(tables(CYCLE))

    run(server, CYCLE)

    sets = [entry for entry in server.log if entry.startswith("set ")]
    assert [s.split()[2].startswith("__mwtmp__run-1__") for s in sets] == [True] * 3 + [False] * 3
    assert server.log[:2] == ["begin", "read-lock"]
    assert server.log.index("hooks") < server.log.index("commit")


def test_verification_uses_a_new_session() -> None:
    server = Server(tables(CHAIN))

    run(server, CHAIN)

    assert server.sessions == 2
    assert server.log[server.log.index("commit") + 1 :] == ["read", "rollback"]


def test_second_run_changes_nothing() -> None:
    server = Server(tables(CHAIN, SWAP, CYCLE))
    run(server, CHAIN + SWAP + CYCLE)
    committed = server.db.copy()

    outcome = run(server, CHAIN + SWAP + CYCLE)

    assert not outcome.changed
    assert outcome.verified
    assert outcome.plan.updates == ()
    assert server.db == committed
    assert "commit" not in server.log[server.log.index("commit") + 1 :]


def test_failure_before_commit_leaves_the_registry_unchanged() -> None:
    server = Server(tables(CHAIN, SWAP))
    before = server.db.copy()

    with pytest.raises(rs.SyncError) as caught:
        run(server, CHAIN + SWAP, fail_before_commit=True)

    assert caught.value.kind == "write"
    assert caught.value.unchanged
    assert "MW_FAULT_FAIL_BEFORE_COMMIT" in caught.value.message()
    assert "rolled back: the registry is unchanged" in caught.value.message()
    assert server.db == before
    assert "commit" not in server.log
    assert server.log[-1] == "rollback"


def test_failure_in_commit_says_the_outcome_is_unknown() -> None:
    server = Server(tables(CHAIN), fail_commit=True)

    with pytest.raises(rs.SyncError) as caught:
        run(server, CHAIN)

    assert caught.value.kind == "commit"
    assert not caught.value.unchanged
    assert "outcome is unknown" in caught.value.message()
    assert len(caught.value.plan.updates) == 2


def test_plan_failure_writes_nothing_and_releases_the_locks() -> None:
    server = Server(tables(SWAP))
    before = server.db.copy()

    with pytest.raises(rs.SyncError):
        run(server, CHAIN)

    assert server.db == before
    assert not any(entry.startswith("set ") for entry in server.log)
    assert server.log[-1] == "rollback"


def test_check_mode_reports_and_writes_nothing() -> None:
    server = Server(tables(CHAIN, SWAP))
    before = server.db.copy()

    outcome = run(server, CHAIN + SWAP, check_mode=True)

    assert outcome.changed
    assert not outcome.verified
    assert len(outcome.plan.updates) == 4
    assert server.db == before
    assert "begin" not in server.log
    assert "read-lock" not in server.log


def test_check_mode_of_a_synchronised_registry_verifies_it() -> None:
    server = Server(tables(CHAIN))
    run(server, CHAIN)

    outcome = run(server, CHAIN, check_mode=True)

    assert not outcome.changed
    assert outcome.verified


def test_revert_restores_the_names_and_is_idempotent() -> None:
    server = Server(tables(CHAIN, SWAP, CYCLE, ALIGNED))
    original = server.db.names()
    run(server, CHAIN + SWAP + CYCLE)

    first = run(server, CHAIN + SWAP + CYCLE, "reverted")
    second = run(server, CHAIN + SWAP + CYCLE, "reverted")

    assert first.changed
    assert first.verified
    assert not second.changed
    assert server.db.names() == original
    assert server.db.hook_names() == sorted(
        (p, old) for p, old, _ in CHAIN + SWAP + CYCLE + ALIGNED
    )


def test_revert_of_a_registry_never_synchronised_is_a_no_op() -> None:
    server = Server(tables(CHAIN, SWAP))

    outcome = run(server, CHAIN + SWAP, "reverted")

    assert not outcome.changed


def test_generated_world_is_synchronised_and_reverted() -> None:
    world = generate_world((18, 19, 20, 21, 22, 23), 36, 1)
    group = [(s.protocol, s.name, s.target) for s in world.scripts]
    renames = [(e.protocol, e.source, e.target) for e in world.renames]
    server = Server(tables(group))
    original = server.db.copy()

    outcome = run(server, renames)

    assert len(outcome.plan.updates) == len(renames) > 0
    assert server.db.names() == {
        s.target: (s.protocol, f"{SCRIPTS}/{s.target}") for s in world.scripts
    }
    run(server, renames, "reverted")
    assert server.db.names() == original.names()


def test_diff_lines_are_protocol_name_path() -> None:
    planned = rs.plan_sync(moves([CHAIN[1]]), snapshot_of(tables([CHAIN[1]]), moves([CHAIN[1]])))

    scripts, hooks = rs.diff_of(planned)

    old, new = CHAIN[1][1], CHAIN[1][2]
    assert scripts["before"] == f"20 {old} {SCRIPTS}/{old}\n"
    assert scripts["after"] == f"20 {new} {SCRIPTS}/{new}\n"
    assert hooks["after"] == f"20 pre-gate {new}\n"


def test_module_result_shape() -> None:
    server = Server(tables(CHAIN))

    result = run(server, CHAIN).to_result(want_diff=True)

    assert result["changed"] is True
    assert result["hooks_updated"] == 2
    assert result["updated"][0] == {
        "id": 1,
        "protocol": 19,
        "before": {"name": CHAIN[0][1], "path": f"{SCRIPTS}/{CHAIN[0][1]}"},
        "after": {"name": CHAIN[0][2], "path": f"{SCRIPTS}/{CHAIN[0][2]}"},
    }
    assert result["counts"] == {"scripts": 2, "protocol_hooks": 2}
    assert "diff" in result


def test_login_repr_hides_the_password() -> None:
    login = rs.Login(database="db", user="u", password="s3cret-value")  # noqa: S106

    assert "s3cret-value" not in repr(login)
    assert login.scrub("denied for s3cret-value") == "denied for ********"


def test_module_without_pymysql_fails_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("ansible.module_utils.basic")
    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("PyMySQL is installed here; the missing-library path cannot be shown")
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "database": "script_registry",
                    "renames": [],
                    "batch_id": "run-1",
                    "login_password": "never-printed",
                }
            }
        )
    )

    completed = subprocess.run(
        [sys.executable, str(MODULE_FILE), str(args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    result = json.loads(completed.stdout)
    assert result["failed"] is True
    assert "PyMySQL" in result["msg"]
    assert "never-printed" not in completed.stdout
