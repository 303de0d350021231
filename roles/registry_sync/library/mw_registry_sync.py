#!/usr/bin/python
"""Map renamed scripts to their new names in the script registry, in one verified transaction.

The logic is plain Python that imports without Ansible, PyMySQL or a database: parse_batch,
moves_for, plan_sync, verify_sync and run_sync work on the Registry protocol, which MySQLRegistry
implements with PyMySQL and the tests implement in memory. main() is the AnsibleModule wrapper
and the only place that imports Ansible.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

DOCUMENTATION = r"""
---
module: mw_registry_sync
short_description: Rename scripts in the script registry database as one verified transaction
description:
  - Maps every script of a rename batch to its new name and path in the C(scripts) table of the
    registry database, and the names in C(protocol_hooks.script_name) with them, in a single
    MariaDB transaction; then checks the committed result over a new connection.
  - Plans before it writes. For O(state=applied) each entry's C(from) row must be registered
    with the entry's protocol, and no other row may hold its C(to) name unless that row is renamed
    away by the same batch. An entry is already applied when the row named C(to) has the entry's
    protocol and the path C(dest), and no row named C(from) is left (unless C(from) is also a
    C(to) of the batch). A batch that is entirely applied changes nothing.
  - Every problem is reported together, each naming the entry as C(renames[INDEX]) with its
    protocol and names, and nothing is written when the plan fails. Because the sync is one
    transaction, a registry where some entries are applied and others are not was edited by
    someone else; the module refuses it and lists both sets.
  - The transaction runs C(START TRANSACTION), locks the affected rows of both tables with
    C(SELECT ... FOR UPDATE), renames each affected script row to a temporary name
    C(__mwtmp__BATCH_ID__ID) and then to its final name and path, so that chains (C(a->b),
    C(b->c)), swaps and longer cycles never trip the UNIQUE constraint on C(name). The hook rows
    are renamed by one C(UPDATE) with a C(CASE) expression, which maps every old name to its new
    name at once. Only DML is used, so nothing commits implicitly before the final C(COMMIT).
  - Any error before C(COMMIT) rolls the transaction back; the failure message says that the
    registry is unchanged. An error in C(COMMIT) itself is reported as an unknown outcome.
  - After C(COMMIT) a new connection checks that every C(to) is registered with its protocol and
    path, that no C(from) is left unless it is also a C(to), that each updated row kept its id,
    that no hook names a removed name, and that both tables have as many rows as before.
  - O(state=reverted) applies the inverse mapping (C(to) back to C(from), path C(src)) with the
    same plan, transaction and verification. Reverting twice changes nothing the second time.
version_added: "1.0.0"
author:
  - Maintenance window project contributors
requirements:
  - PyMySQL on the managed host (Debian package python3-pymysql)
options:
  login_unix_socket:
    description:
      - Unix socket of the MariaDB server. Used unless O(login_host) is set.
    type: path
    default: /run/mysqld/mysqld.sock
  login_host:
    description:
      - Host name or address of the MariaDB server, to connect over TCP instead of the socket.
    type: str
  login_port:
    description: TCP port of the MariaDB server, with O(login_host).
    type: int
    default: 3306
  login_user:
    description:
      - Account that reads and updates both tables. With an empty O(login_password) and the
        socket, MariaDB's C(unix_socket) authentication logs C(root) in as the system's root.
    type: str
    default: root
  login_password:
    description: Password of O(login_user); empty for C(unix_socket) authentication.
    type: str
    default: ""
  database:
    description: The registry database holding the C(scripts) and C(protocol_hooks) tables.
    type: str
    required: true
  renames:
    description:
      - The rename batch, as the project's C(mw_manifest_batch) filter returns it; one mapping
        per script with the keys C(protocol) (whole number), C(from) and C(to) (registry names),
        C(src) and C(dest) (paths relative to the project root, stored in C(path)). Other keys
        are ignored.
      - The same C(from) or C(to) twice and an entry renaming a name to itself are rejected.
      - An empty list changes nothing.
      - Declared V(raw) so that a malformed value is reported entry by entry instead of being
        converted into a list.
    type: raw
    required: true
  state:
    description:
      - V(applied) renames C(from) to C(to) and sets C(path) to C(dest).
      - V(reverted) renames C(to) back to C(from) and sets C(path) to C(src).
    type: str
    choices: [applied, reverted]
    default: applied
  batch_id:
    description:
      - Name of the batch, part of the temporary names. Letters, digits, C(.), C(_), C(+) and
        C(-), starting with a letter or digit, at most 64 characters.
    type: str
    required: true
  connect_timeout:
    description: Seconds to wait for the server to accept the connection.
    type: int
    default: 10
  lock_timeout:
    description:
      - Seconds to wait for a row lock held by another session (C(innodb_lock_wait_timeout) of
        this session) before failing with the registry unchanged.
    type: int
    default: 30
notes:
  - Supports check mode (plans, reports the rows that would change, writes nothing) and diff mode
    (C(protocol name path) lines of the script rows and C(protocol hook script_name) lines of the
    hook rows, before and after).
  - The environment variable C(MW_FAULT_FAIL_BEFORE_COMMIT=1) makes the module fail right before
    C(COMMIT). It exists for the tests that prove a failed sync leaves the registry unchanged.
  - The C(name) column's collation compares case-insensitively. A registered name that equals a
    batch name only when case is ignored is reported as a problem instead of being renamed.
  - A batch whose every entry fits both the registry before and after the sync (cycles of names
    within one protocol, where C(path) follows the name) cannot be told apart from its applied
    state; the module fails rather than guess. Project manifests do not produce such batches,
    because a misnumbered name belongs to another protocol.
  - The final update sets C(updated_at) to the current time, so a revert restores names and
    paths but not the timestamps; the registry dump taken before the window restores those.
  - Row counts are compared with those read before the transaction; another session inserting or
    deleting rows at the same time makes the verification fail. Stop writers for the window.
"""

EXAMPLES = r"""
- name: Synchronise the registry with the renamed scripts
  mw_registry_sync:
    database: script_registry
    batch_id: "{{ mw_run_id }}"
    renames:
      - protocol: 19
        from: validate-p18-evidence.sh
        to: validate-p19-evidence.sh
        src: scripts/validation/validate-p18-evidence.sh
        dest: scripts/validation/validate-p19-evidence.sh
  register: registry_sync_result

- name: Undo the batch over TCP with a password
  mw_registry_sync:
    login_host: registry.example.org
    login_user: window_admin
    login_password: "{{ mw_registry_admin_password }}"
    database: script_registry
    batch_id: "{{ mw_run_id }}"
    renames: "{{ hostvars['localhost']['mw_rename_batch'] }}"
    state: reverted
  no_log: "{{ mw_no_log }}"
"""

RETURN = r"""
changed:
  description: Whether rows were renamed (would be, in check mode).
  returned: always
  type: bool
state:
  description: The requested state.
  returned: always
  type: str
  sample: applied
updated:
  description: Script rows renamed by this run (to be renamed, in check mode), in id order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Id of the row; it does not change.
      type: int
    protocol:
      description: Protocol of the row.
      type: int
    before:
      description: C(name) and C(path) of the row before the sync.
      type: dict
    after:
      description: C(name) and C(path) of the row after the sync.
      type: dict
  sample:
    - id: 7
      protocol: 19
      before: {name: validate-p18-evidence.sh, path: scripts/validation/validate-p18-evidence.sh}
      after: {name: validate-p19-evidence.sh, path: scripts/validation/validate-p19-evidence.sh}
hooks_updated:
  description: Number of protocol_hooks rows renamed (to be renamed, in check mode).
  returned: always
  type: int
  sample: 3
verified:
  description:
    - Whether the committed registry passed the verification. Also true when the registry was
      already synchronised. False in check mode when there is something to change, since nothing
      was committed to verify.
  returned: always
  type: bool
mismatches:
  description: What the verification found wrong, one string per finding; empty when verified.
  returned: always
  type: list
  elements: str
counts:
  description: Row counts of C(scripts) and C(protocol_hooks) read before the transaction.
  returned: success
  type: dict
  sample: {scripts: 36, protocol_hooks: 36}
error_kind:
  description:
    - On failure, what failed. V(params) a malformed batch; V(login) the server refused the
      credentials; V(connect) the server could not be reached or the database is missing;
      V(plan) the registry does not fit the batch; V(write) the transaction failed and was rolled
      back; V(commit) the outcome of C(COMMIT) is unknown; V(verify) the committed registry
      differs from the plan.
  returned: failure
  type: str
problems:
  description: On failure, every problem found, one string per problem.
  returned: failure
  type: list
  elements: str
registry_unchanged:
  description: On failure, whether the registry is known to be unchanged by this run.
  returned: failure
  type: bool
diff:
  description: In diff mode, the script rows and the hook rows that change, before and after.
  returned: when diff mode is on and something changes
  type: list
  elements: dict
"""

State = Literal["applied", "reverted"]
ErrorKind = Literal["params", "login", "connect", "read", "plan", "write", "commit", "verify"]

BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
NAME_MAX = 255
PATH_MAX = 512
TEMP_PREFIX = "__mwtmp__"
MESSAGE_MAX_PROBLEMS = 20
ENTRY_KEYS = ("protocol", "from", "to", "src", "dest")
# The tests need a sync that fails after every write and before COMMIT, to prove that the
# rollback leaves the registry as it was; nothing else sets this variable.
FAULT_ENV = "MW_FAULT_FAIL_BEFORE_COMMIT"
# MariaDB's errors for refused credentials: bad password, no access to the database, and
# unix_socket authentication of a system user that is not the account.
LOGIN_ERRORS = frozenset({1044, 1045, 1698})
NOT_WRITTEN = "the registry does not fit the batch, nothing was written"


class SyncError(Exception):
    """A sync that failed; ``problems`` lists every problem found.

    ``kind`` says which stage failed (see the module's RETURN), ``unchanged`` whether the
    registry is known to be as it was before the run, ``plan`` what a commit that failed or did
    not verify wrote.
    """

    def __init__(
        self,
        summary: str,
        problems: Sequence[str] = (),
        *,
        kind: ErrorKind,
        unchanged: bool = True,
        plan: Plan | None = None,
    ) -> None:
        """Keep the summary, the problems, the failed stage, whether nothing changed, the plan."""
        super().__init__(summary)
        self.summary = summary
        self.problems = list(problems)
        self.kind: ErrorKind = kind
        self.unchanged = unchanged
        # The plan that was committed (or may have been), for the failure to report it.
        self.plan = plan

    def __str__(self) -> str:
        """Return the same text as message()."""
        return self.message()

    def message(self) -> str:
        """Return the summary followed by the first problems, readable in a task failure."""
        if not self.problems:
            return self.summary
        shown = "; ".join(self.problems[:MESSAGE_MAX_PROBLEMS])
        hidden = len(self.problems) - MESSAGE_MAX_PROBLEMS
        more = f"; ... and {hidden} more (see problems)" if hidden > 0 else ""
        return f"{self.summary}: {shown}{more}"


class InjectedFaultError(RuntimeError):
    """Raised before COMMIT when the fault variable is set."""


@dataclass(frozen=True)
class Entry:
    """One validated entry of the batch; ``index`` is its position in the requested list."""

    index: int
    protocol: int
    source: str
    target: str
    src: str
    dest: str


@dataclass(frozen=True)
class Move:
    """One row rename in the direction of the requested state."""

    index: int
    protocol: int
    old: str
    new: str
    old_path: str
    new_path: str

    def label(self) -> str:
        """Name the entry the way messages do."""
        return f"renames[{self.index}] (protocol {self.protocol}, {self.old} -> {self.new})"


@dataclass(frozen=True)
class Row:
    """A row of ``scripts``, limited to the columns the sync reads."""

    id: int
    protocol: int
    name: str
    path: str

    def describe(self) -> str:
        """Describe the row for messages."""
        return f"row id {self.id} (protocol {self.protocol}, path {self.path})"


@dataclass(frozen=True)
class HookRow:
    """A row of ``protocol_hooks``."""

    id: int
    protocol: int
    hook: str
    script_name: str

    def describe(self) -> str:
        """Describe the row for messages."""
        return f"protocol_hooks row id {self.id} (protocol {self.protocol}, hook {self.hook})"


@dataclass(frozen=True)
class Counts:
    """Row counts of both tables."""

    scripts: int
    protocol_hooks: int


@dataclass(frozen=True)
class Snapshot:
    """The rows naming any name of the batch (either side) and the row counts of both tables."""

    rows: tuple[Row, ...]
    hooks: tuple[HookRow, ...]
    counts: Counts

    def by_name(self) -> dict[str, Row]:
        """Return the script rows keyed by their exact name."""
        return {row.name: row for row in self.rows}


@dataclass(frozen=True)
class Update:
    """A script row the sync renames."""

    id: int
    protocol: int
    before_name: str
    before_path: str
    after_name: str
    after_path: str

    def to_result(self) -> dict[str, Any]:
        """Return the row as the module reports it."""
        return {
            "id": self.id,
            "protocol": self.protocol,
            "before": {"name": self.before_name, "path": self.before_path},
            "after": {"name": self.after_name, "path": self.after_path},
        }


@dataclass(frozen=True)
class HookUpdate:
    """A hook row the sync renames."""

    id: int
    protocol: int
    hook: str
    before: str
    after: str


@dataclass(frozen=True)
class Plan:
    """What the sync changes; no updates means the registry is already in the requested state."""

    updates: tuple[Update, ...]
    hook_updates: tuple[HookUpdate, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """Whether the plan changes anything."""
        return bool(self.updates or self.hook_updates)


@dataclass(frozen=True)
class Request:
    """A sync to run: the row renames of the requested state and the batch they belong to."""

    moves: tuple[Move, ...]
    batch_id: str
    state: State

    @property
    def names(self) -> list[str]:
        """Every name the moves read or write, sorted."""
        return affected_names(self.moves)


@dataclass
class Outcome:
    """What a run did (or would do, in check mode), shaped like the module result."""

    state: State
    plan: Plan
    counts: Counts
    changed: bool
    verified: bool
    mismatches: list[str] = field(default_factory=list)

    def to_result(self, *, want_diff: bool) -> dict[str, Any]:
        """Return the module result."""
        result: dict[str, Any] = {
            "changed": self.changed,
            "state": self.state,
            "updated": [update.to_result() for update in self.plan.updates],
            "hooks_updated": len(self.plan.hook_updates),
            "verified": self.verified,
            "mismatches": self.mismatches,
            "counts": {
                "scripts": self.counts.scripts,
                "protocol_hooks": self.counts.protocol_hooks,
            },
        }
        if want_diff and self.plan.changes:
            result["diff"] = diff_of(self.plan)
        return result


class Registry(Protocol):
    """The registry operations the sync needs; one instance is one database session."""

    def begin(self) -> None:
        """Start the transaction."""

    def read(self, names: Sequence[str], *, lock: bool) -> Snapshot:
        """Return the rows of both tables naming any of ``names``, locked when ``lock``."""

    def set_script(self, row_id: int, name: str, path: str | None) -> None:
        """Rename one script row; set its path too unless ``path`` is None."""

    def rename_hooks(self, mapping: Mapping[str, str]) -> int:
        """Rename every hook row naming a key of ``mapping`` at once; return the rows changed."""

    def commit(self) -> None:
        """Commit the transaction."""

    def rollback(self) -> None:
        """Roll the transaction back."""

    def close(self) -> None:
        """End the session."""


# ---------------------------------------------------------------------------------------------
# Planning: pure functions over the batch and a snapshot of the registry.


def _text_problem(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{value!r} is not a non-empty string"
    if len(value) > limit:
        return f"{value!r} is longer than {limit} characters"
    return None


def _entry_problems(index: int, raw: object) -> list[str]:
    """Return what is wrong with one raw entry of the batch."""
    where = f"renames[{index}]"
    if not isinstance(raw, Mapping):
        return [f"{where} is {type(raw).__name__}, expected a mapping with keys {ENTRY_KEYS}"]
    missing = [f"{where} lacks '{key}'" for key in ENTRY_KEYS if key not in raw]
    if missing:
        return missing
    problems = []
    protocol = raw["protocol"]
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        problems.append(f"{where}: protocol {protocol!r} is not a whole number")
    for key in ENTRY_KEYS[1:]:
        problem = _text_problem(raw[key], NAME_MAX if key in {"from", "to"} else PATH_MAX)
        if problem:
            problems.append(f"{where}: '{key}' {problem}")
    if problems:
        return problems
    if raw["from"] == raw["to"]:
        return [f"{where} renames {raw['from']!r} to itself"]
    if raw["from"].startswith(TEMP_PREFIX) or raw["to"].startswith(TEMP_PREFIX):
        return [f"{where}: names starting with {TEMP_PREFIX!r} are reserved for the sync"]
    return []


def parse_batch(renames: object, batch_id: object) -> list[Entry]:
    """Validate the batch and the batch id and return the entries.

    Args:
        renames: The list of {protocol, from, to, src, dest} mappings; other keys are ignored.
        batch_id: The batch id, part of the temporary names.

    Returns:
        The entries in batch order.

    Raises:
        SyncError: Anything is malformed; ``problems`` lists every problem.
    """
    problems: list[str] = []
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.match(batch_id):
        problems.append(
            f"batch_id {batch_id!r} must be 1 to 64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )
    if not isinstance(renames, list):
        problems.append(f"renames must be a list of mappings, got {type(renames).__name__}")
        renames = []
    entries: list[Entry] = []
    for index, raw in enumerate(renames):
        found = _entry_problems(index, raw)
        problems += found
        if not found:
            entries.append(
                Entry(index, raw["protocol"], raw["from"], raw["to"], raw["src"], raw["dest"])
            )
    if not problems:
        problems += _duplicates(entries)
    if problems:
        msg = "invalid rename batch, nothing was read or written"
        raise SyncError(msg, problems, kind="params")
    return entries


def _duplicates(entries: Sequence[Entry]) -> list[str]:
    problems = []
    for word, key in (("from", "source"), ("to", "target")):
        seen: dict[str, int] = {}
        for entry in entries:
            name = getattr(entry, key)
            if name in seen:
                problems.append(
                    f"renames[{seen[name]}] and renames[{entry.index}] share the '{word}' {name!r}"
                )
            seen.setdefault(name, entry.index)
    return problems


def moves_for(entries: Sequence[Entry], state: State) -> tuple[Move, ...]:
    """Return the row renames that bring the registry to ``state``.

    Args:
        entries: The validated batch.
        state: ``applied`` (from -> to, path dest) or ``reverted`` (to -> from, path src).

    Returns:
        One move per entry, in batch order.
    """
    if state == "applied":
        return tuple(Move(e.index, e.protocol, e.source, e.target, e.src, e.dest) for e in entries)
    return tuple(Move(e.index, e.protocol, e.target, e.source, e.dest, e.src) for e in entries)


def affected_names(moves: Sequence[Move]) -> list[str]:
    """Return every name the moves read or write, sorted."""
    return sorted({m.old for m in moves} | {m.new for m in moves})


def removed_names(moves: Sequence[Move]) -> set[str]:
    """Return the names the moves take away without another move taking them."""
    return {m.old for m in moves} - {m.new for m in moves}


def temp_name(batch_id: str, row_id: int) -> str:
    """Return the unique temporary name a row carries between its two updates."""
    return f"{TEMP_PREFIX}{batch_id}__{row_id}"


def _case_problems(moves: Sequence[Move], snapshot: Snapshot) -> list[str]:
    """Report rows that the collation matched but whose name differs from every batch name."""
    wanted = set(affected_names(moves))
    problems = [
        f"registered name {row.name!r} ({row.describe()}) equals a batch name only when case is "
        "ignored; rename that row by hand or fix the manifest"
        for row in snapshot.rows
        if row.name not in wanted
    ]
    problems += [
        f"{hook.describe()} names {hook.script_name!r}, which equals a batch name only when "
        "case is ignored; fix that hook row by hand"
        for hook in snapshot.hooks
        if hook.script_name not in wanted
    ]
    return problems


def _entry_problem(move: Move, rows: Mapping[str, Row], olds: set[str]) -> str:
    """Explain why an entry fits neither the registry before nor after the sync."""
    old_row, new_row = rows.get(move.old), rows.get(move.new)
    label = move.label()
    if old_row is None and new_row is None:
        return f"{label}: unknown name, neither {move.old!r} nor {move.new!r} is registered"
    if old_row is not None and old_row.protocol != move.protocol:
        return (
            f"{label}: protocol mismatch, {move.old!r} is registered as {old_row.describe()}, "
            f"the batch says protocol {move.protocol}"
        )
    if old_row is not None and new_row is not None:
        also = "" if move.new in olds else " and the batch does not rename it away"
        return (
            f"{label}: {move.new!r} is already registered as {new_row.describe()}{also}; "
            f"{move.old!r} is {old_row.describe()}"
        )
    found = new_row.describe() if new_row else "not registered"
    return (
        f"{label}: {move.old!r} is not registered and {move.new!r} is {found}, not protocol "
        f"{move.protocol} with path {move.new_path}"
    )


def _classify(moves: Sequence[Move], rows: Mapping[str, Row]) -> tuple[set[int], set[int]]:
    """Return the indices of the moves that fit the registry before and after the sync.

    A move fits "before" (is pending) when its old name is registered with its protocol and its
    new name is free or renamed away by the batch. It fits "after" (is done) when its new name
    is registered with its protocol and new path, and its old name is gone or another move's
    new name.
    """
    olds = {m.old for m in moves}
    news = {m.new for m in moves}
    pending: set[int] = set()
    done: set[int] = set()
    for move in moves:
        old_row, new_row = rows.get(move.old), rows.get(move.new)
        if (
            old_row is not None
            and old_row.protocol == move.protocol
            and (new_row is None or move.new in olds)
        ):
            pending.add(move.index)
        if (
            new_row is not None
            and new_row.protocol == move.protocol
            and new_row.path == move.new_path
            and (old_row is None or move.old in news)
        ):
            done.add(move.index)
    return pending, done


def plan_sync(moves: Sequence[Move], snapshot: Snapshot) -> Plan:
    """Decide what the sync changes, or why it must not change anything.

    The batch is applied when every move is pending and is a no-op when every move is done
    (see _classify); anything else means the registry was edited outside the sync.

    Args:
        moves: The row renames in the direction of the requested state.
        snapshot: The registry's rows naming any of the moves' names, and the row counts.

    Returns:
        The plan; empty when the registry is already in the requested state.

    Raises:
        SyncError: The registry fits neither state; ``problems`` names every entry concerned.
    """
    problems = _case_problems(moves, snapshot)
    if problems:
        raise SyncError(NOT_WRITTEN, problems, kind="plan")
    rows = snapshot.by_name()
    pending, done = _classify(moves, rows)
    every = {m.index for m in moves}
    if pending == every and done != every:
        return _plan_pending(moves, snapshot)
    if done == every and pending != every:
        return _plan_done(moves, snapshot)
    if not moves:
        return Plan((), ())
    if pending == done == every:
        msg = (
            "the registry looks the same before and after this batch (cycles of names within "
            "one protocol whose paths follow the names), so the sync cannot tell whether it was "
            "applied; nothing was written. Compare the registry with the dump taken before the "
            "window and with the record of the run"
        )
        raise SyncError(msg, [m.label() for m in moves], kind="plan")

    olds = {m.old for m in moves}
    broken = [_entry_problem(m, rows, olds) for m in moves if m.index not in pending | done]
    mixed = _mixed_problems(
        [m for m in moves if m.index in pending - done],
        [m for m in moves if m.index in done - pending],
    )
    if broken:
        unknown = sum(1 for p in broken if ": unknown name," in p)
        summary = NOT_WRITTEN + (f" ({unknown} unknown names)" if unknown else "")
        raise SyncError(summary, broken + mixed, kind="plan")
    msg = (
        "the registry is partly synchronised; the sync is one transaction, so someone else "
        "edited the registry. Nothing was written; restore the registry dump or fix the rows"
    )
    raise SyncError(msg, mixed, kind="plan")


def _mixed_problems(pending: Sequence[Move], done: Sequence[Move]) -> list[str]:
    if not pending or not done:
        return []
    return [
        "already in the requested state: " + ", ".join(m.label() for m in done),
        "not yet in the requested state: " + ", ".join(m.label() for m in pending),
    ]


def _plan_pending(moves: Sequence[Move], snapshot: Snapshot) -> Plan:
    rows = snapshot.by_name()
    warnings = []
    updates = []
    for move in moves:
        row = rows[move.old]
        if row.path != move.old_path:
            warnings.append(
                f"{move.label()}: row id {row.id} had path {row.path!r}, not {move.old_path!r}; "
                f"it is set to {move.new_path!r}"
            )
        updates.append(Update(row.id, row.protocol, row.name, row.path, move.new, move.new_path))
    mapping = {m.old: m.new for m in moves}
    hook_updates = [
        HookUpdate(hook.id, hook.protocol, hook.hook, hook.script_name, mapping[hook.script_name])
        for hook in snapshot.hooks
        if hook.script_name in mapping
    ]
    return Plan(
        tuple(sorted(updates, key=lambda u: u.id)),
        tuple(sorted(hook_updates, key=lambda h: h.id)),
        tuple(warnings),
    )


def _plan_done(moves: Sequence[Move], snapshot: Snapshot) -> Plan:
    gone = removed_names(moves)
    stale = [hook for hook in snapshot.hooks if hook.script_name in gone]
    if stale:
        msg = (
            "the scripts are renamed but hook rows still name their old names; the sync is one "
            "transaction, so someone else edited the registry. Nothing was written; fix the hook "
            "rows or restore the registry dump"
        )
        raise SyncError(
            msg, [f"{h.describe()} names {h.script_name!r}" for h in stale], kind="plan"
        )
    return Plan((), ())


def _script_mismatches(moves: Sequence[Move], plan: Plan, rows: Mapping[str, Row]) -> list[str]:
    found = []
    for move in moves:
        row = rows.get(move.new)
        if row is None:
            found.append(f"{move.label()}: {move.new!r} is not registered")
        elif row.protocol != move.protocol or row.path != move.new_path:
            found.append(
                f"{move.label()}: {move.new!r} is {row.describe()}, expected protocol "
                f"{move.protocol} and path {move.new_path}"
            )
    found += [
        f"{name!r} is still registered as {rows[name].describe()}"
        for name in sorted(removed_names(moves))
        if name in rows
    ]
    found += [
        f"{update.after_name!r} is row id {rows[update.after_name].id}, expected {update.id}"
        for update in plan.updates
        if update.after_name in rows and rows[update.after_name].id != update.id
    ]
    return found


def _hook_mismatches(moves: Sequence[Move], plan: Plan, after: Snapshot) -> list[str]:
    gone = removed_names(moves)
    found = [
        f"{hook.describe()} still names {hook.script_name!r}"
        for hook in after.hooks
        if hook.script_name in gone
    ]
    hooks = {hook.id: hook.script_name for hook in after.hooks}
    found += [
        f"protocol_hooks row id {planned.id} should name {planned.after!r}, names "
        f"{hooks.get(planned.id, 'another script')!r}"
        for planned in plan.hook_updates
        if hooks.get(planned.id) != planned.after
    ]
    return found


def verify_sync(
    moves: Sequence[Move], plan: Plan, counts_before: Counts, after: Snapshot
) -> list[str]:
    """Compare the committed registry with the requested state.

    Args:
        moves: The row renames of the requested state.
        plan: The plan that was committed (empty when there was nothing to do).
        counts_before: The row counts read before the transaction.
        after: A snapshot read over a new connection after COMMIT.

    Returns:
        One finding per mismatch; empty when the registry is as requested.
    """
    found = _script_mismatches(moves, plan, after.by_name())
    found += _hook_mismatches(moves, plan, after)
    for table in ("scripts", "protocol_hooks"):
        before, now = getattr(counts_before, table), getattr(after.counts, table)
        if before != now:
            found.append(f"{table} has {now} rows, {before} before the sync")
    return found


def diff_of(plan: Plan) -> list[dict[str, str]]:
    """Return the diff-mode view of a plan: script rows, then hook rows, before and after."""
    scripts = "scripts (protocol name path)"
    diff = [
        {
            "before_header": scripts,
            "after_header": scripts,
            "before": "".join(
                f"{u.protocol} {u.before_name} {u.before_path}\n" for u in plan.updates
            ),
            "after": "".join(f"{u.protocol} {u.after_name} {u.after_path}\n" for u in plan.updates),
        }
    ]
    if plan.hook_updates:
        hooks = "protocol_hooks (protocol hook script_name)"
        diff.append(
            {
                "before_header": hooks,
                "after_header": hooks,
                "before": "".join(f"{h.protocol} {h.hook} {h.before}\n" for h in plan.hook_updates),
                "after": "".join(f"{h.protocol} {h.hook} {h.after}\n" for h in plan.hook_updates),
            }
        )
    return diff


# ---------------------------------------------------------------------------------------------
# Running: the transaction and the verification, over any Registry.


def apply_plan(registry: Registry, plan: Plan, batch_id: str) -> None:
    """Write the plan inside the open transaction.

    Every affected row first takes a temporary name, so no final name is still held by another
    row of the batch when it is written: chains, swaps and cycles all pass the UNIQUE constraint.

    Raises:
        RuntimeError: The hook update changed a different number of rows than planned.
    """
    for update in plan.updates:
        registry.set_script(update.id, temp_name(batch_id, update.id), None)
    for update in plan.updates:
        registry.set_script(update.id, update.after_name, update.after_path)
    if plan.hook_updates:
        mapping = {hook.before: hook.after for hook in plan.hook_updates}
        changed = registry.rename_hooks(mapping)
        if changed != len(plan.hook_updates):
            msg = f"protocol_hooks: {changed} rows renamed, {len(plan.hook_updates)} planned"
            raise RuntimeError(msg)


def run_sync(
    request: Request,
    connect: Callable[[], Registry],
    *,
    check_mode: bool = False,
    fail_before_commit: bool = False,
) -> Outcome:
    """Plan, apply in one transaction and verify over a new session.

    Args:
        request: The row renames, the batch id and the requested state.
        connect: Opens a new registry session; raises SyncError when it cannot.
        check_mode: Plan only; write nothing.
        fail_before_commit: Raise right before COMMIT (fault injection for tests).

    Returns:
        The outcome.

    Raises:
        SyncError: The login, the plan, the transaction or the verification failed.
    """
    registry = connect()
    try:
        try:
            if not check_mode:
                registry.begin()
            snapshot = registry.read(request.names, lock=not check_mode)
        except Exception as exc:
            msg = f"cannot read the registry ({exc}); nothing was written"
            raise SyncError(msg, kind="read") from exc
        plan = plan_sync(request.moves, snapshot)
        if check_mode or not plan.changes:
            # Ends the read-only transaction and, outside check mode, releases the row locks.
            _rollback_quietly(registry)
        else:
            _write(registry, plan, request.batch_id, fail_before_commit=fail_before_commit)
    except SyncError:
        _rollback_quietly(registry)
        raise
    finally:
        registry.close()
    if check_mode and plan.changes:
        return Outcome(request.state, plan, snapshot.counts, changed=True, verified=False)
    if check_mode:
        mismatches = verify_sync(request.moves, plan, snapshot.counts, snapshot)
        return Outcome(
            request.state,
            plan,
            snapshot.counts,
            changed=False,
            verified=not mismatches,
            mismatches=mismatches,
        )
    return _verified(request, plan, snapshot.counts, connect)


def _write(registry: Registry, plan: Plan, batch_id: str, *, fail_before_commit: bool) -> None:
    try:
        apply_plan(registry, plan, batch_id)
        if fail_before_commit:
            msg = f"{FAULT_ENV}=1 is set: failing on purpose right before COMMIT"
            raise InjectedFaultError(msg)  # noqa: TRY301 - the fault must take the error path
    except Exception as exc:  # any failure inside the transaction is rolled back
        rolled_back = _rollback_quietly(registry)
        how = (
            "the transaction was rolled back"
            if rolled_back
            else "ROLLBACK failed too, and the server discards the uncommitted transaction when "
            "the session ends"
        )
        msg = f"the registry sync failed before COMMIT ({exc}); {how}: the registry is unchanged"
        raise SyncError(msg, kind="write") from exc
    try:
        registry.commit()
    except Exception as exc:
        msg = (
            f"COMMIT failed ({exc}); the outcome is unknown. Run the sync again: it reports "
            "whether the registry is synchronised, and changes nothing if it is"
        )
        raise SyncError(msg, kind="commit", unchanged=False, plan=plan) from exc


def _rollback_quietly(registry: Registry) -> bool:
    try:
        registry.rollback()
    except Exception:  # noqa: BLE001 - the caller reports the original error, which matters more
        return False
    return True


def _verified(
    request: Request, plan: Plan, counts: Counts, connect: Callable[[], Registry]
) -> Outcome:
    unchanged = not plan.changes
    try:
        checker = connect()
    except SyncError as exc:
        msg = f"cannot connect again to verify: {exc}"
        raise SyncError(msg, kind="verify", unchanged=unchanged, plan=plan) from exc
    try:
        after = checker.read(request.names, lock=False)
    except Exception as exc:
        msg = f"cannot read the registry to verify: {exc}"
        raise SyncError(msg, kind="verify", unchanged=unchanged, plan=plan) from exc
    finally:
        _rollback_quietly(checker)
        checker.close()
    mismatches = verify_sync(request.moves, plan, counts, after)
    if mismatches:
        what = "committed sync" if plan.changes else "registry"
        msg = f"the {what} does not match the batch ({request.state})"
        raise SyncError(msg, mismatches, kind="verify", unchanged=unchanged, plan=plan)
    return Outcome(request.state, plan, counts, changed=plan.changes, verified=True)


# ---------------------------------------------------------------------------------------------
# MariaDB through PyMySQL.


@dataclass(frozen=True)
class Login:
    """How to reach the registry database."""

    database: str
    user: str
    password: str = field(repr=False)
    unix_socket: str = "/run/mysqld/mysqld.sock"
    host: str | None = None
    port: int = 3306
    connect_timeout: int = 10
    lock_timeout: int = 30

    def where(self) -> str:
        """Describe the server the login goes to."""
        return f"{self.host}:{self.port}" if self.host else f"socket {self.unix_socket}"

    def scrub(self, text: str) -> str:
        """Return ``text`` without the password."""
        return text.replace(self.password, "********") if self.password else text


class MySQLRegistry:
    """A registry session on MariaDB, with autocommit off."""

    def __init__(self, connection: Any, lock_timeout: int) -> None:  # noqa: ANN401 - PyMySQL
        """Wrap an open PyMySQL connection."""
        self._connection = connection
        self._lock_timeout = lock_timeout

    @classmethod
    def connect(cls, login: Login) -> MySQLRegistry:
        """Open a session, raising SyncError when the server refuses or cannot be reached."""
        pymysql = importlib.import_module("pymysql")
        options: dict[str, Any] = {
            "user": login.user,
            "password": login.password,
            "database": login.database,
            "charset": "utf8mb4",
            "connect_timeout": login.connect_timeout,
            # Explicit: the sync relies on nothing committing before its own COMMIT.
            "autocommit": False,
        }
        if login.host:
            options.update(host=login.host, port=login.port)
        else:
            options["unix_socket"] = login.unix_socket
        try:
            connection = pymysql.connect(**options)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else None
            detail = login.scrub(str(exc))
            kind: ErrorKind = "login" if code in LOGIN_ERRORS else "connect"
            msg = (
                f"cannot log in to database {login.database!r} as {login.user!r} through "
                f"{login.where()}: {detail}"
            )
            raise SyncError(msg, kind=kind) from exc
        return cls(connection, login.lock_timeout)

    def _execute(self, sql: str, args: Sequence[object] = ()) -> Any:  # noqa: ANN401 - PyMySQL
        with self._connection.cursor() as cursor:
            cursor.execute(sql, tuple(args))
            return cursor.fetchall(), cursor.rowcount

    def begin(self) -> None:
        """Start the transaction, with the session's lock wait bounded."""
        self._execute("SET SESSION innodb_lock_wait_timeout = %s", [self._lock_timeout])
        self._execute("START TRANSACTION")

    def read(self, names: Sequence[str], *, lock: bool) -> Snapshot:
        """Read the rows naming ``names`` (locking them with FOR UPDATE) and the row counts."""
        rows: list[Row] = []
        hooks: list[HookRow] = []
        suffix = " FOR UPDATE" if lock else ""
        if names:
            marks = ", ".join(["%s"] * len(names))
            found, _ = self._execute(
                "SELECT id, protocol, name, path FROM scripts "  # noqa: S608 - only placeholders
                f"WHERE name IN ({marks}) ORDER BY id{suffix}",
                names,
            )
            rows = [Row(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in found]
            found, _ = self._execute(
                "SELECT id, protocol, hook, script_name FROM protocol_hooks "  # noqa: S608
                f"WHERE script_name IN ({marks}) ORDER BY id{suffix}",
                names,
            )
            hooks = [HookRow(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in found]
        (scripts,), _ = self._execute("SELECT COUNT(*) FROM scripts")
        (protocol_hooks,), _ = self._execute("SELECT COUNT(*) FROM protocol_hooks")
        return Snapshot(tuple(rows), tuple(hooks), Counts(int(scripts[0]), int(protocol_hooks[0])))

    def set_script(self, row_id: int, name: str, path: str | None) -> None:
        """Rename one row; a final rename also sets the path and the update time."""
        if path is None:
            _, count = self._execute("UPDATE scripts SET name = %s WHERE id = %s", [name, row_id])
        else:
            _, count = self._execute(
                "UPDATE scripts SET name = %s, path = %s, updated_at = CURRENT_TIMESTAMP "
                "WHERE id = %s",
                [name, path, row_id],
            )
        if count != 1:
            msg = f"scripts row id {row_id} was not updated to {name!r} ({count} rows changed)"
            raise RuntimeError(msg)

    def rename_hooks(self, mapping: Mapping[str, str]) -> int:
        """Rename the hook rows in one statement: CASE reads each row's old value once."""
        cases = " ".join(["WHEN %s THEN %s"] * len(mapping))
        marks = ", ".join(["%s"] * len(mapping))
        args: list[str] = [value for pair in mapping.items() for value in pair]
        _, count = self._execute(
            f"UPDATE protocol_hooks SET script_name = CASE script_name {cases} END "  # noqa: S608
            f"WHERE script_name IN ({marks})",
            [*args, *mapping],
        )
        return int(count)

    def commit(self) -> None:
        """Commit the transaction."""
        self._connection.commit()

    def rollback(self) -> None:
        """Roll the transaction back."""
        self._connection.rollback()

    def close(self) -> None:
        """Close the session; the server rolls back anything uncommitted."""
        # An already broken session counts as closed.
        with contextlib.suppress(Exception):
            self._connection.close()


# ---------------------------------------------------------------------------------------------
# Ansible.


def main() -> None:
    """Run the module under Ansible."""
    # Imported here so that the logic above imports without Ansible; AnsiballZ finds module_utils
    # imports anywhere in the file.
    from ansible.module_utils.basic import (  # noqa: PLC0415
        AnsibleModule,
        missing_required_lib,
    )

    module = AnsibleModule(
        argument_spec={
            "login_unix_socket": {"type": "path", "default": "/run/mysqld/mysqld.sock"},
            "login_host": {"type": "str"},
            "login_port": {"type": "int", "default": 3306},
            "login_user": {"type": "str", "default": "root"},
            "login_password": {"type": "str", "default": "", "no_log": True},
            "database": {"type": "str", "required": True},
            # Checked by parse_batch rather than coerced by Ansible, so that a bad value is
            # reported with the entry it is in.
            "renames": {"type": "raw", "required": True},
            "state": {"type": "str", "choices": ["applied", "reverted"], "default": "applied"},
            "batch_id": {"type": "str", "required": True},
            "connect_timeout": {"type": "int", "default": 10},
            "lock_timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    params = module.params
    empty: dict[str, Any] = {"changed": False, "updated": [], "hooks_updated": 0}
    if importlib.util.find_spec("pymysql") is None:
        module.fail_json(
            msg=missing_required_lib("PyMySQL (Debian package python3-pymysql)"),
            error_kind="params",
            problems=[],
            registry_unchanged=True,
            verified=False,
            mismatches=[],
            **empty,
        )
    login = Login(
        database=params["database"],
        user=params["login_user"],
        password=params["login_password"],
        unix_socket=params["login_unix_socket"],
        host=params["login_host"] or None,
        port=params["login_port"],
        connect_timeout=params["connect_timeout"],
        lock_timeout=params["lock_timeout"],
    )
    state: State = params["state"]
    try:
        entries = parse_batch(params["renames"], params["batch_id"])
        outcome = run_sync(
            Request(moves_for(entries, state), params["batch_id"], state),
            lambda: MySQLRegistry.connect(login),
            check_mode=module.check_mode,
            fail_before_commit=os.environ.get(FAULT_ENV) == "1",
        )
    except SyncError as exc:
        written = exc.plan or Plan((), ())
        module.fail_json(
            msg=login.scrub(exc.message()),
            error_kind=exc.kind,
            problems=[login.scrub(p) for p in exc.problems],
            registry_unchanged=exc.unchanged,
            verified=False,
            mismatches=exc.problems if exc.kind == "verify" else [],
            state=state,
            changed=not exc.unchanged,
            updated=[update.to_result() for update in written.updates],
            hooks_updated=len(written.hook_updates),
        )
    for warning in outcome.plan.warnings:
        module.warn(warning)
    # AnsibleModule exposes diff mode only through this attribute.
    module.exit_json(**outcome.to_result(want_diff=module._diff))  # noqa: SLF001


if __name__ == "__main__":
    main()
