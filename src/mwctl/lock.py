"""One window at a time per control node: a lock file in the runs directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mwctl.errors import LockHeldError, StaleLockError

log = logging.getLogger(__name__)

LOCK_NAME = "mwctl.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, as written in the lock file."""

    run_id: str
    host: str
    pid: int
    started: float

    def describe(self) -> str:
        """The holder in words, for the operator."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        return f"run {self.run_id} on {self.host} (pid {self.pid}, started {stamp})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The process exists but belongs to someone else.
        return True
    return True


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in the lock file at `path`; None when there is no lock."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        # A lock written by a process killed mid-write: unknown holder, treated as stale.
        return LockHolder(run_id="unknown", host=socket.gethostname(), pid=0, started=0.0)
    return LockHolder(
        run_id=str(data.get("run_id", "unknown")),
        host=str(data.get("host", "unknown")),
        pid=int(data.get("pid", 0)),
        started=float(data.get("started", 0.0)),
    )


def _create(path: Path, holder: LockHolder) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "run_id": holder.run_id,
                "host": holder.host,
                "pid": holder.pid,
                "started": holder.started,
            },
            handle,
        )
    return True


def acquire(runs_dir: Path, run_id: str, *, take_over_stale: bool = False) -> LockHolder:
    """Take the control node's lock for `run_id`.

    The lock file is created with O_EXCL, so of two runs starting together exactly one
    gets it. A lock left by a process that is gone (same host, pid not alive) is stale; it
    is taken over only with `take_over_stale`, because the dead run may have left hosts
    half changed and the operator has to know that.

    Raises:
        LockHeldError: a live run holds the lock, or a run on another host does (its
            liveness cannot be checked from here).
        StaleLockError: the holder is gone and `take_over_stale` is false.
    """
    runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = runs_dir / LOCK_NAME
    mine = LockHolder(run_id, socket.gethostname(), os.getpid(), time.time())
    for _ in range(3):
        if _create(path, mine):
            return mine
        holder = read_holder(path)
        if holder is None:
            continue  # released between our two looks: try again
        if holder.host != mine.host or _alive(holder.pid):
            msg = (
                f"another window is running: {holder.describe()}; wait for it to end, "
                f"or check {path} if that run is known to be gone"
            )
            raise LockHeldError(msg)
        if not take_over_stale:
            msg = (
                f"stale lock {path}: {holder.describe()} is no longer running, so that run "
                f"stopped without releasing it; check `mwctl status {holder.run_id}`, then "
                "pass --take-over-stale-lock to take the lock over"
            )
            raise StaleLockError(msg)
        log.warning("taking over the stale lock of %s", holder.describe())
        # Move the stale lock aside first: of two processes taking it over, only the one
        # whose rename succeeds goes on to create the new lock.
        aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            path.rename(aside)
            aside.unlink()
        take_over_stale = False
    msg = f"could not take the lock {path}: it changed hands while mwctl looked at it"
    raise LockHeldError(msg)


def release(runs_dir: Path, holder: LockHolder) -> None:
    """Remove the lock, if it is still ours."""
    path = runs_dir / LOCK_NAME
    current = read_holder(path)
    if current is not None and (current.run_id, current.pid) == (holder.run_id, holder.pid):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def window_lock(runs_dir: Path, run_id: str, *, take_over_stale: bool = False) -> Iterator[None]:
    """Hold the control node's lock for the duration of the block, also when it raises."""
    holder = acquire(runs_dir, run_id, take_over_stale=take_over_stale)
    try:
        yield
    finally:
        release(runs_dir, holder)
