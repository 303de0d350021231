"""The lab's connection: podman exec into the containers, with modules piped on stdin.

The podman connection of containers.podman copies every module into the container and
runs it in four or five separate `podman exec` calls (home directory, working directory,
temporary directory, chmod and run, clean-up). Each call costs about a tenth of a second
of CPU on the control node, which on a small machine makes the lab's per-task cost
several times what SSH with pipelining costs on real hosts. This plugin keeps that
connection for everything else and adds pipelining: the module goes to `podman exec -i`
on stdin, in one call.
"""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as PodmanConnection,
)

DOCUMENTATION = """
    name: lab_podman
    short_description: Run tasks in the lab's podman containers, pipelining modules
    description:
      - Runs commands in, and copies files to and from, running podman containers.
      - Modules are sent on the standard input of one C(podman exec -i) call when
        pipelining is on, instead of being copied into the container first.
    extends_documentation_fragment:
      - connection_pipelining
    options:
      remote_addr:
        description: Name or ID of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User (name or UID) that runs the commands in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Arguments added to every podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: The podman program.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
"""


# podman's own exit status when it could not run the command, and what it says when the
# container is missing or not running.
_PODMAN_ERROR = 125
_NOT_RUNNING = (b"no such container", b"container state improper")


class Connection(PodmanConnection):  # type: ignore[misc]
    """containers.podman's podman connection, with pipelining."""

    transport = "lab_podman"
    has_pipelining = True

    # The signature is ConnectionBase's, positional flag included.
    @ensure_connect  # type: ignore[misc]
    def exec_command(  # noqa: D102
        self,
        cmd: str,
        in_data: bytes | None = None,
        sudoable: bool = False,  # noqa: FBT001, FBT002
    ) -> tuple[int, bytes, bytes]:
        # Without in_data this is the parent's call; with it, stdin must be attached.
        if in_data is None:
            result: tuple[int, bytes, bytes] = super().exec_command(cmd, sudoable=sudoable)
            return self._reached(result)
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        # A piped module unpacks itself under TMPDIR. In /tmp it can vanish mid-run while
        # the container boots: systemd-tmpfiles empties /tmp then. /var/tmp is kept.
        exec_args = ["exec", "-i", "--env", "TMPDIR=/var/tmp"]
        if self.user:
            exec_args += ["--user", self.user]
        argv = shlex.split(to_native(cmd, errors="surrogate_or_strict"))
        return self._reached(self._podman(exec_args, argv, in_data))

    def _reached(self, result: tuple[int, bytes, bytes]) -> tuple[int, bytes, bytes]:
        """`result`, unless podman could not run the command in the container at all.

        A missing or stopped container is a host that cannot be reached, not a command that
        failed: Ansible must mark it unreachable, as it does a host SSH cannot reach.
        """
        rc, _, stderr = result
        if rc == _PODMAN_ERROR and any(reason in stderr for reason in _NOT_RUNNING):
            msg = (
                f"container {self._container_id} cannot run commands: "
                f"{to_native(stderr, errors='surrogate_or_strict').strip()}"
            )
            raise AnsibleConnectionFailure(msg)
        return result
