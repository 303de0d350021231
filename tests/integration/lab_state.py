"""A fingerprint of what the window touches on the lab, to compare before and after."""

from __future__ import annotations

import subprocess

PROTOCOL_HOSTS = ("proto1", "proto2")
RUNNERS = ("runner1", "runner2")


def podman_exec(host: str, script: str) -> str:
    """Run a shell script in a lab host and return its output."""
    return subprocess.run(
        ["podman", "exec", f"mwlab-{host}", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def fingerprint() -> dict[str, str]:
    """Per host: the checkout's files, modes and git state; the registry's table checksums;
    the runners' unit states."""
    state = {}
    for host in PROTOCOL_HOSTS:
        state[host] = podman_exec(
            host,
            "cd /opt/project && find scripts .cursor -type f -printf '%m %p ' "
            "-exec sha256sum {} \\; | sort && git rev-parse HEAD && git status --porcelain",
        )
    state["registry1"] = podman_exec(
        "registry1",
        "mariadb -N -B -e 'CHECKSUM TABLE script_registry.scripts, "
        "script_registry.protocol_hooks EXTENDED'",
    )
    for host in RUNNERS:
        state[host] = podman_exec(
            host,
            "for u in ci-runner.service ci-scheduler.timer; do "
            "echo $u $(systemctl is-enabled $u) $(systemctl is-active $u); done",
        )
    return state


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Hosts whose fingerprint changed, with the first differing line."""
    changed = []
    for host in sorted(before):
        if before[host] != after.get(host):
            old, new = before[host].splitlines(), after.get(host, "").splitlines()
            first = next(
                (f"{a!r} != {b!r}" for a, b in zip(old, new, strict=False) if a != b),
                f"{len(old)} lines != {len(new)} lines",
            )
            changed.append(f"{host}: {first}")
    return changed
