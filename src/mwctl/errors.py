"""The exceptions mwctl raises; each carries the exit code the CLI returns for it."""

from __future__ import annotations


class MwctlError(Exception):
    """Base of every error mwctl reports to the user.

    The message says what failed, quotes the bad value and says how to fix it.
    """

    exit_code = 1


class UsageError(MwctlError):
    """A command-line argument or setting is invalid; nothing was changed."""

    exit_code = 2


class ProjectError(MwctlError):
    """The checkout or the machine is not set up to run the window."""

    exit_code = 3


class PlaybookFailedError(MwctlError):
    """A playbook finished with failed or unreachable hosts."""

    exit_code = 4


class RefusedError(MwctlError):
    """mwctl refused to start a run: a rule of the plan or the policy forbids it; nothing ran."""

    exit_code = 5


class LockHeldError(RefusedError):
    """Another run holds the control node's lock."""


class StaleLockError(RefusedError):
    """The lock's holder is gone; taking the lock over needs the operator's explicit consent."""
