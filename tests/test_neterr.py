"""Go network error texts are parsed into op, addresses and errno class; msg names a cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.ingest import NetError, cache_from_msg, parse_net_error
from analysis.ingest.neterr import ERRNO_CLASSES

# (syscall error text, errno class) as Go's syscall.Errno prints them
ERRNO_TEXTS = {
    "EADDRINUSE": "address already in use",
    "EADDRNOTAVAIL": "cannot assign requested address",
    "ECONNREFUSED": "connection refused",
    "ECONNRESET": "connection reset by peer",
    "EMFILE": "too many open files",
}

octet = st.integers(0, 255)
ipv4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)
ipv6 = st.sampled_from(["[::1]", "[::]", "[fe80::1%lo]", "[2001:db8::7]"])
port = st.integers(0, 65535)
addr = st.builds(lambda h, p: f"{h}:{p}", st.one_of(ipv4, ipv6), port)
prefix = st.sampled_from(["", "memcache: ", "failed to get post cache item: ", "rpc error: x: "])


def test_the_post_mortems_line():
    got = parse_net_error("dial tcp 127.32.0.1:0->127.0.0.1:11211: bind: address already in use")
    assert got == NetError("bind", "127.32.0.1:0", "127.0.0.1:11211", "EADDRINUSE")


def test_the_lab_line_without_a_fixed_source():
    got = parse_net_error("dial tcp 127.0.0.1:11211: connect: cannot assign requested address")
    assert got == NetError("connect", None, "127.0.0.1:11211", "EADDRNOTAVAIL")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dial tcp 127.0.0.1:11211: i/o timeout",
         NetError("dial", None, "127.0.0.1:11211", "ETIMEDOUT")),
        ("read tcp 127.0.0.1:40312->127.0.0.1:11211: read: connection reset by peer",
         NetError("read", "127.0.0.1:40312", "127.0.0.1:11211", "ECONNRESET")),
        ("write tcp 10.0.0.1:5->10.0.0.2:11211: write: broken pipe",
         NetError("write", "10.0.0.1:5", "10.0.0.2:11211", "other")),
        ("dial tcp 127.0.0.1:11211: socket: too many open files",
         NetError("dial", None, "127.0.0.1:11211", "EMFILE")),
        ("accept tcp [::]:9000: accept4: too many open files",
         NetError("accept", "[::]:9000", None, "EMFILE")),
        ("EOF", NetError(None, None, None, "EOF")),
        ("memcache: unexpected EOF", NetError(None, None, None, "EOF")),
        ("memcache: connect timeout to 127.0.0.1:11211",
         NetError("connect", None, "127.0.0.1:11211", "ETIMEDOUT")),
        ("memcache: cache miss", NetError(None, None, None, "other")),
        ("", NetError(None, None, None, None)),
        (None, NetError(None, None, None, None)),
    ],
)
def test_known_texts(text, expected):
    assert parse_net_error(text) == expected


@given(op=st.sampled_from(["dial", "read", "write"]), local=st.one_of(st.none(), addr),
       remote=addr, errno=st.sampled_from(sorted(ERRNO_TEXTS)), pre=prefix,
       syscall=st.sampled_from(["bind", "connect", "read", "write", "socket"]))
def test_op_error_round_trip(op, local, remote, errno, pre, syscall):
    """What Go's OpError.Error() writes, the parser reads back."""
    where = f"{local}->{remote}" if local else remote
    text = f"{pre}{op} tcp {where}: {syscall}: {ERRNO_TEXTS[errno]}"
    got = parse_net_error(text)
    assert got.local_addr == local
    assert got.remote_addr == remote
    assert got.errno_class == errno
    assert got.op == (syscall if syscall in ("bind", "connect") else op)


@given(op=st.sampled_from(["dial", "read", "write"]), local=st.one_of(st.none(), addr),
       remote=addr)
def test_timeouts_are_etimedout(op, local, remote):
    where = f"{local}->{remote}" if local else remote
    got = parse_net_error(f"{op} tcp {where}: i/o timeout")
    assert (got.op, got.local_addr, got.remote_addr, got.errno_class) == (
        op, local, remote, "ETIMEDOUT")


@given(st.text(max_size=300))
def test_any_text_parses_to_a_known_class(text):
    got = parse_net_error(text)
    if text.strip():
        assert got.errno_class in ERRNO_CLASSES
    else:
        assert got == NetError(None, None, None, None)


words = st.from_regex(r"[a-z]{2,10}", fullmatch=True).filter(lambda w: w not in ("cache", "the"))


@given(verb=st.sampled_from(["get", "set", "delete", "add"]),
       name=st.lists(words, min_size=1, max_size=3).map(" ".join),
       pre=st.sampled_from(["", "memcache: "]), post=st.sampled_from(["", ": EOF", ": dial tcp"]))
def test_cache_named_in_msg(verb, name, pre, post):
    assert cache_from_msg(f"{pre}failed to {verb} {name} cache item{post}") == name


@pytest.mark.parametrize(
    ("msg", "cache"),
    [
        ("failed to set post cache item", "post"),
        ("failed to get interaction counts cache item", "interaction counts"),
        ("memcache: failed to get user cache item: dial tcp 127.0.0.1:11211: i/o timeout", "user"),
        ("rpc", None),
        ("", None),
        (None, None),
    ],
)
def test_cache_examples(msg, cache):
    assert cache_from_msg(msg) == cache
