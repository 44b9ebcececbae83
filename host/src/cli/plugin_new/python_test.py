"""Unit tests of the stage, run natively: python -m pytest"""

import json

from sluice_sdk import Event, native

from stage import {{class}}


def test_tags_drops_and_rejects():
    stage = native.init({{class}}, {"tag": "t"})
    events = [Event("hit", json.dumps(d), id=str(i)) for i, d in enumerate([{"a": 1}, {"drop": True}, {"reject": True}])]
    (tagged, dropped, rejected) = native.run(stage, events)
    assert tagged[0] == "emitted" and tagged[1][0].get("tagged_by") == "t"
    assert dropped == ("dropped", None)
    assert rejected[0] == "failed" and not rejected[1].retryable
