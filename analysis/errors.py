"""Errors that are the user's to fix, shown as one line, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for or gave us (a path, a format, a flag).

    The CLI prints ``postmortem: <message>`` and exits non-zero. The message
    names the path (and line, where there is one) and what was expected.
    """
