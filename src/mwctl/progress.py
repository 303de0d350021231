"""Live progress of a running window, for the operator watching the terminal."""

from __future__ import annotations

import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    """What the window reports while it runs; implement it to feed another display."""

    def phase_started(self, name: str, title: str, budget: float) -> None:
        """A phase starts, with its budget in seconds."""

    def phase_ended(self, name: str, status: str, duration: float) -> None:
        """A phase ended."""

    def event(self, event: dict[str, Any]) -> None:
        """An ansible-runner event of the running phase."""

    def note(self, text: str) -> None:
        """A decision or a periodic update."""


class NoProgress:
    """Reports nothing."""

    def phase_started(self, name: str, title: str, budget: float) -> None:
        """Ignore."""

    def phase_ended(self, name: str, status: str, duration: float) -> None:
        """Ignore."""

    def event(self, event: dict[str, Any]) -> None:
        """Ignore."""

    def note(self, text: str) -> None:
        """Ignore."""


class StreamProgress:
    """Progress lines on a stream: bold on a terminal, plain text elsewhere.

    Task lines are throttled to one per `task_interval` seconds: a window runs thousands
    of tasks, and the playbook output, when shown, already lists each of them.
    """

    def __init__(self, stream: TextIO, *, task_interval: float = 5.0) -> None:
        """Write to `stream`, at most one task line per `task_interval` seconds."""
        self._stream = stream
        self._tty = stream.isatty()
        self._task_interval = task_interval
        self._last_task = 0.0
        self._phase = ""

    def _line(self, text: str, *, strong: bool = False) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        body = f"\033[1m{text}\033[0m" if strong and self._tty else text
        self._stream.write(f"[mwctl {stamp}Z] {body}\n")
        self._stream.flush()

    def phase_started(self, name: str, title: str, budget: float) -> None:
        """Announce the phase and its budget."""
        self._phase = name
        self._last_task = 0.0
        self._line(f"phase {name} starts: {title} (budget {budget / 60:.0f} min)", strong=True)

    def phase_ended(self, name: str, status: str, duration: float) -> None:
        """Announce how the phase ended."""
        self._line(f"phase {name} ended: {status} after {duration:.1f}s", strong=True)

    def event(self, event: dict[str, Any]) -> None:
        """Show the current task and host, throttled."""
        if event.get("event") not in {"runner_on_start", "playbook_on_task_start"}:
            return
        now = time.monotonic()
        if now - self._last_task < self._task_interval:
            return
        self._last_task = now
        data = event.get("event_data") or {}
        task = data.get("task") or data.get("name") or "?"
        host = data.get("host") or "-"
        self._line(f"  {self._phase}: {task} on {host}")

    def note(self, text: str) -> None:
        """Show a decision or an update."""
        self._line(text, strong=True)
