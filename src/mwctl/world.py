"""Reference-world generator for the maintenance lab.

A world is a small but complete copy of what the maintenance window works on: a project checkout
whose validation scripts are partly misnumbered (a script of protocol 19 carrying the name of
protocol 18, chains of such names across consecutive protocols, swapped pairs), the protocol files
and gate hooks that reference those scripts, the script registry's tables, the CI cache keys and
the scheduled CI jobs, and the rename manifest that fixes the numbering.

Everything is derived from one seeded random generator and written with fixed timestamps,
ownership and ordering, so the same parameters always produce byte-identical files.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import itertools
import json
import logging
import random
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    # Protocol indices whose names a group uses, then the indices whose slots its scripts take.
    _Placement = tuple[tuple[int, ...], tuple[int, ...]]
    _Maker = Callable[[int, int], _Placement | None]

__all__ = [
    "DEFAULT_PROTOCOLS",
    "DEFAULT_SCRIPTS",
    "DEFAULT_SEED",
    "MAX_SCRIPTS",
    "Misalignment",
    "RenameEntry",
    "Script",
    "World",
    "checkout_files",
    "generate_world",
    "write_world",
]

logger = logging.getLogger(__name__)

DEFAULT_PROTOCOLS: tuple[int, ...] = (18, 19, 20, 21, 22, 23)
DEFAULT_SCRIPTS = 96
DEFAULT_SEED = 1
MAX_SCRIPTS = 50_000

SCRIPTS_DIR = "scripts/validation"
PROTOCOL_TREE = ".cursor/ai-driven-workflow"
HOOKS: tuple[str, str] = ("pre-gate", "post-gate")

# Every archive member and registry row carries this instant, so rebuilt worlds compare equal.
FIXED_MTIME = 1_761_955_200  # 2025-11-01T00:00:00Z
FIXED_TIMESTAMP_SQL = "2025-11-01 00:00:00"
FIXED_TIMESTAMP_ISO = "2025-11-01T00:00:00Z"
CI_SCHEDULE = "*/15 * * * *"
SQL_ROWS_PER_INSERT = 500

TOPIC_WORDS: tuple[str, ...] = (
    "approvals",
    "artifacts",
    "backlog",
    "baseline",
    "checksums",
    "compliance",
    "contracts",
    "coverage",
    "dependencies",
    "docs",
    "evidence",
    "fixtures",
    "gates",
    "handoff",
    "inventory",
    "licenses",
    "lint",
    "metrics",
    "migrations",
    "quality",
    "readiness",
    "release",
    "risks",
    "rollback",
    "schema",
    "secrets",
    "security",
    "signoff",
    "smoke",
    "telemetry",
    "timing",
    "traceability",
)

Kind = Literal["aligned", "chain", "swap", "rename"]


@dataclass(frozen=True)
class Script:
    """One validation script of the world.

    Attributes:
        protocol: The protocol the script belongs to (the number its content checks for).
        topic: The topic word of the script, unique within its protocol.
        name: The file name the script carries in the seeded checkout, right or wrong.
        target: The file name the script must carry, ``validate-p<protocol>-<topic>.sh``.
        hook: The gate hook of its protocol that runs it, ``pre-gate`` or ``post-gate``.
        kind: ``aligned`` for a correctly named script, else the misalignment it is part of.
    """

    protocol: int
    topic: str
    name: str
    target: str
    hook: str
    kind: Kind

    @property
    def misnumbered(self) -> bool:
        """Whether the script's current name differs from its target name."""
        return self.name != self.target

    @property
    def path(self) -> str:
        """The script's current path relative to the project root."""
        return f"{SCRIPTS_DIR}/{self.name}"


@dataclass(frozen=True)
class Misalignment:
    """A group of misnumbered scripts that share one topic.

    Attributes:
        kind: ``chain``, ``swap`` or ``rename`` (a single off-by-one name).
        topic: The topic word shared by every name in the group.
        protocols: The protocol numbers the group's names run through, in rename order. For a
            chain ``(a, b, c)`` the file named for ``a`` belongs to ``b`` and the file named for
            ``b`` belongs to ``c``. For a swap ``(a, b)`` each file carries the other's number.
            For a rename ``(a, b)`` the file named for ``a`` belongs to ``b``.
    """

    kind: Kind
    topic: str
    protocols: tuple[int, ...]


@dataclass(frozen=True)
class RenameEntry:
    """One line of the rename manifest.

    Attributes:
        protocol: The protocol that owns the script.
        source: The script's current (wrong) base name.
        target: The script's correct base name.
    """

    protocol: int
    source: str
    target: str


@dataclass(frozen=True)
class World:
    """A generated reference world.

    Attributes:
        seed: The random seed the world was generated from.
        protocols: The protocol numbers, ascending.
        scripts: Every script, sorted by protocol and current name.
        misalignments: The misnumbered groups, in generation order.
    """

    seed: int
    protocols: tuple[int, ...]
    scripts: tuple[Script, ...]
    misalignments: tuple[Misalignment, ...]

    @functools.cached_property
    def by_protocol(self) -> dict[int, tuple[Script, ...]]:
        """The scripts of each protocol, in the order of ``scripts``."""
        grouped: dict[int, list[Script]] = {p: [] for p in self.protocols}
        for script in self.scripts:
            grouped[script.protocol].append(script)
        return {p: tuple(found) for p, found in grouped.items()}

    @property
    def renames(self) -> tuple[RenameEntry, ...]:
        """The rename manifest: one entry per misnumbered script, sorted."""
        entries = [
            RenameEntry(protocol=s.protocol, source=s.name, target=s.target)
            for s in self.scripts
            if s.misnumbered
        ]
        return tuple(sorted(entries, key=lambda e: (e.protocol, e.source)))

    def count(self, kind: Kind) -> int:
        """Return how many misalignment groups of one kind the world has.

        Args:
            kind: ``chain``, ``swap`` or ``rename``.

        Returns:
            The number of groups of that kind.
        """
        return sum(1 for m in self.misalignments if m.kind == kind)

    @property
    def decoys(self) -> tuple[str, ...]:
        """Near-miss names in the protocol notes that a whole-word rename must leave alone."""
        return tuple(sorted({d for p in self.protocols for d in _decoys_for(self, p)}))

    @property
    def world_id(self) -> str:
        """A short fingerprint of the world's content, stable for the same parameters."""
        canonical = json.dumps(
            {
                "protocols": list(self.protocols),
                "scripts": [[s.protocol, s.name, s.target, s.hook] for s in self.scripts],
                "seed": self.seed,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _validate(protocols: Sequence[int], scripts: int) -> tuple[int, ...]:
    """Check the generator's parameters and return the protocols sorted.

    Args:
        protocols: The requested protocol numbers.
        scripts: The requested number of scripts.

    Returns:
        The protocol numbers in ascending order.

    Raises:
        ValueError: If any parameter is out of its accepted range.
    """
    if len(protocols) == 0:
        msg = "protocols is empty: give at least one protocol number (0 or more)"
        raise ValueError(msg)
    for number in protocols:
        if isinstance(number, bool) or not isinstance(number, int):
            msg = f"protocol {number!r} is not an integer: protocol numbers are integers >= 0"
            # The API promises ValueError for every bad parameter, whatever its kind.
            raise ValueError(msg)  # noqa: TRY004
        if number < 0:
            msg = f"protocol {number} is negative: protocol numbers must be >= 0"
            raise ValueError(msg)
    ordered = tuple(sorted(protocols))
    if len(set(ordered)) != len(ordered):
        repeated = sorted({p for p in ordered if ordered.count(p) > 1})
        msg = f"protocols {repeated} given more than once: each protocol number must be unique"
        raise ValueError(msg)
    if isinstance(scripts, bool) or not isinstance(scripts, int):
        msg = f"scripts {scripts!r} is not an integer: give a count from 1 to {MAX_SCRIPTS}"
        raise ValueError(msg)  # noqa: TRY004
    if scripts < len(ordered):
        msg = (
            f"scripts {scripts} is fewer than the {len(ordered)} protocols: "
            f"accepted range is {len(ordered)} to {MAX_SCRIPTS} (at least one per protocol)"
        )
        raise ValueError(msg)
    if scripts > MAX_SCRIPTS:
        msg = f"scripts {scripts} is too many: accepted range is {len(ordered)} to {MAX_SCRIPTS}"
        raise ValueError(msg)
    return ordered


def _topic_sequence(words: Sequence[str]) -> Iterator[str]:
    """Yield topic words, then the same words with -2, -3 and so on once they run out.

    Args:
        words: The topic words in the order to use them.

    Yields:
        An endless sequence of distinct topics.
    """
    round_number = 1
    while True:
        for word in words:
            yield word if round_number == 1 else f"{word}-{round_number}"
        round_number += 1


class _Planner:
    """Places misalignment groups on protocol slots without name collisions.

    Each protocol index has a number of script slots. A group takes slots where its scripts
    belong and reserves its topic at every protocol whose name it uses, so that no correctly named
    script is later given a name that a misnumbered file occupies or will be renamed to.
    """

    def __init__(self, protocols: tuple[int, ...], scripts: int, rng: random.Random) -> None:
        self.protocols = protocols
        self.rng = rng
        base, extra = divmod(scripts, len(protocols))
        self.free = [base + (1 if i < extra else 0) for i in range(len(protocols))]
        self.reserved: list[set[str]] = [set() for _ in protocols]
        self.groups: list[tuple[Kind, tuple[int, ...]]] = []
        self.misnumbered = 0

    def _take(self, kind: Kind, indices: tuple[int, ...], owners: tuple[int, ...]) -> None:
        for index in owners:
            self.free[index] -= 1
        self.groups.append((kind, indices))
        self.misnumbered += len(owners)

    def _fits(self, owners: Sequence[int]) -> bool:
        need: dict[int, int] = {}
        for index in owners:
            need[index] = need.get(index, 0) + 1
        return all(
            0 <= index < len(self.free) and self.free[index] >= count
            for index, count in need.items()
        )

    @staticmethod
    def _chain(start: int, step: int, length: int) -> _Placement:
        indices = tuple(start + step * k for k in range(length))
        return indices, indices[1:]

    def _chain_candidates(self, length: int) -> list[tuple[int, int]]:
        count = len(self.protocols)
        return [
            (start, step)
            for step in (1, -1)
            for start in range(count)
            if 0 <= start + step * (length - 1) < count
            and self._fits(self._chain(start, step, length)[1])
        ]

    def _pick(self, candidates: list[tuple[int, int]]) -> tuple[int, int] | None:
        return self.rng.choice(candidates) if candidates else None

    def _random_tries(self, make: _Maker) -> tuple[int, int] | None:
        """Try a few random placements before scanning every one, which is slow on big worlds."""
        count = len(self.protocols)
        for _ in range(20):
            start = self.rng.randrange(count)
            step = self.rng.choice((1, -1))
            placed = make(start, step)
            if placed is not None and self._fits(placed[1]):
                return start, step
        return None

    def place_chain(self, length: int) -> bool:
        """Place a chain spanning ``length`` consecutive protocols, if one fits."""

        def make(start: int, step: int) -> _Placement | None:
            if not 0 <= start + step * (length - 1) < len(self.protocols):
                return None
            return self._chain(start, step, length)

        choice = self._random_tries(make) or self._pick(self._chain_candidates(length))
        if choice is None:
            return False
        indices, owners = self._chain(choice[0], choice[1], length)
        self._take("chain", indices, owners)
        return True

    def _swap_candidates(self) -> list[tuple[int, int]]:
        return [(j, 1) for j in range(len(self.protocols) - 1) if self._fits((j, j + 1))]

    def place_swap(self) -> bool:
        """Place a swap of two adjacent protocols' names, if one fits."""

        def make(start: int, _step: int) -> _Placement | None:
            if start + 1 >= len(self.protocols):
                return None
            return (start, start + 1), (start, start + 1)

        choice = self._random_tries(make) or self._pick(self._swap_candidates())
        if choice is None:
            return False
        pair = (choice[0], choice[0] + 1)
        self._take("swap", pair, pair)
        return True

    def place_rename(self) -> bool:
        """Place one script named for the protocol next to its own, if one fits."""

        def make(start: int, step: int) -> _Placement | None:
            if not 0 <= start + step < len(self.protocols):
                return None
            return (start, start + step), (start + step,)

        choice = self._random_tries(make)
        if choice is None:
            count = len(self.protocols)
            choice = self._pick(
                [
                    (start, step)
                    for step in (1, -1)
                    for start in range(count)
                    if 0 <= start + step < count and self._fits((start + step,))
                ]
            )
        if choice is None:
            return False
        start, step = choice
        self._take("rename", (start, start + step), (start + step,))
        return True

    def place_required(self) -> None:
        """Place the chain and the swap every world of 5+ scripts on 3+ protocols must have."""
        candidates = self._chain_candidates(3)
        self.rng.shuffle(candidates)
        for start, step in candidates:
            _indices, owners = self._chain(start, step, 3)
            for index in owners:
                self.free[index] -= 1
            swap_fits = bool(self._swap_candidates())
            for index in owners:
                self.free[index] += 1
            if swap_fits:
                self._take("chain", *self._chain(start, step, 3))
                self.place_swap()
                return
        # Unreachable with an even split of at least 5 scripts over at least 3 protocols.
        msg = "no room for the required chain and swap"
        raise AssertionError(msg)


def generate_world(protocols: Sequence[int], scripts: int, seed: int) -> World:
    """Generate a reference world.

    About a third of the scripts are misnumbered. A world with at least 5 scripts over at least
    3 protocols always has a chain spanning 3 or more protocols and a swap; the rest of the
    misnumbered scripts are single off-by-one names. A single-protocol world has none, since a
    name can only be wrong towards another protocol.

    Args:
        protocols: The protocol numbers (each >= 0, unique, in any order).
        scripts: The number of scripts, from one per protocol up to 50,000.
        seed: The random seed; the same parameters always give the same world.

    Returns:
        The generated world.

    Raises:
        ValueError: If a parameter is out of its accepted range; the message names it.
    """
    ordered = _validate(protocols, scripts)
    # Reproducibility is the point here, not unpredictability.
    rng = random.Random(seed)  # noqa: S311
    words = list(TOPIC_WORDS)
    rng.shuffle(words)

    planner = _Planner(ordered, scripts, rng)
    count = len(ordered)
    if scripts >= 5 and count >= 3:  # noqa: PLR2004 - the documented guarantee's thresholds
        planner.place_required()
    goal = round(scripts / 3)
    while count >= 2 and planner.misnumbered < goal:  # noqa: PLR2004 - a pair is the minimum
        draw = rng.random()
        placed = False
        if draw < 0.15 and count >= 3:  # noqa: PLR2004
            placed = planner.place_chain(rng.randint(3, min(count, 5)))
        elif draw < 0.3:  # noqa: PLR2004
            placed = planner.place_swap()
        if not placed and not planner.place_rename():
            break

    topics = _topic_sequence(words)
    found: list[Script] = []
    groups: list[Misalignment] = []
    for kind, indices in planner.groups:
        topic = next(topics)
        numbers = tuple(ordered[i] for i in indices)
        for index in indices:
            planner.reserved[index].add(topic)
        groups.append(Misalignment(kind=kind, topic=topic, protocols=numbers))
        found.extend(_group_scripts(kind, topic, numbers))

    for index, protocol in enumerate(ordered):
        candidates = _topic_sequence(words)
        for _ in range(planner.free[index]):
            topic = next(t for t in candidates if t not in planner.reserved[index])
            planner.reserved[index].add(topic)
            name = _script_name(protocol, topic)
            found.append(Script(protocol, topic, name, name, "", "aligned"))

    found.sort(key=lambda s: (s.protocol, s.topic))
    hooked = [
        Script(s.protocol, s.topic, s.name, s.target, rng.choice(HOOKS), s.kind) for s in found
    ]
    hooked.sort(key=lambda s: (s.protocol, s.name))
    world = World(seed=seed, protocols=ordered, scripts=tuple(hooked), misalignments=tuple(groups))
    logger.debug(
        "Generated world %s: %d scripts, %d chains, %d swaps, %d renames",
        world.world_id,
        len(world.scripts),
        world.count("chain"),
        world.count("swap"),
        world.count("rename"),
    )
    return world


def _script_name(protocol: int, topic: str) -> str:
    return f"validate-p{protocol}-{topic}.sh"


def _group_scripts(kind: Kind, topic: str, numbers: tuple[int, ...]) -> list[Script]:
    """Return the misnumbered scripts of one group.

    Args:
        kind: The group's kind.
        topic: The group's topic.
        numbers: The group's protocol numbers in rename order.

    Returns:
        The group's scripts, each carrying its wrong name.
    """
    if kind == "swap":
        first, second = numbers
        return [
            Script(first, topic, _script_name(second, topic), _script_name(first, topic), "", kind),
            Script(
                second, topic, _script_name(first, topic), _script_name(second, topic), "", kind
            ),
        ]
    # A chain or a rename: each file is named for the protocol before its owner in the group.
    return [
        Script(owner, topic, _script_name(named, topic), _script_name(owner, topic), "", kind)
        for named, owner in itertools.pairwise(numbers)
    ]


def _decoys_for(world: World, protocol: int) -> list[str]:
    """Return the near-miss names written into one protocol's history note.

    Args:
        world: The world.
        protocol: The protocol whose note is written.

    Returns:
        Three names that contain a real script name but are not that name as a whole word.
    """
    own = list(world.by_protocol[protocol])
    wrong = [s for s in own if s.misnumbered]
    base = (wrong or own)[0].name
    return [f"{base}.bak", f"legacy-{base}", f"{base}x"]


def _script_body(script: Script) -> str:
    """Return the shell source of one validation script.

    Args:
        script: The script.

    Returns:
        The POSIX shell source; it checks its own file name against its protocol.
    """
    return f"""#!/bin/sh
# Validation gate "{script.topic}" of protocol {script.protocol}.
# The protocol number lives in the content, not only in the file name, so --self-test can tell
# when a file carries another protocol's number.
set -u

protocol={script.protocol}
topic={script.topic}
expected="validate-p${{protocol}}-${{topic}}.sh"
self=$(basename -- "$0")
root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
evidence_dir=${{EVIDENCE_DIR:-$root/evidence}}

status=pass
rc=0
case "${{1:-}}" in
    --self-test)
        if [ "$self" != "$expected" ]; then
            echo "numbering mismatch: $self belongs to protocol $protocol" >&2
            status=fail
            rc=1
        fi
        ;;
    "")
        if [ ! -d "$root/{PROTOCOL_TREE}/protocol-$protocol" ]; then
            echo "protocol-$protocol is missing under $root/{PROTOCOL_TREE}" >&2
            status=fail
            rc=1
        fi
        ;;
    *)
        echo "usage: $self [--self-test]" >&2
        exit 2
        ;;
esac

mkdir -p -- "$evidence_dir" || exit 2
printf '{{"name": "%s", "protocol": %s, "topic": "%s", "status": "%s", "timestamp": "%s"}}\\n' \\
    "$self" "$protocol" "$topic" "$status" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \\
    > "$evidence_dir/${{self%.sh}}.json" || exit 2
exit "$rc"
"""


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _protocol_doc(world: World, protocol: int) -> str:
    """Return the protocol.md of one protocol.

    Real references are followed only by a space, a backtick or a line end, so a rename that
    treats letters, digits, dots and dashes as word characters finds them all, while the history
    note's near-miss names must stay untouched.

    Args:
        world: The world.
        protocol: The protocol.

    Returns:
        The Markdown text.
    """
    own = list(world.by_protocol[protocol])
    lines = [
        f"# Protocol {protocol}",
        "",
        f"Quality gates of protocol {protocol}. The hooks in `hooks/` run the validation scripts",
        "below from the project root; each script writes its evidence under `evidence/`.",
        "",
        "## Validation scripts",
        "",
        "| Script | Hook | Path |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{s.name}` | {s.hook} | {s.path} |" for s in own]
    first = own[0]
    decoy_bak, decoy_legacy, decoy_x = _decoys_for(world, protocol)
    lines += [
        "",
        "To check one script by hand, run it from the project root, for example:",
        "",
        f"    sh {first.path} --self-test",
        "",
        "## History",
        "",
        "Earlier releases kept archived copies beside the gates; no hook runs them any more:",
        "",
        f"- {decoy_bak} (a backup taken before a gate was rewritten)",
        f"- {decoy_legacy} (the wrapper of the old runner)",
        f"- {decoy_x} (an experiment with an extended shell)",
        "",
    ]
    return "\n".join(lines)


def _hook_doc(world: World, protocol: int, hook: str) -> str:
    """Return one gate hook file of one protocol.

    Args:
        world: The world.
        protocol: The protocol.
        hook: ``pre-gate`` or ``post-gate``.

    Returns:
        The YAML text.
    """
    paths = [s.path for s in world.by_protocol[protocol] if s.hook == hook]
    lines = [
        "---",
        f"# Scripts the {hook} hook of protocol {protocol} runs, in order, from the project root.",
        f"protocol: {protocol}",
        f"hook: {hook}",
    ]
    if paths:
        lines.append("scripts:")
        lines += [f"  - {path}" for path in paths]
    else:
        lines.append("scripts: []")
    return "\n".join(lines) + "\n"


def _protocol_list(world: World) -> str:
    return ", ".join(str(p) for p in world.protocols)


def _readme(world: World) -> str:
    return "\n".join(
        [
            "# Project checkout (maintenance lab reference world)",
            "",
            f"Generated from seed {world.seed} for protocols {_protocol_list(world)}.",
            "",
            f"- `{SCRIPTS_DIR}/`: the validation scripts, `validate-p<N>-<topic>.sh`",
            f"- `{PROTOCOL_TREE}/protocol-<N>/`: each protocol's notes and gate hooks",
            "- `evidence/`: written by the scripts when they run; not tracked",
            "",
            "Run any script with `--self-test` to check that its file name matches its protocol.",
            "",
        ]
    )


def checkout_files(world: World) -> dict[str, tuple[str, int]]:
    """Return the files of the world's project checkout.

    Args:
        world: The world.

    Returns:
        A map from path relative to the project root to (content, file mode).
    """
    files: dict[str, tuple[str, int]] = {
        ".gitignore": ("evidence/\n", 0o644),
        "README.md": (_readme(world), 0o644),
    }
    for script in world.scripts:
        files[script.path] = (_script_body(script), 0o755)
    for protocol in world.protocols:
        base = f"{PROTOCOL_TREE}/protocol-{protocol}"
        files[f"{base}/protocol.md"] = (_protocol_doc(world, protocol), 0o644)
        for hook in HOOKS:
            files[f"{base}/hooks/{hook}.yaml"] = (_hook_doc(world, protocol, hook), 0o644)
    return files


def _checkout_tarball(world: World) -> bytes:
    """Return the checkout as a reproducible gzip-compressed tar archive.

    Args:
        world: The world.

    Returns:
        The archive bytes: sorted members, fixed mtime, root ownership, gzip mtime 0.
    """
    files = checkout_files(world)
    directories: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for path in sorted(directories | set(files)):
            info = tarfile.TarInfo(path)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path in directories:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
                continue
            content, mode = files[path]
            data = content.encode()
            info.mode = mode
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as stream:
        stream.write(raw.getvalue())
    return packed.getvalue()


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _registry_sql(world: World) -> str:
    """Return the registry's DDL and rows, with no database selected.

    Args:
        world: The world.

    Returns:
        The SQL text: the scripts and protocol_hooks tables and their rows.
    """
    lines = [
        f"-- Script registry of the reference world (seed {world.seed}, id {world.world_id}).",
        "-- Import into the registry database; the file selects no database of its own.",
        "SET NAMES utf8mb4;",
        "",
        "CREATE TABLE scripts (",
        "  id INT AUTO_INCREMENT PRIMARY KEY,",
        "  protocol INT NOT NULL,",
        "  name VARCHAR(255) NOT NULL UNIQUE,",
        "  path VARCHAR(512) NOT NULL,",
        "  checksum CHAR(64) NOT NULL,",
        f"  updated_at TIMESTAMP NOT NULL DEFAULT '{FIXED_TIMESTAMP_SQL}'",
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;",
        "",
        "CREATE TABLE protocol_hooks (",
        "  id INT AUTO_INCREMENT PRIMARY KEY,",
        "  protocol INT NOT NULL,",
        "  hook VARCHAR(64) NOT NULL,",
        "  script_name VARCHAR(255) NOT NULL",
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;",
    ]
    script_rows = [
        f"({i}, {s.protocol}, {_sql_text(s.name)}, {_sql_text(s.path)}, "
        f"{_sql_text(_checksum(_script_body(s)))}, {_sql_text(FIXED_TIMESTAMP_SQL)})"
        for i, s in enumerate(world.scripts, start=1)
    ]
    hooks = sorted((s.protocol, s.hook, s.name) for s in world.scripts)
    hook_rows = [
        f"({i}, {protocol}, {_sql_text(hook)}, {_sql_text(name)})"
        for i, (protocol, hook, name) in enumerate(hooks, start=1)
    ]
    lines += _inserts("scripts (id, protocol, name, path, checksum, updated_at)", script_rows)
    lines += _inserts("protocol_hooks (id, protocol, hook, script_name)", hook_rows)
    return "\n".join(lines) + "\n"


def _inserts(table: str, rows: list[str]) -> list[str]:
    """Return INSERT statements in chunks small enough for the default packet size.

    Args:
        table: The table name with its column list.
        rows: The rendered value tuples.

    Returns:
        The statement lines.
    """
    lines: list[str] = []
    for start in range(0, len(rows), SQL_ROWS_PER_INSERT):
        chunk = rows[start : start + SQL_ROWS_PER_INSERT]
        lines += ["", f"INSERT INTO {table} VALUES"]
        lines += [f"  {row}," for row in chunk[:-1]]
        lines.append(f"  {chunk[-1]};")
    return lines


def _cache_commands(world: World) -> str:
    """Return the Redis commands that fill the CI cache, one per line.

    The last lines set keys that belong to other applications on the same Redis, which a cache
    clear limited to the CI prefix must keep.

    Args:
        world: The world.

    Returns:
        The commands, newline-terminated.
    """
    ours: list[str] = []
    for protocol in world.protocols:
        own = list(world.by_protocol[protocol])
        ours.append(f"SET ci:protocol:{protocol}:scripts {len(own)}")
        ours.append(f"SET ci:protocol:{protocol}:last-run {FIXED_TIMESTAMP_ISO}")
    ours += [f"SET ci:script:{s.name}:sha256 {_checksum(_script_body(s))}" for s in world.scripts]
    rng = random.Random(f"cache-{world.seed}")  # noqa: S311 - reproducible filler, not a secret
    foreign = [
        f"SET session:{rng.getrandbits(64):016x} user-{rng.randint(1, 99)}" for _ in range(3)
    ]
    foreign.append(f"SET ratelimit:api:{rng.getrandbits(32):08x} {rng.randint(1, 50)}")
    return "\n".join(sorted(ours) + sorted(foreign)) + "\n"


def _ci_jobs(world: World) -> str:
    jobs = [
        {"id": f"validate-p{p}", "protocol": p, "schedule": CI_SCHEDULE} for p in world.protocols
    ]
    return json.dumps({"jobs": jobs}, indent=2, sort_keys=True) + "\n"


def _manifest(world: World) -> str:
    lines = [
        "---",
        f"# Renames that fix the validation scripts' numbering (seed {world.seed}).",
        "# Names are relative to mw_scripts_dir; protocol is the script's owning protocol.",
    ]
    entries = world.renames
    if not entries:
        return "\n".join([*lines, "mw_rename_manifest: []"]) + "\n"
    lines.append("mw_rename_manifest:")
    for entry in entries:
        lines += [
            f"  - protocol: {entry.protocol}",
            f"    from: {entry.source}",
            f"    to: {entry.target}",
        ]
    return "\n".join(lines) + "\n"


def _summary(world: World) -> str:
    summary = {
        "counts": {
            "chains": world.count("chain"),
            "misnumbered": sum(1 for s in world.scripts if s.misnumbered),
            "renames": world.count("rename"),
            "swaps": world.count("swap"),
        },
        "decoys": list(world.decoys),
        "id": world.world_id,
        "misalignments": [
            {"kind": m.kind, "protocols": list(m.protocols), "topic": m.topic}
            for m in world.misalignments
        ],
        "protocols": list(world.protocols),
        "script_count": len(world.scripts),
        "scripts": [
            {"hook": s.hook, "name": s.name, "protocol": s.protocol, "target": s.target}
            for s in world.scripts
        ],
        "seed": world.seed,
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def write_world(world: World, out_dir: Path) -> None:
    """Write the world's files into a directory, creating it if needed.

    Writes ``checkout.tar.gz``, ``registry.sql``, ``cache.txt``, ``ci_jobs.json``,
    ``manifest.yml`` and ``world.json``; existing files of those names are replaced.

    Args:
        world: The world to write.
        out_dir: The directory to write into.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, bytes] = {
        "cache.txt": _cache_commands(world).encode(),
        "checkout.tar.gz": _checkout_tarball(world),
        "ci_jobs.json": _ci_jobs(world).encode(),
        "manifest.yml": _manifest(world).encode(),
        "registry.sql": _registry_sql(world).encode(),
        "world.json": _summary(world).encode(),
    }
    for name, data in sorted(outputs.items()):
        (out_dir / name).write_bytes(data)
    logger.info("Wrote world %s (seed %d) to %s", world.world_id, world.seed, out_dir)
