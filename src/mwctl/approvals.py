"""Sign-offs: who approved a rehearsal (or run) to go ahead, in which role and when."""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from mwctl.errors import UsageError

APPROVALS_NAME = "approvals.json"


@dataclass(frozen=True)
class Approval:
    """One sign-off, as kept in approvals.json in the run directory."""

    role: str
    name: str
    at: str
    user: str
    host: str


def load_approvals(run_dir: Path) -> list[Approval]:
    """The approvals recorded for the run in `run_dir`; empty when there are none."""
    path = run_dir / APPROVALS_NAME
    if not path.is_file():
        return []
    return [Approval(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def approve(run_dir: Path, *, role: str, name: str) -> Approval:
    """Record that `name` approves the run in `run_dir` in `role`.

    Raises:
        UsageError: the run does not exist, or role or name is empty.
    """
    if not (run_dir / "run.json").is_file():
        msg = f"no run {run_dir.name!r} in {run_dir.parent}: see `mwctl runs`"
        raise UsageError(msg)
    if not role.strip() or not name.strip():
        msg = "an approval needs a role and the approver's name"
        raise UsageError(msg)
    approval = Approval(
        role=role.strip(),
        name=name.strip(),
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        user=getpass.getuser(),
        host=socket.gethostname(),
    )
    entries = [*load_approvals(run_dir), approval]
    path = run_dir / APPROVALS_NAME
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps([asdict(a) for a in entries], indent=2) + "\n", "utf-8")
    partial.replace(path)
    return approval


def missing_roles(required: Iterable[str], approvals: Iterable[Approval]) -> list[str]:
    """The required roles no approval covers, in the policy's order."""
    given = {a.role for a in approvals}
    return [role for role in required if role not in given]
