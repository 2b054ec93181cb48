"""Signal identities: names are data, never syntax.

Spec: any Unicode caller, errno class, cache, operation, metric or label value
gives a key that parses back to exactly the same identity (so two identities
never share a key), ordinary names keep their familiar keys, and ``printable``
shows every control or format character as a visible escape.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.signal_id import CALLER_MEASURES, SignalId, printable

names = st.text(min_size=1, max_size=40)
hostile = st.sampled_from([
    "host:8080", "svc:v2", "spiffe://prod/ns/feed/sa/indexer", "a,b=c", "{x}", '"q"',
    "feed:indexer\n\x1b[31m", "tab\there", "\u202eevil", "🔥", "total", "cache", "op",
    "caller:x:uris", "x" * 10_000, "back\\slash", " lead", "trail ",
])
any_name = st.one_of(names, hostile)


@st.composite
def signal_ids(draw) -> SignalId:
    family = draw(st.sampled_from(["caller", "errors", "metric"]))
    if family == "caller":
        return SignalId.for_caller(draw(any_name), draw(st.sampled_from(CALLER_MEASURES)))
    if family == "errors":
        measure = draw(st.sampled_from(["total", "errno", "cache", "op"]))
        return SignalId.for_errors(measure, draw(any_name))
    labels = draw(st.dictionaries(any_name, any_name, max_size=3))
    return SignalId.for_metric(draw(any_name), labels)


@given(signal_ids())
def test_every_key_parses_back_to_its_identity(sid):
    assert SignalId.parse(sid.key) == sid


@given(signal_ids(), signal_ids())
def test_two_identities_never_share_a_key(a, b):
    assert (a.key == b.key) == (a == b)


@given(signal_ids())
def test_the_aggregate_of_a_label_set_is_its_metric(sid):
    agg = sid.aggregate
    assert agg.labels == ()
    assert (agg.family, agg.measure, agg.subject) == (sid.family, sid.measure, sid.subject)


def test_ordinary_names_keep_their_familiar_keys():
    assert SignalId.for_caller("feed-indexer", "uris").key == "caller:feed-indexer:uris"
    assert SignalId.for_errors("errno", "EADDRNOTAVAIL").key == "errors:EADDRNOTAVAIL"
    assert SignalId.for_errors("total").key == "errors:total"
    assert SignalId.for_errors("cache", "memcached").key == "errors:cache:memcached"
    assert (SignalId.for_metric("node_sockstat_TCP_tw", {"host": "dp-1", "dc": "us-east"}).key
            == "metric:node_sockstat_TCP_tw{dc=us-east,host=dp-1}")


def test_a_host_port_caller_is_quoted_not_split():
    sid = SignalId.for_caller("10.0.0.7:8080", "uris")
    assert sid.key == 'caller:"10.0.0.7:8080":uris'
    assert SignalId.parse(sid.key).caller == "10.0.0.7:8080"


@pytest.mark.parametrize("text", ["", "caller:x", "caller:x:bogus", "metric:m{b=1,a=2}",
                                  "errors:totally:x", 'caller:"x:uris', "other:x"])
def test_text_that_is_no_key_is_refused(text):
    with pytest.raises(ValueError, match="not a signal key"):
        SignalId.parse(text)


@given(st.text())
def test_printable_leaves_no_control_or_format_character(text):
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text


def test_printable_escapes_visibly():
    assert printable("feed:indexer\n\x1b[31m\u202e") == "feed:indexer\\n\\x1b[31m\\u202e"
