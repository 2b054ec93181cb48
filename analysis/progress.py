"""One live progress line for long work: counts, rate and an ETA, on terminals only.

``with progress_line("ingest", total=size, unit="B") as bar: ... bar.advance(n)``
draws one updating line on stderr (tqdm) while the work runs, and clears it at
the end, so the command's own summary follows on a clean line. When stderr is not a
terminal (a pipe, a log, pytest, CI) nothing is drawn, yet the counts are
kept (``Progress.done``), so callers and tests read the same numbers either way.
The module imports nothing from the package: every stage may use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm


def shown_on(stream: TextIO) -> bool:
    """Whether a progress line belongs on ``stream``: an interactive terminal, not CI
    (whose logs keep every redraw) and not a ``dumb`` one (no carriage return)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
    return tty and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class Progress:
    """The handle of one progress line: move it on, say what it is at.

    Safe from several threads (a poller and the worker may both move it). ``done``
    and ``total`` are kept whether or not the line is drawn.
    """

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self.done: float = 0
        self.note_text = ""

    @property
    def total(self) -> float | None:
        return self._bar.total

    @total.setter
    def total(self, value: float | None) -> None:
        with self._lock:
            self._bar.total = value
            self._bar.refresh()

    def advance(self, n: float = 1) -> None:
        """``n`` more units done."""
        with self._lock:
            self.done += n
            self._bar.update(n)

    def reach(self, done: float) -> None:
        """The work is ``done`` units along (never moves back)."""
        with self._lock:
            if done > self.done:
                self._bar.update(done - self.done)
                self.done = done

    def step(self, text: str) -> None:
        """One step done; the next is ``text``."""
        self.advance()
        self.note(text)

    def note(self, text: str) -> None:
        """What is being worked on now (shown after the counts)."""
        with self._lock:
            self.note_text = text
            self._bar.set_postfix_str(text)


# tqdm's own format, with the unit after both counts ("1.2MB/3.4MB", not "1.2M/3.4M")
_BYTES_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B"
                 " [{elapsed}<{remaining}, {rate_fmt}{postfix}]")


@contextlib.contextmanager
def progress_line(
    what: str,
    *,
    total: float | None = None,
    unit: str = "",
    stream: TextIO | None = None,
) -> Iterator[Progress]:
    """A progress line for ``what`` on ``stream`` (stderr), drawn only on a terminal.

    ``total`` units of ``unit`` (``"B"``: bytes, shown as kB/MB/GB) give a percentage
    and an ETA; without a total the line shows counts and a rate. The line is
    cleared on exit, after a last redraw with the final count.
    """
    stream = stream if stream is not None else sys.stderr
    size = unit == "B"
    try:  # a terminal that reports no width (some ptys) would get an empty line
        sized = os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        sized = False
    bar = tqdm(total=total, desc=what, unit=unit or "it", unit_scale=size,
               unit_divisor=1000, file=stream, disable=not shown_on(stream), leave=False,
               dynamic_ncols=sized, ncols=None if sized else 100,
               nrows=None if sized else 24, mininterval=0.2,
               smoothing=0.1,
               bar_format=_BYTES_FORMAT if size and total else None)
    handle = Progress(bar)
    try:
        yield handle
    finally:
        with handle._lock:
            bar.refresh()
            bar.close()
