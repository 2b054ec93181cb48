"""Advisory file locks and atomic writes for everything cached between runs.

Builds and caches are shared by threads, processes and notebook kernels at once
(the lab tests build the Go data plane from several threads; notebooks compute
cached results side by side). Two rules keep them safe: one builder at a time
holds an exclusive ``flock`` on a lock file beside the target, and a result is
written under a name unique to its writer, then renamed over the target, so a
reader sees a whole file or none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``<target>.lock`` for the ``with`` block.

    ``flock`` locks belong to an open file, so two threads of one process
    exclude each other as two processes do.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def replaced_atomically(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``; renamed onto it when the block succeeds.

    The name is unique to this writer (``mkstemp``), never derived from the PID, so
    threads of one process cannot take each other's file. On an error the
    temporary file is removed and ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
