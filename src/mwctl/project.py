"""Where the checkout is and the environment every ansible call gets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mwctl.errors import ProjectError

_MARKERS = ("ansible.cfg", "maintenance.yml")


@dataclass(frozen=True)
class Project:
    """A checkout of the project: playbooks, roles, inventories and the lab's working files."""

    root: Path

    @classmethod
    def locate(cls, start: Path | None = None) -> Project:
        """Find the checkout from MWCTL_PROJECT_DIR, or from `start` (default: cwd) upwards.

        Raises:
            ProjectError: no directory with ansible.cfg and maintenance.yml was found.
        """
        configured = os.environ.get("MWCTL_PROJECT_DIR")
        candidates = [Path(configured)] if configured else []
        here = (start or Path.cwd()).resolve()
        candidates += [here, *here.parents]
        for candidate in candidates:
            if all((candidate / marker).is_file() for marker in _MARKERS):
                return cls(candidate.resolve())
        msg = (
            f"no project checkout found from {here} (looked for {' and '.join(_MARKERS)}); "
            "run mwctl inside the checkout or set MWCTL_PROJECT_DIR to its path"
        )
        raise ProjectError(msg)

    @property
    def lab_dir(self) -> Path:
        """Working files of the built-in lab (ignored by git)."""
        return self.root / ".lab"

    @property
    def world_dir(self) -> Path:
        """The generated reference world the lab is seeded with."""
        return self.lab_dir / "world"

    @property
    def runs_dir(self) -> Path:
        """One directory per recorded run."""
        return self.root / ".runs"

    @property
    def lab_inventory(self) -> Path:
        """The inventory of the built-in lab."""
        return self.root / "inventory" / "lab" / "hosts.yml"

    def env(self) -> dict[str, str]:
        """Environment for ansible and podman calls made on behalf of this checkout."""
        return {
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.root / ".ansible"),
            "CONTAINERS_CONF": str(self.root / "lab" / "containers.conf"),
            "ANSIBLE_FORCE_COLOR": "0",
        }
