"""The SDK natively: packed batches, lazy data access, verdicts, errors."""

import json

import pytest

from sluice_sdk import DROP, Event, Rejected, Retryable, Stage, lookup, log, native
from sluice_sdk.batch import unpack
from sluice_sdk import _json


def pack(events):
    """What the host's `pack` makes of (id, kind, source, timestamp, data) tuples."""
    text, lengths = "", []
    for id_, kind, source, _, data in events:
        for part in (id_, kind, source, data):
            text += part
            lengths.append(len(part.encode("utf-8")))
    return text, lengths, [e[3] for e in events]


def test_unpack_ascii_and_utf8_batches():
    for events in (
        [("a", "page_view", "web", 5, '{"x":1}'), ("b", "k", "", -1, "{}")],
        [("é1", "kïnd", "src", 7, '{"name":"Zoë 🚀"}'), ("b", "k", "", 0, '{"a":"日本"}')],
    ):
        got = unpack(*pack(events))
        assert [(e.id, e.kind, e.source, e.timestamp, e.data_json) for e in got] == events


def test_unpack_rejects_lengths_past_the_text():
    with pytest.raises(ValueError, match="run past"):
        unpack("abc", [1, 1, 1, 5], [0])
    with pytest.raises(ValueError, match="needs 4 lengths"):
        unpack("abc", [1, 1], [0])


@pytest.mark.parametrize("text,key,expected", [
    ('{"a":1,"ua":"x"}', "ua", "x"),
    ('{"a" : {"ua":"nested"}, "ua" : [1,2]}', "ua", [1, 2]),
    ('{"a":"has \\"ua\\": inside","ua":3}', "ua", 3),
    ('{"a":"ua","b":2}', "ua", None),
    ('{"x":{"y":1}}', "y", None),
    ("{}", "ua", None),
])
def test_get_reads_the_top_level_member(text, key, expected):
    event = Event._from_host("i", "k", "", 0, text)
    assert event.get(key) == expected == json.loads(text).get(key)
    assert not event.changed


def test_fast_path_reads_without_parsing():
    assert _json.get_top_level('{"email":"a@b","ua":"Mozilla","url":"https://h/"}', "ua", None) == "Mozilla"
    # A nested object before the key: the fast path declines and get() parses.
    assert _json.get_top_level('{"a":{"ua":1},"ua":2}', "ua", None) is NotImplemented


def test_nested_paths_set_remove_and_change_tracking():
    event = Event._from_host("i", "k", "", 0, '{"a":{"b":1},"c":"d"}')
    assert event.get("a.b") == 1 and event["c"] == "d" and "a.b" in event and "a.x" not in event
    with pytest.raises(KeyError):
        event["zzz"]
    event.set("new", [1, "é"])
    assert event.changed and json.loads(event.data_json) == {"a": {"b": 1}, "c": "d", "new": [1, "é"]}
    event.set("a.b", 2)
    assert event.get("a.b") == 2
    assert event.remove("c") == "d" and event.remove("c") is None
    event.set_fields({"x": 1, "y": {"z": None}})
    assert json.loads(event.data_json) == {"a": {"b": 2}, "new": [1, "é"], "x": 1, "y": {"z": None}}


def test_splicing_into_an_empty_object():
    event = Event._from_host("i", "k", "", 0, " { } ")
    event.set_fields([("a", 1), ("b", "two")])
    assert json.loads(event.data_json) == {"a": 1, "b": "two"}


class Everything(Stage):
    """One verdict per `data.do`."""

    def __init__(self, config):
        if config.get("fail"):
            raise ValueError("config.fail is set")
        self.config = config

    def process(self, event, ctx):
        do = event.get("do")
        if do == "drop":
            return DROP
        if do == "set":
            event.set("seen", ctx.attempt)
            return None
        if do == "rename":
            event.kind = "renamed"
            return None
        if do == "split":
            return [Event("part", {"n": n}, id="%s-%d" % (event.id, n)) for n in range(3)]
        if do == "none":
            return []
        if do == "retry":
            raise Retryable("try again")
        if do == "reject":
            raise Rejected("bad event")
        if do == "lookup":
            event.set("country", lookup("geo", event.get("ip")))
            log("info", "looked up", ip=event.get("ip"))
            return None
        if do == "boom":
            raise ZeroDivisionError("a bug")
        return None


def events(*dos):
    return [Event._from_host("e%d" % i, "k", "s", i, json.dumps({"do": d, "ip": "1.2.3.4"})) for i, d in enumerate(dos)]


def test_every_verdict():
    stage = native.init(Everything, "{}")
    native.set_table("geo", {"1.2.3.4": "NL"})
    results = native.run(stage, events("pass", "drop", "set", "rename", "split", "none", "retry", "reject", "lookup"))
    kinds = [r[0] for r in results]
    assert kinds == ["kept", "dropped", "emitted", "emitted", "emitted", "dropped", "failed", "failed", "emitted"]
    assert results[2][1][0].get("seen") == 1 and results[2][1][0].id == "e2"
    assert results[3][1][0].kind == "renamed"
    assert [e.id for e in results[4][1]] == ["e4-0", "e4-1", "e4-2"] and results[4][1][2].get("n") == 2
    assert results[6][1].retryable and results[6][1].message == "try again"
    assert not results[7][1].retryable and results[7][1].message == "bad event"
    assert results[8][1][0].get("country") == "NL"


def test_a_bug_propagates_and_config_errors_reject():
    stage = native.init(Everything, {})
    with pytest.raises(ZeroDivisionError):
        native.run(stage, events("boom"))
    with pytest.raises(ValueError, match="config.fail is set"):
        native.init(Everything, '{"fail": true}')
    with pytest.raises(ValueError, match="invalid config"):
        native.init(Everything, "[1]")
