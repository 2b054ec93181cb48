"""Several what-ifs at once share the load and the as-it-was replay, and give
exactly what separate ``whatif`` calls give."""

from __future__ import annotations

import json

import pytest
from chain_fixture import build

from analysis.errors import UserError
from analysis.whatif import whatif, whatifs

SCENARIOS = {
    "fix": {"concurrency_limit": 50},
    "workaround": {"source_addresses": "random"},
    "cap": {"max_batch": 1000},
}


@pytest.fixture(scope="module")
def incident():
    return build(seed=3)


def test_many_scenarios_equal_separate_calls(incident):
    many = whatifs(incident, SCENARIOS)
    assert list(many) == list(SCENARIOS)
    for name, kw in SCENARIOS.items():
        one = whatif(incident, **kw)
        assert many[name].frame.equals(one.frame)
        assert json.dumps(many[name].to_dict()) == json.dumps(one.to_dict())
    assert many["fix"].changed.concurrency_limit == 50
    assert many["workaround"].changed.source_addresses == "random"


def test_an_unknown_lever_is_a_user_error(incident):
    with pytest.raises(UserError, match="unknown colour"):
        whatifs(incident, {"x": {"colour": "blue"}})
