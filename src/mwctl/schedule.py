"""The agreed maintenance window in time: when it opens and how long it lasts."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from mwctl.errors import RefusedError, UsageError

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?$")


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class TimeWindow:
    """A maintenance window: start and end as POSIX timestamps."""

    start: float
    end: float

    @classmethod
    def parse(cls, text: str, *, now: float | None = None) -> TimeWindow:
        """Parse START/DURATION: `2026-12-05T02:00Z/4h`, `now/90m`, `now/1h30m`.

        START must carry its UTC offset (`Z` or `+01:00`) so that a window agreed in UTC
        is not shifted by the control node's time zone.

        Raises:
            UsageError: the text is not START/DURATION.
        """
        start_text, sep, duration_text = text.partition("/")
        if not sep:
            msg = f"window {text!r} is not START/DURATION, e.g. 2026-12-05T02:00Z/4h or now/90m"
            raise UsageError(msg)
        if start_text == "now":
            start = time.time() if now is None else now
        else:
            try:
                parsed = datetime.fromisoformat(start_text)
            except ValueError as error:
                msg = f"window start {start_text!r} is not ISO-8601, e.g. 2026-12-05T02:00Z"
                raise UsageError(msg) from error
            if parsed.tzinfo is None:
                msg = f"window start {start_text!r} has no UTC offset: add Z for UTC"
                raise UsageError(msg)
            start = parsed.timestamp()
        match = _DURATION.match(duration_text)
        if not duration_text or not match:
            msg = f"window duration {duration_text!r} is not like 4h, 90m or 1h30m"
            raise UsageError(msg)
        seconds = int(match.group(1) or 0) * 3600 + int(match.group(2) or 0) * 60
        if seconds <= 0:
            msg = f"window duration {duration_text!r} is empty"
            raise UsageError(msg)
        return cls(start=start, end=start + seconds)

    @property
    def duration(self) -> float:
        """Length of the window in seconds."""
        return self.end - self.start

    def check(self, needed: float, *, now: float | None = None) -> None:
        """Refuse to start unless the window is open and has `needed` seconds left.

        Raises:
            RefusedError: the window is not open yet, is over, or is too short for the
                phases' budgets.
        """
        moment = time.time() if now is None else now
        if moment < self.start:
            msg = (
                f"the window opens at {_iso(self.start)}; it is {_iso(moment)}. "
                "Start the run inside the window"
            )
            raise RefusedError(msg)
        if moment >= self.end:
            msg = f"the window closed at {_iso(self.end)}; it is {_iso(moment)}. Reschedule"
            raise RefusedError(msg)
        left = self.end - moment
        if left < needed:
            msg = (
                f"the window has {_minutes(left)} left (until {_iso(self.end)}) but the phases "
                f"to run are budgeted {_minutes(needed)}: not enough time to finish and to "
                "roll back safely. Reschedule, or shorten the budgets in the policy"
            )
            raise RefusedError(msg)

    def as_dict(self) -> dict[str, object]:
        """The window as recorded in run.json."""
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "start_ts": self.start,
            "end_ts": self.end,
            "duration_seconds": self.duration,
        }
