// The JavaScript example stages natively: the URL rules of the Rust
// url-parts, and the bot filter (the server test compares them with the Rust
// plugins on many events).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Event } from "../plugin-sdk/js/src/index.js";
import { init, run } from "../plugin-sdk/js/src/native.js";
import BotFilter from "./bot-filter.js";
import UrlParts, { percentDecode, queryObject, splitUrl } from "./url-parts.js";

test("splitUrl follows the Rust rules", () => {
  assert.deepEqual(splitUrl("https://User@Shop.Example.com:8443/a/b?x=1&y=%20z#frag"), ["Shop.Example.com", "/a/b", "x=1&y=%20z"]);
  assert.deepEqual(splitUrl("http://h"), ["h", "/", null]);
  assert.deepEqual(splitUrl("http://[::1]:80/p"), ["[::1]", "/p", null]);
  assert.notEqual(splitUrl("http://h:+80/"), null);
  for (const bad of ["not a url", "http://", "http://h:99999/", "ht_tp://h/", "1http://h/", "http://a b/", "http://a\u3000b/", "http://[::1/"]) {
    assert.equal(splitUrl(bad), null, bad);
  }
  assert.equal(percentDecode("a%20b+c%zz"), "a b c%zz");
  assert.equal(percentDecode("%C3%A9%ff"), "é\ufffd");
  assert.deepEqual(queryObject("b=2&a=1&b=3&&c"), { a: "1", b: "3", c: "" });
});

test("the stages", () => {
  const events = ['{"ua":"Googlebot"}', '{"ua":"Mozilla","url":"https://H.example/x?q=1"}', '{"url":"nope"}'].map((d, i) => Event.fromHost(String(i), "pv", "", 0n, d));
  assert.deepEqual(run(init(BotFilter), events).map((r) => r[0]), ["dropped", "kept", "kept"]);
  const results = run(init(UrlParts), events);
  assert.equal(results[0][0], "kept");
  assert.equal(results[1][1][0].get("host"), "h.example");
  assert.deepEqual(results[1][1][0].get("query"), { q: "1" });
  assert.equal(results[2][1].message, 'data.url is not a valid absolute URL: "nope"');
});
