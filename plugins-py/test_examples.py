"""The Python example stages natively: the URL rules of the Rust url-parts,
and the bot filter's matching (the server test compares them with the Rust
plugins on many events)."""

from sluice_sdk import Event, native

from bot_filter import BotFilter
from url_parts import UrlParts, percent_decode, query_object, split_url


def test_split_url_follows_the_rust_rules():
    assert split_url("https://User@Shop.Example.com:8443/a/b?x=1&y=%20z#frag") == ("Shop.Example.com", "/a/b", "x=1&y=%20z")
    assert split_url("http://h") == ("h", "/", None)
    assert split_url("http://[::1]:80/p") == ("[::1]", "/p", None)
    assert split_url("http://h:+80/") is not None  # Rust's u16 parse takes a leading +
    for bad in ["not a url", "http://", "http://h:99999/", "ht_tp://h/", "1http://h/", "http://a b/", "http://a\u3000b/", "http://[::1/"]:
        assert split_url(bad) is None, bad
    assert percent_decode("a%20b+c%zz") == "a b c%zz"
    assert percent_decode("%C3%A9%ff") == "é\ufffd"
    assert query_object("b=2&a=1&b=3&&c") == {"a": "1", "b": "3", "c": ""}


def test_stages():
    bots = native.init(BotFilter, {})
    urls = native.init(UrlParts, {})
    events = [Event._from_host(str(i), "pv", "", 0, d) for i, d in enumerate(['{"ua":"Googlebot"}', '{"ua":"Mozilla","url":"https://H.example/x?q=1"}', '{"url":"nope"}'])]
    assert [r[0] for r in native.run(bots, events)] == ["dropped", "kept", "kept"]
    results = native.run(urls, events)
    assert results[0][0] == "kept"
    assert results[1][1][0].get("host") == "h.example" and results[1][1][0].get("query") == {"q": "1"}
    assert results[2][0] == "failed" and results[2][1].message == 'data.url is not a valid absolute URL: "nope"'
