"""Go network error text -> its parts, and the cache a log message names.

Go formats a ``*net.OpError`` as ``OP NET [SOURCE->]ADDR: ERR`` where ``ERR`` is
often an ``*os.SyscallError`` (``SYSCALL: MESSAGE``), e.g.::

    dial tcp 127.32.0.1:0->127.0.0.1:11211: bind: address already in use
    dial tcp 127.0.0.1:11211: connect: cannot assign requested address
    read tcp 127.0.0.1:40312->127.0.0.1:11211: i/o timeout

``op`` decision: Go's ``OpError.Op`` is ``dial`` for both lines above, but where
the failing syscall is ``bind`` or ``connect`` we store the syscall, because it
tells the two exhaustion modes apart (a fixed source address fails in bind(),
the default one in connect()). Otherwise ``op`` is the OpError's op (dial, read,
write, ...). ``local_addr`` is the OpError's source, ``remote_addr`` its address
(for ``accept``/``listen`` the address is the local one).

This module is the one implementation of the parse: the loader applies it to
each *distinct* error text of a file and joins the result back in SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: errno classes, in the order they are tested; the first whose phrase occurs wins.
ERRNO_PHRASES: tuple[tuple[str, str], ...] = (
    ("address already in use", "EADDRINUSE"),
    ("cannot assign requested address", "EADDRNOTAVAIL"),
    ("connection refused", "ECONNREFUSED"),
    ("connection reset by peer", "ECONNRESET"),
    ("too many open files", "EMFILE"),
    ("i/o timeout", "ETIMEDOUT"),
    ("timed out", "ETIMEDOUT"),
    ("connect timeout", "ETIMEDOUT"),
    ("deadline exceeded", "ETIMEDOUT"),
)
ERRNO_CLASSES: tuple[str, ...] = (
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "EMFILE",
    "EOF",
    "other",
)
#: syscalls stored as ``op`` in place of the OpError's op (see the module docstring).
SYSCALL_OPS = frozenset({"bind", "connect"})

_OP_ERROR = re.compile(
    r"\b(?P<op>dial|read|write|accept|listen|close|lookup)"
    r" (?P<net>tcp[46]?|udp[46]?|unix\w*|ip[46]?(?::\w+)?)"
    r"(?: (?P<src>[^\s>]+?)->(?P<dst>\S+?)| (?P<addr>\S+?))?"
    r": (?P<rest>.*)$",
    re.DOTALL,
)
_SYSCALL = re.compile(r"^(?P<sys>[a-z][a-z0-9_]*): ")
_CONNECT_TIMEOUT = re.compile(r"connect timeout to (?P<addr>\S+)")
_EOF = re.compile(r"(?:^|: )(?:unexpected )?EOF$")
_CACHE = re.compile(
    r"(?i)\b(?:failed to|failed|could not|couldn't|cannot|can't|unable to|error)\s+"
    r"(?:get|set|add|delete|fetch|store|write|read|update|touch|replace|incr|increment|"
    r"decr|decrement|load|save|put|lookup|look up)\s+(?:the\s+)?"
    r"(?P<cache>[a-z][\w-]*(?: [a-z][\w-]*){0,3}?)\s+cache\b"
)


@dataclass(frozen=True)
class NetError:
    """The parts of one Go network error text (None where the text does not say)."""

    op: str | None
    local_addr: str | None
    remote_addr: str | None
    errno_class: str | None


def errno_class(text: str) -> str:
    """The errno class the error text names: one of ``ERRNO_CLASSES``."""
    lower = text.lower()
    for phrase, cls in ERRNO_PHRASES:
        if phrase in lower:
            return cls
    if _EOF.search(text.strip()):
        return "EOF"
    return "other"


def parse_net_error(text: str | None) -> NetError:
    """Parse a Go network error text into op, addresses and errno class.

    Never raises: text that is not a network error gets ``errno_class`` "other"
    (or EOF/ETIMEDOUT where it says so) and None elsewhere; empty or missing
    text gets all None.
    """
    if text is None or not text.strip():
        return NetError(None, None, None, None)
    cls = errno_class(text)
    m = _OP_ERROR.search(text)
    if m is None:
        t = _CONNECT_TIMEOUT.search(text)  # gomemcache's ConnectTimeoutError
        if t is not None:
            return NetError("connect", None, t["addr"], cls)
        return NetError(None, None, None, cls)
    op, local, remote = m["op"], m["src"], m["dst"]
    if m["addr"] is not None:
        if op in ("accept", "listen"):
            local = m["addr"]
        else:
            remote = m["addr"]
    sys_m = _SYSCALL.match(m["rest"])
    if sys_m is not None and sys_m["sys"] in SYSCALL_OPS:
        op = sys_m["sys"]
    return NetError(op, local, remote, cls)


def cache_from_msg(msg: str | None) -> str | None:
    """The cache a log message names, e.g. "failed to set post cache item" -> "post".

    Lower case; None when the message names no cache.
    """
    if not msg:
        return None
    m = _CACHE.search(msg)
    return m["cache"].lower() if m else None
