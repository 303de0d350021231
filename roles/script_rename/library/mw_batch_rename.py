#!/usr/bin/python
"""Rename a batch of files under one root as a single journalled, recoverable operation.

The logic is plain Python (validate_batch, plan_references, plan_drive, Driver, run_batch) so
that it can be imported and tested without Ansible; main() is the thin AnsibleModule wrapper.
"""
# Paths stay plain strings handed to os-level calls (rename, O_EXCL open, fsync of directories):
# the module does a few syscalls per file for thousands of files, and those calls are the point.
# ruff: noqa: PTH101, PTH103, PTH104, PTH105, PTH106, PTH108, PTH110, PTH112, PTH114, PTH116
# ruff: noqa: PTH117, PTH118, PTH119, PTH120, PTH123

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mw_batch_rename
short_description: Rename a batch of files and the references to them as one recoverable operation
description:
  - Renames every file of a batch under O(root) in one operation and replaces, in the files
    listed by O(reference_paths), every whole-word occurrence of an old file name by its new name.
  - The whole batch is validated before anything is touched. All problems are reported together,
    each naming the offending entry as C(renames[INDEX]) (counted from 0) with its src and dest.
  - Chains (C(a->b), C(b->c)), swaps and longer cycles work, because every file is first moved to
    a temporary name (C(.mwtmp-BATCH_ID-INDEX) in the source directory) and only then to its
    target.
  - Before the first rename a journal is written to O(journal_dir) and made durable (fsync of the
    file and of its directory). It records the pairs, the temporary names, the phase reached, and
    for each reference file its path and the SHA-256 of its contents before and after the
    update; the original bytes of the reference files are saved next to it. The phase is
    updated after each step, so a run killed at any point (OOM killer, lost connection, power
    cut) is finished or undone by the next run, see O(on_incomplete).
  - Reference files are rewritten through a temporary file in the same directory, fsynced and
    moved over the original with C(os.replace), keeping mode, owner and group.
  - A rerun of a completed batch changes nothing. Without a journal, a tree in which every
    target exists and no source remains is also reported as already applied.
version_added: "1.0.0"
author:
  - Maintenance window project contributors
options:
  root:
    description:
      - Absolute path of the managed tree, for example C(/opt/project).
      - Every path in O(renames) and O(reference_paths) is relative to it and must stay inside
        it once symlinks are resolved.
    type: path
    required: true
  renames:
    description:
      - The batch, as a list of mappings with exactly the keys C(src) and C(dest), each a path
        relative to O(root).
      - Sources must be regular files or symlinks whose target is inside O(root); directories
        are not renamed. The directory of each target must already exist and be on the same
        filesystem as the source.
      - A target may exist only if it is itself renamed away in the same batch.
      - Every path segment must match C(^[A-Za-z0-9][A-Za-z0-9._+-]*$) and be at most 255
        bytes. Spaces, control characters, non-ASCII characters, leading dots (hidden files),
        C(.) and C(..) segments, empty segments and absolute paths are rejected, because such
        names break hook references and shell-based CI.
      - The same source twice, the same target twice, a source equal to its target and
        repeated entries are rejected.
      - An empty list is a no-op.
    type: list
    elements: dict
    required: true
  reference_paths:
    description:
      - Files or directories, relative to O(root), whose contents name the renamed files.
        Directories are walked recursively in one pass; C(.git) directories and symlinks are
        skipped, only regular files are read. Files with a NUL byte in their first 8 KiB are
        treated as binary and left alone.
      - In each file, every whole-word occurrence of the basename of a source is replaced by
        the basename of its target. Whole word means that the occurrence is neither preceded
        nor followed by one of C(A-Z a-z 0-9 . _ + -); so C(validate-p18-x.sh) is not replaced
        inside C(validate-p18-x.sh.bak), C(old-validate-p18-x.sh) or at the end of a sentence
        written as C(validate-p18-x.sh.).
      - When this is set, two entries that rename the same basename to different basenames are
        rejected, because a reference to that basename could not be resolved.
    type: list
    elements: path
    default: []
  batch_id:
    description:
      - Name of the batch. The journal is C(JOURNAL_DIR/BATCH_ID.json), the saved originals of
        the reference files C(JOURNAL_DIR/BATCH_ID.orig).
      - Must match C(^[A-Za-z0-9][A-Za-z0-9._+-]*$), at most 64 characters.
      - Reusing a batch_id for a different list of renames is rejected unless its journal
        records a reverted batch.
    type: str
    required: true
  journal_dir:
    description:
      - Directory holding the journals, outside O(root) so that a checked-out tree stays
        clean. Created with mode C(0700) if missing. Must not be inside O(root).
    type: path
    default: /var/lib/maintenance-window/journal
  state:
    description:
      - V(applied) renames the batch and updates the references.
      - V(reverted) undoes the batch recorded in the journal, completed or interrupted, by the
        inverse renames and by restoring the saved original contents of the reference files.
        Without a journal, a tree that still shows every source is a no-op; reverting twice
        changes nothing the second time.
    type: str
    choices: [applied, reverted]
    default: applied
  on_incomplete:
    description:
      - What to do when the journal of this batch shows that an earlier run was interrupted,
        with O(state=applied).
      - V(forward) finishes the batch, V(back) restores the tree to what it was before the
        batch and then fails, so that the tasks after this one do not run against a tree that
        was not renamed. The result reports which was done in RV(recovered).
      - With O(state=reverted) an interrupted batch is always rolled back.
    type: str
    choices: [forward, back]
    default: forward
notes:
  - Supports check mode (validates, reports the renames and reference updates that would be
    made, writes nothing, not even the journal) and diff mode.
  - Without a journal, a batch made only of swaps or cycles cannot be told apart from its
    applied state, so it is applied again. Keep the journal until the window is closed.
  - References are matched by basename. If a file with the same basename exists elsewhere and
    is not renamed, references to it are rewritten as well.
  - Reference files are read into memory; point O(reference_paths) at hooks and protocol
    files, not at large data trees. Hard links of a reference file are not kept (the file is
    replaced), nor are extended attributes and ACLs.
  - Renames use C(rename(2)), which replaces an existing target. All targets are checked before
    the first rename, so only a process writing into the tree during the run could lose a
    file; stop such writers for the window. Two runs of the same batch exclude each other with
    a lock file in O(journal_dir).
"""

EXAMPLES = r"""
- name: Rename the protocol 18 validation scripts and update the hooks naming them
  mw_batch_rename:
    root: /opt/project
    batch_id: p18-numbering
    renames:
      - src: scripts/validation/validate-p18-evidence.sh
        dest: scripts/validation/validate-p19-evidence.sh
      - src: scripts/validation/validate-p19-gates.sh
        dest: scripts/validation/validate-p20-gates.sh
    reference_paths:
      - hooks
      - protocols/protocol-18.md

- name: Swap two scripts whose numbers were exchanged
  mw_batch_rename:
    root: /opt/project
    batch_id: p21-swap
    renames:
      - {src: scripts/validate-p21-a.sh, dest: scripts/validate-p21-b.sh}
      - {src: scripts/validate-p21-b.sh, dest: scripts/validate-p21-a.sh}

- name: Undo the protocol 18 batch from its journal
  mw_batch_rename:
    root: /opt/project
    batch_id: p18-numbering
    renames: "{{ script_rename_p18_renames }}"
    state: reverted

- name: Back out a batch that an earlier run left half done
  mw_batch_rename:
    root: /opt/project
    batch_id: p18-numbering
    renames: "{{ script_rename_p18_renames }}"
    on_incomplete: back
"""

RETURN = r"""
changed:
  description: Whether files were renamed or reference files rewritten (or would be, in check
    mode).
  returned: always
  type: bool
renamed:
  description:
    - The renames made by this run (to be made, in check mode), in batch order.
    - With O(state=reverted) these are the inverse renames, from the target back to the source.
    - Empty when nothing had to be renamed.
  returned: always
  type: list
  elements: dict
  contains:
    src:
      description: Path the file had before this run, relative to O(root).
      type: str
    dest:
      description: Path the file has after this run, relative to O(root).
      type: str
  sample: [{"src": "scripts/validate-p18-a.sh", "dest": "scripts/validate-p19-a.sh"}]
references_updated:
  description: Reference files rewritten by this run (to be rewritten, in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path of the file, relative to O(root), where it is after the run.
      type: str
    replacements:
      description: Number of names replaced (or restored) in the file.
      type: int
  sample: [{"path": "hooks/pre-commit", "replacements": 3}]
journal:
  description: Path of the journal of this batch (where it would be written, in check mode).
  returned: always
  type: str
  sample: /var/lib/maintenance-window/journal/p18-numbering.json
recovered:
  description: V(forward) or V(back) when an interrupted earlier run was finished or undone,
    null otherwise.
  returned: always
  type: str
  sample: forward
errors:
  description: Every problem found, one string per problem, each naming the entry
    C(renames[INDEX]) with its src and dest or the reference path concerned.
  returned: failure
  type: list
  elements: str
  sample: ["renames[2] (src='scripts/a.sh', dest='scripts/b.sh'): source does not exist"]
diff:
  description: In diff mode, one entry listing the renames as C(old -> new) lines, then one
    entry per reference file with its contents before and after. Files over 64 KiB show only
    their changed lines, which the header says.
  returned: when diff mode is on and something changes
  type: list
  elements: dict
"""

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
MAX_NAME_BYTES = 255
MAX_BATCH_ID_LENGTH = 64
DEFAULT_JOURNAL_DIR = "/var/lib/maintenance-window/journal"
JOURNAL_FORMAT = 1
# Valid names never start with a dot, so these can never collide with a name in a batch.
RENAME_TEMP_PREFIX = ".mwtmp-"
REFERENCE_TEMP_PREFIX = ".mwref-"
DIFF_MAX_BYTES = 64 * 1024
BINARY_SNIFF_BYTES = 8192
MESSAGE_MAX_ERRORS = 20
# fsync waits on the device; a few in flight at once let the filesystem commit them together.
FSYNC_WORKERS = 16
# Crash-recovery tests need the module to die at an exact point between two renames, the way
# the OOM killer or a dropped SSH connection would stop it; nothing else sets this variable.
FAULT_ENV = "MW_FAULT_KILL_AFTER_RENAMES"

_NAME_RE = re.compile(NAME_PATTERN)
# One pass over the bytes: runs of name characters alternate with everything else, and the
# runs are looked up in a dict, which stays fast for thousands of names.
_TOKEN_SPLIT_RE = re.compile(rb"([A-Za-z0-9._+-]+)")

State = Literal["applied", "reverted"]
Direction = Literal["forward", "back"]
Location = Literal["src", "temp", "dest"]

# Where a file that is not at its temporary name sits, for each journal phase. Forward:
# prepared -> to_temp_done -> renamed -> complete. Back: revert_started -> revert_refs_done ->
# revert_to_temp_done -> reverted. The side only changes once a whole pass to the temporary
# names is done, which is what makes every interrupted state readable.
PHASE_SIDE: dict[str, Location] = {
    "prepared": "src",
    "to_temp_done": "dest",
    "renamed": "dest",
    "complete": "dest",
    "revert_started": "dest",
    "revert_refs_done": "dest",
    "revert_to_temp_done": "src",
    "reverted": "src",
}


class BatchError(Exception):
    """A batch that cannot be applied or recovered; ``errors`` lists every problem found.

    ``changed`` is true when the failure came after the tree may have been changed.
    """

    def __init__(self, summary: str, errors: Sequence[str] = (), *, changed: bool = False) -> None:
        """Keep the one-line summary, the full list of problems and whether files moved."""
        super().__init__(summary)
        self.summary = summary
        self.errors = list(errors)
        self.changed = changed

    def __str__(self) -> str:
        """Return the same text as message()."""
        return self.message()

    def message(self) -> str:
        """Return the summary followed by the first problems, readable in a task failure."""
        if not self.errors:
            return self.summary
        shown = "; ".join(self.errors[:MESSAGE_MAX_ERRORS])
        hidden = len(self.errors) - MESSAGE_MAX_ERRORS
        more = f"; ... and {hidden} more (see errors)" if hidden > 0 else ""
        return f"{self.summary}: {shown}{more}"


@dataclass(frozen=True)
class RenamePair:
    """One rename of the batch; ``index`` is its position in the requested list."""

    index: int
    src: str
    dest: str
    temp: str

    def label(self) -> str:
        """Name the entry the way error messages do."""
        return f"renames[{self.index}] (src={self.src!r}, dest={self.dest!r})"


@dataclass(frozen=True)
class ReferenceRecord:
    """A reference file of the batch as the journal records it."""

    path: str
    path_after: str
    pair: int | None
    sha256_before: str
    sha256_after: str
    replacements: int
    offset: int
    length: int


@dataclass
class Journal:
    """Durable record of a batch: what it renames, which files it rewrites, how far it got."""

    batch_id: str
    root: str
    phase: str
    pairs: list[RenamePair]
    references: list[ReferenceRecord]

    def to_json(self) -> dict[str, Any]:
        """Return the journal as a JSON-serialisable mapping."""
        return {
            "format": JOURNAL_FORMAT,
            "batch_id": self.batch_id,
            "root": self.root,
            "phase": self.phase,
            "pairs": [vars(pair) for pair in self.pairs],
            "references": [vars(ref) for ref in self.references],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Journal:
        """Rebuild a journal from its JSON mapping; raise KeyError/TypeError if it is malformed."""
        if data["format"] != JOURNAL_FORMAT or data["phase"] not in PHASE_SIDE:
            msg = f"unknown journal format {data['format']!r} or phase {data['phase']!r}"
            raise TypeError(msg)
        return cls(
            batch_id=str(data["batch_id"]),
            root=str(data["root"]),
            phase=str(data["phase"]),
            pairs=[RenamePair(**pair) for pair in data["pairs"]],
            references=[ReferenceRecord(**ref) for ref in data["references"]],
        )

    def side(self) -> Location:
        """Return where a file not at its temporary name sits in the current phase."""
        return PHASE_SIDE[self.phase]


@dataclass(frozen=True)
class BatchParams:
    """The module parameters, as the plain-Python entry point takes them."""

    root: str
    renames: object
    batch_id: str
    reference_paths: Sequence[object] = ()
    journal_dir: str = DEFAULT_JOURNAL_DIR
    state: State = "applied"
    on_incomplete: Direction = "forward"


@dataclass
class Outcome:
    """What a run did (or would do, in check mode), shaped like the module result."""

    changed: bool
    journal: str
    renamed: list[dict[str, str]] = field(default_factory=list)
    references_updated: list[dict[str, Any]] = field(default_factory=list)
    recovered: Direction | None = None
    diff: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None


class FaultInjector:
    """Kill the process by SIGKILL right after a chosen number of rename syscalls.

    The count covers both rename passes and then the ``os.replace`` of each reference file, so
    a test can stop a run at every point a real crash could; 0 stops it once the journal is
    written, before the first rename.
    """

    def __init__(self, kill_after: int | None = None) -> None:
        """Arm the injector; ``None`` disarms it."""
        self.kill_after = kill_after
        self.done = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FaultInjector:
        """Read the kill point from the environment, if a test set one."""
        raw = environ.get(FAULT_ENV)
        if raw is None or raw == "":
            return cls()
        try:
            return cls(int(raw))
        except ValueError:
            msg = f"{FAULT_ENV} must be an integer, got {raw!r}"
            raise BatchError(msg) from None

    def start(self) -> None:
        """Stop before the first rename when asked to stop after none."""
        if self.kill_after == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def renamed_one(self) -> None:
        """Count one rename syscall and stop if it was the chosen one."""
        self.done += 1
        if self.kill_after is not None and self.done == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


class PathResolver:
    """Resolve and look up paths relative to the real root, for the checks made before a run.

    Directory facts (real path, status, listing) are cached the first time they are asked
    for, so that checking thousands of names costs one scandir per directory rather than
    several syscalls per name. A resolver therefore describes the tree as it was before the
    run changed anything; the code that renames does not ask it whether a path exists.
    """

    def __init__(self, root: str) -> None:
        """Take the real (symlink-free) path of the root."""
        self.root = os.path.realpath(root)
        self._real_dirs: dict[str, str] = {}
        self._dir_status: dict[str, tuple[str | None, int | None]] = {}
        self._listings: dict[str, dict[str, str]] = {}

    def abs(self, rel: str) -> str:
        """Return the absolute path of ``rel`` under the root, without resolving symlinks."""
        # Plain concatenation: validated paths never start with "/", and this runs per syscall.
        return f"{self.root}/{rel}"

    def real_dir(self, rel_dir: str) -> str:
        """Return the real path of a directory given relative to the root."""
        real = self._real_dirs.get(rel_dir)
        if real is None:
            real = os.path.realpath(os.path.join(self.root, rel_dir))
            self._real_dirs[rel_dir] = real
        return real

    def key(self, rel: str) -> str:
        """Return an identity for ``rel`` that two spellings of the same entry share."""
        head, _, tail = rel.rpartition("/")
        return f"{self.real_dir(head)}/{tail}"

    def inside(self, real: str) -> bool:
        """Tell whether a real path is the root or below it."""
        return real == self.root or real.startswith(self.root.rstrip("/") + "/")

    def directory_status(self, rel_dir: str) -> tuple[str | None, int | None]:
        """Return why a directory cannot hold renamed files (or None) and its device."""
        cached = self._dir_status.get(rel_dir)
        if cached is not None:
            return cached
        real = self.real_dir(rel_dir)
        shown = rel_dir or "."
        status: tuple[str | None, int | None]
        if not self.inside(real):
            status = (f"directory {shown!r} leaves root through a symlink (to {real!r})", None)
        else:
            try:
                info = os.stat(real)
            except OSError:
                info = None
            if info is None:
                status = (f"directory {shown!r} does not exist", None)
            elif not stat.S_ISDIR(info.st_mode):
                status = (f"{shown!r} is not a directory", None)
            elif not os.access(real, os.W_OK | os.X_OK):
                status = (f"directory {shown!r} is not writable", None)
            else:
                status = (None, info.st_dev)
        self._dir_status[rel_dir] = status
        return status

    def kind(self, rel: str) -> str | None:
        """Return "file", "symlink", "dir" or "other" for what is at ``rel``, None if nothing."""
        head, _, tail = rel.rpartition("/")
        listing = self._listings.get(head)
        if listing is None:
            listing = {}
            with (
                contextlib.suppress(FileNotFoundError, NotADirectoryError),
                os.scandir(self.abs(head) if head else self.root) as entries,
            ):
                for entry in entries:
                    listing[entry.name] = _entry_kind(entry)
            self._listings[head] = listing
        return listing.get(tail)

    def exists(self, rel: str) -> bool:
        """Tell whether anything, a dangling symlink included, is at ``rel``."""
        return self.kind(rel) is not None


def _entry_kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"
    if entry.is_file(follow_symlinks=False):
        return "file"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "other"


@dataclass
class ValidatedBatch:
    """A batch that passed the checks that hold whatever state the tree is in."""

    resolver: PathResolver
    batch_id: str
    pairs: list[RenamePair]
    reference_paths: list[str]


@dataclass
class PlannedReference:
    """A reference file that the batch will rewrite, with both contents in memory."""

    record: ReferenceRecord
    original: bytes
    updated: bytes


# ---------------------------------------------------------------------------------------------
# Validation


def check_name_path(value: object, what: str) -> list[str]:
    """Return the problems of a relative path made of valid names (empty list if valid)."""
    if not isinstance(value, str):
        return [f"{what} must be a string, got {type(value).__name__}"]
    if not value:
        return [f"{what} is empty"]
    if value.startswith("/"):
        return [f"{what} {value!r} is absolute; give it relative to root"]
    problems: list[str] = []
    for segment in value.split("/"):
        if segment == "..":
            problems.append(f"{what} {value!r} contains '..'")
        elif segment in {"", "."}:
            problems.append(f"{what} {value!r} has an empty or '.' segment")
        elif not _NAME_RE.fullmatch(segment):
            problems.append(
                f"{what} {value!r}: segment {segment!r} is not a valid name "
                f"(must match ^{NAME_PATTERN}$)",
            )
        elif len(segment.encode()) > MAX_NAME_BYTES:
            problems.append(f"{what} {value!r}: segment longer than {MAX_NAME_BYTES} bytes")
    return problems


def _check_entry_shape(index: int, entry: object) -> tuple[list[str], tuple[str, str] | None]:
    """Return the structural problems of one entry, or its (src, dest) if it has none."""
    label = f"renames[{index}]"
    if not isinstance(entry, Mapping):
        shown = repr(entry)[:80]
        kind = type(entry).__name__
        problem = f"{label}: must be a mapping with keys 'src' and 'dest', got {kind} {shown}"
        return [problem], None
    problems = [f"{label}: missing key {key!r}" for key in ("src", "dest") if key not in entry]
    extra = sorted(str(key) for key in entry if key not in {"src", "dest"})
    if extra:
        problems.append(f"{label}: unexpected key(s) {', '.join(map(repr, extra))}")
    if problems:
        return problems, None
    src, dest = entry["src"], entry["dest"]
    where = f"{label} (src={src!r}, dest={dest!r})"
    problems = [f"{where}: {p}" for p in check_name_path(src, "src")]
    problems += [f"{where}: {p}" for p in check_name_path(dest, "dest")]
    if problems:
        return problems, None
    return [], (str(src), str(dest))


def _check_parent(resolver: PathResolver, rel: str, what: str) -> tuple[list[str], int | None]:
    """Check the directory holding ``rel``; return problems and the device it lives on."""
    head = os.path.dirname(rel)
    problem, device = resolver.directory_status(head)
    if problem:
        return [f"{what} {rel!r}: {problem}"], None
    return [], device


def _check_cross_entries(
    resolver: PathResolver,
    entries: list[tuple[int, str, str]],
    *,
    with_references: bool,
) -> list[str]:
    """Find self-renames, repeated entries, shared sources or targets, ambiguous basenames."""
    problems: list[str] = []
    seen_pairs: dict[tuple[str, str], int] = {}
    seen_src: dict[str, int] = {}
    seen_dest: dict[str, int] = {}
    basenames: dict[str, tuple[str, int]] = {}
    for index, src, dest in entries:
        where = f"renames[{index}] (src={src!r}, dest={dest!r})"
        src_key, dest_key = resolver.key(src), resolver.key(dest)
        if src_key == dest_key:
            problems.append(f"{where}: source and target are the same")
            continue
        if (src_key, dest_key) in seen_pairs:
            problems.append(f"{where}: duplicate of renames[{seen_pairs[src_key, dest_key]}]")
            continue
        seen_pairs[src_key, dest_key] = index
        if src_key in seen_src:
            problems.append(f"{where}: source is also renamed by renames[{seen_src[src_key]}]")
        seen_src.setdefault(src_key, index)
        if dest_key in seen_dest:
            problems.append(f"{where}: target is also the target of renames[{seen_dest[dest_key]}]")
        seen_dest.setdefault(dest_key, index)
        old, new = os.path.basename(src), os.path.basename(dest)
        known = basenames.setdefault(old, (new, index))
        if with_references and known[0] != new:
            problems.append(
                f"{where}: basename {old!r} is renamed to {new!r} here but to {known[0]!r} by "
                f"renames[{known[1]}]; references to it would be ambiguous",
            )
    return problems


def _check_reference_paths(resolver: PathResolver, reference_paths: Sequence[object]) -> list[str]:
    """Check that each reference path is relative, inside root, present and not a symlink."""
    if isinstance(reference_paths, str | bytes) or not isinstance(reference_paths, Sequence):
        return [f"reference_paths must be a list of paths, got {type(reference_paths).__name__}"]
    problems: list[str] = []
    for index, value in enumerate(reference_paths):
        what = f"reference_paths[{index}]"
        if not isinstance(value, str) or not value:
            problems.append(f"{what} must be a non-empty string, got {value!r}")
            continue
        if os.path.isabs(value) or ".." in value.split("/"):
            problems.append(f"{what} {value!r} must be relative to root, without '..'")
            continue
        real = os.path.realpath(resolver.abs(value))
        if not resolver.inside(real):
            problems.append(f"{what} {value!r} leaves root through a symlink (to {real!r})")
        elif os.path.islink(resolver.abs(value)):
            problems.append(f"{what} {value!r} is a symlink; name the file or directory itself")
        elif not os.path.exists(real):
            problems.append(f"{what} {value!r} does not exist")
    return problems


def _make_pairs(entries: Sequence[tuple[int, str, str]], batch_id: str) -> list[RenamePair]:
    return [
        RenamePair(
            index=index,
            src=src,
            dest=dest,
            temp=os.path.join(os.path.dirname(src), f"{RENAME_TEMP_PREFIX}{batch_id}-{index}"),
        )
        for index, src, dest in entries
    ]


_ENTRY_INDEX_RE = re.compile(r"renames\[(\d+)\]")


def _entry_order(problem: str) -> int:
    """Sort key putting problems in batch order, those about no entry first."""
    found = _ENTRY_INDEX_RE.match(problem)
    return int(found.group(1)) if found else -1


@dataclass
class _EntryCheck:
    """What checking the entries one by one found."""

    problems: list[str] = field(default_factory=list)
    entries: list[tuple[int, str, str]] = field(default_factory=list)
    located: list[tuple[int, str, str]] = field(default_factory=list)


def _check_entries(resolver: PathResolver, renames: list[object]) -> _EntryCheck:
    """Check the shape, names and directories of each entry on its own."""
    found = _EntryCheck()
    for index, entry in enumerate(renames):
        shape_problems, pair = _check_entry_shape(index, entry)
        found.problems += shape_problems
        if pair is None:
            continue
        src, dest = pair
        where = f"renames[{index}] (src={src!r}, dest={dest!r})"
        src_problems, src_dev = _check_parent(resolver, src, "src")
        dest_problems, dest_dev = _check_parent(resolver, dest, "dest")
        found.problems += [f"{where}: {p}" for p in src_problems + dest_problems]
        if src_dev is not None and dest_dev is not None and src_dev != dest_dev:
            found.problems.append(f"{where}: source and target are on different filesystems")
        found.entries.append((index, src, dest))
        if not src_problems and not dest_problems:
            found.located.append((index, src, dest))
    return found


def validate_batch(params: BatchParams) -> ValidatedBatch:
    """Check everything about a batch that does not depend on how far it has been applied.

    Raises:
        BatchError: listing every problem found, each naming its entry.
    """
    problems: list[str] = []
    if not _NAME_RE.fullmatch(params.batch_id) or len(params.batch_id) > MAX_BATCH_ID_LENGTH:
        problems.append(
            f"batch_id {params.batch_id!r} must match ^{NAME_PATTERN}$ and be at most "
            f"{MAX_BATCH_ID_LENGTH} characters",
        )
    if not os.path.isabs(params.root) or not os.path.isdir(params.root):
        msg = f"root {params.root!r} must be an absolute path to an existing directory"
        raise BatchError(msg, [*problems, msg])
    resolver = PathResolver(params.root)
    journal_real = os.path.realpath(params.journal_dir)
    if not os.path.isabs(params.journal_dir) or resolver.inside(journal_real):
        problems.append(
            f"journal_dir {params.journal_dir!r} must be an absolute path outside root "
            f"{resolver.root!r}",
        )

    found = _EntryCheck()
    if isinstance(params.renames, list):
        found = _check_entries(resolver, params.renames)
        problems += found.problems
        problems += _check_cross_entries(
            resolver, found.entries, with_references=bool(params.reference_paths)
        )
    else:
        kind = type(params.renames).__name__
        problems.append(f"renames must be a list of {{src, dest}} mappings, got {kind}")
    problems += _check_reference_paths(resolver, params.reference_paths)

    if problems:
        # Add what the tree would reject as well, so that one run lists every problem. Only
        # without a journal: with one, sources are expected to have moved.
        candidates = _make_pairs(found.located, params.batch_id)
        journal = JournalStore(params.journal_dir, params.batch_id).path
        if (
            params.state == "applied"
            and not os.path.lexists(journal)
            and not looks_applied(resolver, candidates)
        ):
            problems += check_pending(resolver, candidates)
        msg = "invalid batch, nothing was changed"
        raise BatchError(msg, sorted(problems, key=_entry_order))
    return ValidatedBatch(
        resolver=resolver,
        batch_id=params.batch_id,
        pairs=_make_pairs(found.entries, params.batch_id),
        reference_paths=[str(path) for path in params.reference_paths],
    )


def check_pending(resolver: PathResolver, pairs: Sequence[RenamePair]) -> list[str]:
    """Return why the tree cannot take the batch as it stands (empty list if it can)."""
    src_keys = {resolver.key(pair.src) for pair in pairs}
    problems: list[str] = []
    for pair in pairs:
        kind = resolver.kind(pair.src)
        if kind is None:
            problems.append(f"{pair.label()}: source does not exist")
        elif kind == "symlink":
            target = os.path.realpath(resolver.abs(pair.src))
            if not resolver.inside(target):
                problems.append(
                    f"{pair.label()}: source is a symlink pointing outside root ({target!r})",
                )
        elif kind != "file":
            problems.append(f"{pair.label()}: source is not a regular file or a symlink")
        if resolver.exists(pair.dest) and resolver.key(pair.dest) not in src_keys:
            problems.append(f"{pair.label()}: target already exists")
        if resolver.exists(pair.temp):
            problems.append(
                f"{pair.label()}: temporary path {pair.temp!r} already exists; it is left from "
                "an earlier run whose journal is gone, check it and remove it",
            )
    return problems


def looks_applied(resolver: PathResolver, pairs: Sequence[RenamePair]) -> bool:
    """Tell whether, without a journal, the tree shows the batch fully applied.

    Paths that are both a source and a target (chains, swaps) exist either way, so only
    sources that are no target and targets that are no source can tell; a batch made only
    of cycles never looks applied.
    """
    src_keys = {resolver.key(pair.src): pair.src for pair in pairs}
    dest_keys = {resolver.key(pair.dest): pair.dest for pair in pairs}
    gone = [rel for key, rel in src_keys.items() if key not in dest_keys]
    new = [rel for key, rel in dest_keys.items() if key not in src_keys]
    if not gone and not new:
        return False
    return not any(map(resolver.exists, gone)) and all(map(resolver.exists, new))


# ---------------------------------------------------------------------------------------------
# Reference planning


def basename_map(pairs: Sequence[RenamePair]) -> dict[bytes, bytes]:
    """Map each old basename to its new one, leaving out moves that keep the basename."""
    mapping: dict[bytes, bytes] = {}
    for pair in pairs:
        old = os.path.basename(pair.src).encode()
        new = os.path.basename(pair.dest).encode()
        if old != new:
            mapping[old] = new
    return mapping


def replace_names(data: bytes, mapping: Mapping[bytes, bytes]) -> tuple[bytes, int]:
    """Replace every whole-word old name in ``data``; return the new bytes and the count."""
    parts = _TOKEN_SPLIT_RE.split(data)
    hits = sum(map(mapping.__contains__, parts))
    if not hits:
        return data, 0
    return b"".join(map(mapping.get, parts, parts)), hits


def walk_reference_files(resolver: PathResolver, reference_paths: Sequence[str]) -> list[str]:
    """List the regular files under the reference paths once, skipping .git and symlinks.

    Temporary files of any batch are skipped too: rewriting a file that an interrupted batch
    has parked under a temporary name would corrupt that batch.
    """
    found: dict[str, str] = {}
    stack = list(reversed(reference_paths))
    while stack:
        rel = stack.pop()
        info = os.lstat(resolver.abs(rel))
        if stat.S_ISREG(info.st_mode):
            found.setdefault(resolver.key(rel), rel)
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        with os.scandir(resolver.abs(rel)) as entries:
            children = sorted(entries, key=lambda entry: entry.name, reverse=True)
        for child in children:
            child_rel = os.path.join(rel, child.name)
            if child.is_dir(follow_symlinks=False):
                if child.name != ".git":
                    stack.append(child_rel)
            elif child.is_file(follow_symlinks=False) and not child.name.startswith(
                (RENAME_TEMP_PREFIX, REFERENCE_TEMP_PREFIX),
            ):
                found.setdefault(resolver.key(child_rel), child_rel)
    return sorted(found.values())


def _writable_in_place(resolver: PathResolver, rel: str) -> str | None:
    """Return why a reference file could not be replaced keeping its owner, or None."""
    if not os.access(resolver.real_dir(os.path.dirname(rel)), os.W_OK | os.X_OK):
        return f"reference file {rel!r}: its directory is not writable"
    if os.geteuid() != 0 and os.lstat(resolver.abs(rel)).st_uid != os.geteuid():
        return f"reference file {rel!r}: owned by another user, its owner could not be kept"
    return None


def plan_references(batch: ValidatedBatch) -> list[PlannedReference]:
    """Read every reference file once and work out which ones the batch rewrites.

    Raises:
        BatchError: if a reference file cannot be read or could not be rewritten in place.
    """
    mapping = basename_map(batch.pairs)
    if not batch.reference_paths or not mapping:
        return []
    resolver = batch.resolver
    pair_by_src = {resolver.key(pair.src): position for position, pair in enumerate(batch.pairs)}
    planned: list[PlannedReference] = []
    problems: list[str] = []
    offset = 0
    for rel in walk_reference_files(resolver, batch.reference_paths):
        try:
            with open(resolver.abs(rel), "rb") as handle:
                original = handle.read()
        except OSError as exc:
            problems.append(f"reference file {rel!r} cannot be read: {exc.strerror}")
            continue
        if b"\0" in original[:BINARY_SNIFF_BYTES]:
            continue
        updated, count = replace_names(original, mapping)
        if not count:
            continue
        problem = _writable_in_place(resolver, rel)
        if problem:
            problems.append(problem)
            continue
        position = pair_by_src.get(resolver.key(rel))
        record = ReferenceRecord(
            path=rel,
            path_after=rel if position is None else batch.pairs[position].dest,
            pair=position,
            sha256_before=hashlib.sha256(original).hexdigest(),
            sha256_after=hashlib.sha256(updated).hexdigest(),
            replacements=count,
            offset=offset,
            length=len(original),
        )
        offset += len(original)
        planned.append(PlannedReference(record=record, original=original, updated=updated))
    if problems:
        msg = "reference files cannot be updated, nothing was changed"
        raise BatchError(msg, problems)
    return planned


# ---------------------------------------------------------------------------------------------
# Durable writes and the journal store


def fsync_dir(path: str) -> None:
    """Make the entries of a directory (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_file(temp: str, data: bytes, like: os.stat_result | None) -> None:
    """Write ``data`` to a new file ``temp`` and fsync it, ready to be moved over another.

    The file gets the owner, group and mode of ``like`` when given (0600 otherwise); owner
    first, because chown drops set-id bits.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if like is not None:
            if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)


def write_file_durably(path: str, data: bytes, temp: str) -> None:
    """Replace ``path`` atomically by ``data`` (mode 0600), through ``temp``."""
    stage_file(temp, data, None)
    os.replace(temp, path)


class JournalStore:
    """The journal of one batch, the saved originals of its reference files, and its lock."""

    def __init__(self, directory: str, batch_id: str) -> None:
        """Derive the file names of the batch inside the journal directory."""
        self.directory = directory
        self.path = os.path.join(directory, f"{batch_id}.json")
        self.originals_path = os.path.join(directory, f"{batch_id}.orig")
        self.lock_path = os.path.join(directory, f"{batch_id}.lock")
        self._originals: bytes | None = None

    def load(self) -> Journal | None:
        """Return the journal, or None when the batch has none.

        Raises:
            BatchError: if the journal exists but cannot be read.
        """
        try:
            with open(self.path, encoding="utf-8") as handle:
                return Journal.from_json(json.load(handle))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = f"journal {self.path!r} cannot be read ({exc}); inspect it before going on"
            raise BatchError(msg) from None

    def save(self, journal: Journal) -> None:
        """Replace the journal atomically and durably."""
        # Compact output keeps json on its C encoder; the journal of a large batch is rewritten
        # at every phase.
        data = json.dumps(journal.to_json(), separators=(",", ":")).encode()
        write_file_durably(self.path, data, self.path + ".tmp")
        fsync_dir(self.directory)

    def save_originals(self, planned: Sequence[PlannedReference]) -> None:
        """Store the original bytes of all reference files, back to back, in one file."""
        data = b"".join(item.original for item in planned)
        write_file_durably(self.originals_path, data, self.originals_path + ".tmp")

    def read_original(self, record: ReferenceRecord) -> bytes:
        """Return the saved original contents of a reference file, checked against its hash.

        Raises:
            BatchError: if the saved copy is missing or does not match the journal.
        """
        if self._originals is None:
            try:
                with open(self.originals_path, "rb") as handle:
                    self._originals = handle.read()
            except OSError as exc:
                msg = f"saved originals {self.originals_path!r} cannot be read: {exc}"
                raise BatchError(msg) from None
        data = self._originals[record.offset : record.offset + record.length]
        if hashlib.sha256(data).hexdigest() != record.sha256_before:
            msg = f"saved original of {record.path!r} in {self.originals_path!r} is corrupt"
            raise BatchError(msg)
        return data

    def ensure_directory(self) -> bool:
        """Create the journal directory, private to its owner; tell whether it was created."""
        if os.path.isdir(self.directory):
            return False
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock for the batch, failing at once if another run holds it.

        A run that ends without writing a journal (rejected batch, nothing to do) removes the
        directory it created for the lock, so that it leaves nothing behind.

        Raises:
            BatchError: if another run of the same batch is in progress.
        """
        created = self.ensure_directory()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"another run of this batch holds {self.lock_path!r}"
                raise BatchError(msg) from None
            yield
        finally:
            if created and not os.path.lexists(self.path):
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
                    os.rmdir(self.directory)
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Recovery and execution


@dataclass
class ReferenceState:
    """Where a reference file is now and whether it holds its original or updated contents."""

    number: int
    record: ReferenceRecord
    current: str
    contents: bytes
    updated: bool


@dataclass
class Rewrite:
    """A reference file to rewrite: where it will be rewritten, what it holds and will hold.

    Going forward the files are rewritten once every file is at its target, so a reference
    file that is itself renamed is rewritten at its new path; going back they are restored
    before anything moves.
    """

    number: int
    record: ReferenceRecord
    write_at: str
    before: bytes
    after: bytes


@dataclass
class DrivePlan:
    """The moves and rewrites that bring a journalled batch to one end."""

    to_temp: list[RenamePair]
    from_temp: list[RenamePair]
    rewrites: list[Rewrite]


def _pair_path(pair: RenamePair, location: Location) -> str:
    """Return the path of a pair's file at a given location."""
    return {"src": pair.src, "temp": pair.temp, "dest": pair.dest}[location]


def locate(resolver: PathResolver, journal: Journal) -> list[Location]:
    """Find where each file of a journalled batch is.

    Raises:
        BatchError: if a file is missing or sits both at its temporary and its other name.
    """
    side = journal.side()
    locations: list[Location] = []
    problems: list[str] = []
    for pair in journal.pairs:
        home = _pair_path(pair, side)
        at_temp, at_home = resolver.exists(pair.temp), resolver.exists(home)
        if at_temp and at_home:
            problems.append(f"{pair.label()}: both {pair.temp!r} and {home!r} exist")
        elif not at_temp and not at_home:
            problems.append(f"{pair.label()}: the file is at neither {home!r} nor {pair.temp!r}")
        locations.append("temp" if at_temp else side)
    if problems:
        msg = (
            f"the tree does not match journal phase {journal.phase!r}; something else changed "
            "it, nothing was changed"
        )
        raise BatchError(msg, problems)
    return locations


def reference_states(
    resolver: PathResolver,
    journal: Journal,
    locations: Sequence[Location],
) -> list[ReferenceState]:
    """Read each journalled reference file where it is now and tell which contents it holds.

    Raises:
        BatchError: if a file is gone or holds neither the original nor the updated contents.
    """
    states: list[ReferenceState] = []
    problems: list[str] = []
    for number, record in enumerate(journal.references):
        current = record.path
        if record.pair is not None:
            current = _pair_path(journal.pairs[record.pair], locations[record.pair])
        try:
            with open(resolver.abs(current), "rb") as handle:
                contents = handle.read()
        except OSError as exc:
            problems.append(f"reference file {current!r} cannot be read: {exc.strerror}")
            continue
        digest = hashlib.sha256(contents).hexdigest()
        if digest not in {record.sha256_before, record.sha256_after}:
            problems.append(
                f"reference file {current!r} was changed by something else since the batch "
                "started; restore or merge it by hand",
            )
            continue
        updated = digest == record.sha256_after
        states.append(ReferenceState(number, record, current, contents, updated))
    if problems:
        msg = "reference files do not match the journal, nothing was changed"
        raise BatchError(msg, problems)
    return states


def _check_targets_free(
    resolver: PathResolver,
    moves: Sequence[tuple[RenamePair, str]],
    vacated: set[str],
) -> None:
    """Refuse to let a rename replace a file that is not moved away first."""
    problems = [
        f"{pair.label()}: {target!r} exists and would be overwritten"
        for pair, target in moves
        if resolver.key(target) not in vacated and resolver.exists(target)
    ]
    if problems:
        msg = "renaming would overwrite files that are not part of the batch, nothing was changed"
        raise BatchError(msg, problems)


def _plan_rewrites(
    store: JournalStore,
    journal: Journal,
    states: Sequence[ReferenceState],
    target: Direction,
) -> list[Rewrite]:
    """Work out the contents each reference file gets, before anything is touched."""
    mapping = basename_map(journal.pairs)
    rewrites: list[Rewrite] = []
    for state in states:
        if state.updated == (target == "forward"):
            continue
        if target == "forward":
            after, _ = replace_names(state.contents, mapping)
            if hashlib.sha256(after).hexdigest() != state.record.sha256_after:
                msg = f"updating {state.current!r} would not give the contents the journal expects"
                raise BatchError(msg)
            write_at = state.record.path_after
        else:
            after = store.read_original(state.record)
            write_at = state.current
        rewrites.append(Rewrite(state.number, state.record, write_at, state.contents, after))
    return rewrites


def plan_drive(
    resolver: PathResolver,
    store: JournalStore,
    journal: Journal,
    target: Direction,
) -> DrivePlan:
    """Work out, without touching anything, how to take a journalled batch to one end.

    Raises:
        BatchError: if the tree does not match the journal.
    """
    locations = locate(resolver, journal)
    references = reference_states(resolver, journal, locations)
    end: Location = "dest" if target == "forward" else "src"
    start: Location = "src" if target == "forward" else "dest"
    to_temp = [p for p, loc in zip(journal.pairs, locations, strict=True) if loc == start]
    from_temp = [p for p, loc in zip(journal.pairs, locations, strict=True) if loc != end]
    vacated = {resolver.key(_pair_path(pair, start)) for pair in to_temp}
    _check_targets_free(resolver, [(p, _pair_path(p, end)) for p in from_temp], vacated)
    _check_targets_free(resolver, [(p, p.temp) for p in to_temp], set())
    return DrivePlan(
        to_temp=to_temp,
        from_temp=from_temp,
        rewrites=_plan_rewrites(store, journal, references, target),
    )


def fresh_drive_plan(batch: ValidatedBatch, planned: Sequence[PlannedReference]) -> DrivePlan:
    """Return the drive plan of a batch checked by check_pending, from what was just read."""
    return DrivePlan(
        to_temp=list(batch.pairs),
        from_temp=list(batch.pairs),
        rewrites=[
            Rewrite(number, item.record, item.record.path_after, item.original, item.updated)
            for number, item in enumerate(planned)
        ],
    )


class Driver:
    """Execute a drive plan, keeping the journal phase in step with the tree."""

    def __init__(
        self,
        resolver: PathResolver,
        store: JournalStore,
        journal: Journal,
        fault: FaultInjector,
    ) -> None:
        """Bind the driver to a batch, its journal store and the fault injector."""
        self.resolver = resolver
        self.store = store
        self.journal = journal
        self.fault = fault

    def _phase(self, phase: str) -> None:
        self.journal.phase = phase
        self.store.save(self.journal)

    def _move(self, moves: Sequence[tuple[str, str]]) -> None:
        """Rename each (old, new) pair, then make the directories durable once."""
        directories: set[str] = set()
        for old, new in moves:
            old_abs, new_abs = self.resolver.abs(old), self.resolver.abs(new)
            os.rename(old_abs, new_abs)
            self.fault.renamed_one()
            directories.add(os.path.dirname(old_abs))
            directories.add(os.path.dirname(new_abs))
        for directory in sorted(directories):
            fsync_dir(directory)

    def _rewrite(self, rewrites: Sequence[Rewrite]) -> None:
        """Replace the contents of reference files, then make their directories durable.

        All new contents are written and fsynced first, several files at a time because
        fsync waits on the disk, and only then moved over the files one by one.
        """
        staged: list[tuple[str, str]] = []
        jobs: list[tuple[str, bytes, os.stat_result]] = []
        for rewrite in rewrites:
            path = self.resolver.abs(rewrite.write_at)
            temp = reference_temp(path, self.journal.batch_id, rewrite.number)
            staged.append((temp, path))
            jobs.append((temp, rewrite.after, os.lstat(path)))
        try:
            with ThreadPoolExecutor(max_workers=FSYNC_WORKERS) as pool:
                list(pool.map(lambda job: stage_file(*job), jobs))
        except BaseException:
            for temp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            raise
        directories: set[str] = set()
        for temp, path in staged:
            os.replace(temp, path)
            self.fault.renamed_one()
            directories.add(os.path.dirname(path))
        for directory in sorted(directories):
            fsync_dir(directory)

    def forward(self, plan: DrivePlan) -> None:
        """Move every file to its target, then update the references; end at ``complete``."""
        self.fault.start()
        if plan.to_temp:
            self._move([(pair.src, pair.temp) for pair in plan.to_temp])
        if self.journal.side() == "src":
            self._phase("to_temp_done")
        self._move([(pair.temp, pair.dest) for pair in plan.from_temp])
        self._phase("renamed")
        self._rewrite(plan.rewrites)
        self._phase("complete")

    def back(self, plan: DrivePlan) -> None:
        """Restore the references, then move every file back to its source; end ``reverted``."""
        if self.journal.side() == "dest":
            self._phase("revert_started")
        self.fault.start()
        self._rewrite(plan.rewrites)
        if self.journal.side() == "dest":
            self._phase("revert_refs_done")
            self._move([(pair.dest, pair.temp) for pair in plan.to_temp])
            self._phase("revert_to_temp_done")
        self._move([(pair.temp, pair.src) for pair in plan.from_temp])
        self._phase("reverted")


def reference_temp(path: str, batch_id: str, number: int) -> str:
    """Return the temporary name used to rewrite reference file ``number`` at ``path``."""
    return os.path.join(os.path.dirname(path), f"{REFERENCE_TEMP_PREFIX}{batch_id}-{number}")


def clean_reference_temps(resolver: PathResolver, journal: Journal) -> None:
    """Remove temporary reference files an interrupted rewrite may have left."""
    for number, record in enumerate(journal.references):
        for rel in {record.path, record.path_after}:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(reference_temp(resolver.abs(rel), journal.batch_id, number))


# ---------------------------------------------------------------------------------------------
# Reporting


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _changed_lines(before: bytes, after: bytes) -> tuple[str, str]:
    """Return only the lines that differ, numbered, for files too large to show whole."""
    old_lines, new_lines = before.splitlines(), after.splitlines()
    shown_before: list[str] = []
    shown_after: list[str] = []
    for number, (old, new) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if old != new:
            shown_before.append(f"{number}: {_text(old)}\n")
            shown_after.append(f"{number}: {_text(new)}\n")
    return "".join(shown_before), "".join(shown_after)


def reference_diff(
    path_before: str,
    path_after: str,
    before: bytes,
    after: bytes,
) -> dict[str, str]:
    """Build one diff entry for a reference file, capped for large files."""
    if max(len(before), len(after)) <= DIFF_MAX_BYTES:
        return {
            "before_header": path_before,
            "after_header": path_after,
            "before": _text(before),
            "after": _text(after),
        }
    shown_before, shown_after = _changed_lines(before, after)
    note = f" ({len(before)} bytes, over {DIFF_MAX_BYTES}: changed lines only)"
    return {
        "before_header": path_before + note,
        "after_header": path_after + note,
        "before": shown_before,
        "after": shown_after,
    }


def renames_diff(batch_id: str, moves: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Build the diff entry that lists the renames as ``old -> new`` lines."""
    return {
        "before_header": f"paths renamed by batch {batch_id}",
        "after_header": f"paths renamed by batch {batch_id}",
        "before": "".join(f"{old}\n" for old, _ in moves),
        "after": "".join(f"{old} -> {new}\n" for old, new in moves),
    }


# ---------------------------------------------------------------------------------------------
# Entry point


def _same_batch(journal: Journal, batch: ValidatedBatch) -> bool:
    requested = {(pair.src, pair.dest) for pair in batch.pairs}
    recorded = {(pair.src, pair.dest) for pair in journal.pairs}
    return journal.root == batch.resolver.root and requested == recorded


def _outcome_of_drive(
    batch: ValidatedBatch,
    store: JournalStore,
    plan: DrivePlan,
    target: Direction,
    *,
    want_diff: bool,
) -> Outcome:
    """Describe what a drive plan does, as the module reports it."""
    if target == "forward":
        moves = [(pair.src, pair.dest) for pair in plan.from_temp]
    else:
        moves = [(pair.dest, pair.src) for pair in plan.from_temp]
    outcome = Outcome(
        changed=bool(moves or plan.rewrites),
        journal=store.path,
        renamed=[{"src": old, "dest": new} for old, new in moves],
        references_updated=[
            {
                "path": rewrite.record.path_after if target == "forward" else rewrite.record.path,
                "replacements": rewrite.record.replacements,
            }
            for rewrite in plan.rewrites
        ],
    )
    if want_diff and outcome.changed:
        if moves:
            outcome.diff.append(renames_diff(batch.batch_id, moves))
        for rewrite in plan.rewrites:
            record = rewrite.record
            before_path, after_path = record.path, record.path_after
            if target == "back":
                before_path, after_path = after_path, before_path
            outcome.diff.append(
                reference_diff(before_path, after_path, rewrite.before, rewrite.after),
            )
    return outcome


@dataclass
class Run:
    """One run of the module: the batch, its journal store and how the run was asked for."""

    batch: ValidatedBatch
    store: JournalStore
    check_mode: bool
    want_diff: bool
    fault: FaultInjector

    def drive(
        self,
        journal: Journal,
        target: Direction,
        plan: DrivePlan | None = None,
    ) -> Outcome:
        """Plan, report and (outside check mode) carry out a drive of a journalled batch.

        Raises:
            BatchError: if the tree does not match the journal, or a syscall fails part way.
        """
        resolver = self.batch.resolver
        if plan is None:
            plan = plan_drive(resolver, self.store, journal, target)
        outcome = _outcome_of_drive(
            self.batch,
            self.store,
            plan,
            target,
            want_diff=self.want_diff,
        )
        if self.check_mode:
            return outcome
        clean_reference_temps(resolver, journal)
        driver = Driver(resolver, self.store, journal, self.fault)
        try:
            if target == "forward":
                driver.forward(plan)
            else:
                driver.back(plan)
        except OSError as exc:
            msg = (
                f"stopped part way ({exc}); journal {self.store.path!r} records how far it got: "
                "rerun to finish (on_incomplete=forward) or to undo it (on_incomplete=back or "
                "state=reverted)"
            )
            raise BatchError(msg, [msg], changed=True) from None
        return outcome

    def apply_fresh(self) -> Outcome:
        """Apply a batch that has no journal in progress.

        Raises:
            BatchError: if the tree is neither untouched nor fully renamed.
        """
        batch, store = self.batch, self.store
        problems = check_pending(batch.resolver, batch.pairs)
        if problems:
            if looks_applied(batch.resolver, batch.pairs):
                return Outcome(
                    changed=False,
                    journal=store.path,
                    warnings=_stale_reference_warnings(batch),
                )
            msg = (
                f"no journal for batch {batch.batch_id!r} and the tree cannot take the batch "
                "(it is neither untouched nor fully renamed), nothing was changed"
            )
            raise BatchError(msg, problems)
        if not batch.pairs:
            return Outcome(changed=False, journal=store.path)
        planned = plan_references(batch)
        journal = Journal(
            batch_id=batch.batch_id,
            root=batch.resolver.root,
            phase="prepared",
            pairs=list(batch.pairs),
            references=[item.record for item in planned],
        )
        if not self.check_mode:
            store.save_originals(planned)
            store.save(journal)
        return self.drive(journal, "forward", fresh_drive_plan(batch, planned))

    def ensure_applied(self, journal: Journal | None, on_incomplete: Direction) -> Outcome:
        """Bring the batch to its applied state, finishing or undoing an interrupted run.

        Raises:
            BatchError: if the tree matches neither the batch nor its journal.
        """
        if journal is None or journal.phase == "reverted":
            return self.apply_fresh()
        if journal.phase == "complete":
            locate(self.batch.resolver, journal)
            return Outcome(changed=False, journal=self.store.path)
        outcome = self.drive(journal, on_incomplete)
        outcome.recovered = on_incomplete
        if on_incomplete == "back":
            outcome.failure = (
                f"an interrupted run of batch {self.batch.batch_id!r} was rolled back "
                "(on_incomplete=back); the batch is not applied"
            )
        return outcome

    def ensure_reverted(self, journal: Journal | None) -> Outcome:
        """Bring the tree back to what it was before the batch.

        Raises:
            BatchError: if there is no journal and the tree does not show every source, or the
                tree does not match the journal.
        """
        batch = self.batch
        if journal is None:
            problems = check_pending(batch.resolver, batch.pairs)
            if not problems:
                return Outcome(changed=False, journal=self.store.path)
            msg = (
                f"no journal for batch {batch.batch_id!r} and the tree does not show every "
                "source; it cannot be reverted safely, nothing was changed"
            )
            raise BatchError(msg, problems)
        if journal.phase == "reverted":
            locate(batch.resolver, journal)
            return Outcome(changed=False, journal=self.store.path)
        interrupted = journal.phase != "complete"
        outcome = self.drive(journal, "back")
        outcome.recovered = "back" if interrupted else None
        return outcome


def _stale_reference_warnings(batch: ValidatedBatch) -> list[str]:
    """Name reference files that still use old names of a batch found already applied."""
    new_names = {os.path.basename(pair.dest).encode() for pair in batch.pairs}
    mapping = {old: new for old, new in basename_map(batch.pairs).items() if old not in new_names}
    if not mapping or not batch.reference_paths:
        return []
    warnings: list[str] = []
    for rel in walk_reference_files(batch.resolver, batch.reference_paths):
        try:
            with open(batch.resolver.abs(rel), "rb") as handle:
                _, count = replace_names(handle.read(), mapping)
        except OSError:
            continue
        if count:
            warnings.append(
                f"{rel!r} still uses {count} old name(s); without a journal it is not rewritten",
            )
    return warnings


def run_batch(
    params: BatchParams,
    *,
    check_mode: bool = False,
    want_diff: bool = False,
    fault: FaultInjector | None = None,
) -> Outcome:
    """Bring the tree to ``params.state`` for the batch, recovering an interrupted run first.

    Raises:
        BatchError: for an invalid batch, a tree that does not match the batch or its journal,
            or a failure part way (the journal then records how far it got).
    """
    batch = validate_batch(params)
    store = JournalStore(params.journal_dir, params.batch_id)
    run = Run(batch, store, check_mode, want_diff, fault or FaultInjector())
    try:
        return _run_locked(run, params)
    except OSError as exc:
        # Run.drive turns the errors of the renaming itself into BatchError, so this one came
        # from reading the tree or writing the journal, before the first rename.
        msg = f"batch {params.batch_id!r} could not start ({exc}); no file was renamed"
        raise BatchError(msg, [msg]) from exc


def _run_locked(run: Run, params: BatchParams) -> Outcome:
    """Decide what the batch needs, under its lock outside check mode, and do it."""
    batch, store = run.batch, run.store
    lock = contextlib.nullcontext() if run.check_mode else store.locked()
    with lock:
        journal = store.load()
        replaceable = journal is not None and journal.phase == "reverted"
        if (
            journal is not None
            and not _same_batch(journal, batch)
            and not (replaceable and params.state == "applied")
        ):
            msg = (
                f"journal {store.path!r} records a different batch (other renames or root); "
                "use another batch_id, or revert that batch first"
            )
            raise BatchError(msg)
        if params.state == "applied":
            return run.ensure_applied(journal, params.on_incomplete)
        return run.ensure_reverted(journal)


def main() -> None:
    """Run the module under Ansible."""
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            # Checked by validate_batch rather than coerced by Ansible, so that a bad value is
            # reported with the entry it is in instead of being turned into something else.
            "renames": {"type": "raw", "required": True},
            "reference_paths": {"type": "list", "elements": "path", "default": []},
            "batch_id": {"type": "str", "required": True},
            "journal_dir": {"type": "path", "default": DEFAULT_JOURNAL_DIR},
            "state": {"type": "str", "choices": ["applied", "reverted"], "default": "applied"},
            "on_incomplete": {
                "type": "str",
                "choices": ["forward", "back"],
                "default": "forward",
            },
        },
        supports_check_mode=True,
    )
    params = BatchParams(
        root=module.params["root"],
        renames=module.params["renames"],
        batch_id=module.params["batch_id"],
        reference_paths=module.params["reference_paths"],
        journal_dir=module.params["journal_dir"],
        state=module.params["state"],
        on_incomplete=module.params["on_incomplete"],
    )
    journal_path = JournalStore(params.journal_dir, params.batch_id).path
    try:
        outcome = run_batch(
            params,
            check_mode=module.check_mode,
            # AnsibleModule exposes diff mode only through this attribute.
            want_diff=module._diff,  # noqa: SLF001
            fault=FaultInjector.from_environ(os.environ),
        )
    except BatchError as exc:
        module.fail_json(
            msg=exc.message(),
            errors=exc.errors or [exc.summary],
            changed=exc.changed,
            renamed=[],
            references_updated=[],
            journal=journal_path,
            recovered=None,
        )
    for warning in outcome.warnings:
        module.warn(warning)
    result: dict[str, Any] = {
        "changed": outcome.changed,
        "renamed": outcome.renamed,
        "references_updated": outcome.references_updated,
        "journal": outcome.journal,
        "recovered": outcome.recovered,
    }
    if outcome.diff:
        result["diff"] = outcome.diff
    if outcome.failure:
        module.fail_json(msg=outcome.failure, errors=[outcome.failure], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
