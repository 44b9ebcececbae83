// The SDK natively: packed batches, lazy data access, verdicts, errors.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DROP, Event, Rejected, Retryable, log, lookup } from "../src/index.js";
import { unpack } from "../src/batch.js";
import { getTopLevel } from "../src/json.js";
import { init, run, setTable } from "../src/native.js";

/** What the host's `pack` makes of [id, kind, source, timestamp, data] tuples. */
function pack(events) {
  let text = "";
  const lengths = [];
  for (const [id, kind, source, , data] of events) {
    for (const part of [id, kind, source, data]) {
      text += part;
      lengths.push(new TextEncoder().encode(part).length);
    }
  }
  return [text, lengths, events.map((e) => e[3])];
}

test("unpacks ASCII and UTF-8 batches", () => {
  for (const events of [
    [["a", "page_view", "web", 5n, '{"x":1}'], ["b", "k", "", -1n, "{}"]],
    [["é1", "kïnd", "src", 7n, '{"name":"Zoë 🚀"}'], ["b", "k", "", 0n, '{"a":"日本"}']],
  ]) {
    const got = unpack(...pack(events)).map((e) => [e.id, e.kind, e.source, e.timestamp, e.dataJson]);
    assert.deepEqual(got, events);
  }
  assert.throws(() => unpack("abc", [1, 1, 1, 5], [0n]), /run past/);
  assert.throws(() => unpack("abc", [1, 1], [0n]), /needs 4 lengths/);
});

test("get reads the top-level member", () => {
  const cases = [
    ['{"a":1,"ua":"x"}', "ua"],
    ['{"a" : {"ua":"nested"}, "ua" : [1,{"b":"}"}]}', "ua"],
    ['{"a":"has \\"ua\\": inside","ua":3}', "ua"],
    ['{"a":"ua","b":2}', "ua"],
    ['{"x":{"y":1}}', "y"],
    ['{"s":"q\\\\"}', "s"],
    ["{}", "ua"],
  ];
  for (const [text, key] of cases) {
    const event = Event.fromHost("i", "k", "", 0n, text);
    assert.deepEqual(event.get(key), JSON.parse(text)[key], text);
    assert.equal(event.changed, false);
  }
  assert.equal(getTopLevel('{"email":"a@b","ua":"Mozilla","url":"https://h/"}', "ua", null), "Mozilla");
  assert.equal(getTopLevel('{"a":{"ua":1},"ua":2}', "ua", null), undefined, "declines: parse instead");
});

test("nested paths, set, remove and change tracking", () => {
  const event = Event.fromHost("i", "k", "", 0n, '{"a":{"b":1},"c":"d"}');
  assert.equal(event.get("a.b"), 1);
  assert.ok(event.has("a.b") && !event.has("a.x"));
  event.set("new", [1, "é"]);
  assert.ok(event.changed);
  assert.deepEqual(JSON.parse(event.dataJson), { a: { b: 1 }, c: "d", new: [1, "é"] });
  event.set("a.b", 2);
  assert.equal(event.get("a.b"), 2);
  assert.equal(event.remove("c"), "d");
  assert.equal(event.remove("c"), undefined);
  const empty = Event.fromHost("i", "k", "", 0n, " { } ");
  empty.setFields({ a: 1, b: "two" });
  assert.deepEqual(JSON.parse(empty.dataJson), { a: 1, b: "two" });
});

class Everything {
  constructor(config) {
    if (config.fail) throw new Error("config.fail is set");
  }

  process(event, ctx) {
    switch (event.get("do")) {
      case "drop": return DROP;
      case "set": event.set("seen", ctx.attempt); return undefined;
      case "rename": event.kind = "renamed"; return undefined;
      case "split": return [0, 1, 2].map((n) => new Event("part", { n }, { id: `${event.id}-${n}` }));
      case "none": return [];
      case "retry": throw new Retryable("try again");
      case "reject": throw new Rejected("bad event");
      case "lookup":
        event.set("country", lookup("geo", event.get("ip")));
        log("info", "looked up", { ip: event.get("ip") });
        return undefined;
      case "boom": throw new TypeError("a bug");
      default: return undefined;
    }
  }
}

const events = (...dos) => dos.map((d, i) => Event.fromHost(`e${i}`, "k", "s", BigInt(i), JSON.stringify({ do: d, ip: "1.2.3.4" })));

test("every verdict", () => {
  const stage = init(Everything, "{}");
  setTable("geo", { "1.2.3.4": "NL" });
  const results = run(stage, events("pass", "drop", "set", "rename", "split", "none", "retry", "reject", "lookup"));
  assert.deepEqual(results.map((r) => r[0]), ["kept", "dropped", "emitted", "emitted", "emitted", "dropped", "failed", "failed", "emitted"]);
  assert.equal(results[2][1][0].get("seen"), 1);
  assert.equal(results[2][1][0].id, "e2");
  assert.equal(results[3][1][0].kind, "renamed");
  assert.deepEqual(results[4][1].map((e) => e.id), ["e4-0", "e4-1", "e4-2"]);
  assert.ok(results[6][1].retryable && results[6][1].message === "try again");
  assert.ok(!results[7][1].retryable && results[7][1].message === "bad event");
  assert.equal(results[8][1][0].get("country"), "NL");
});

test("a bug propagates and config errors reject", () => {
  const stage = init(Everything, {});
  assert.throws(() => run(stage, events("boom")), TypeError);
  assert.throws(() => init(Everything, '{"fail": true}'), /config.fail is set/);
  assert.throws(() => init(Everything, "[1]"), /invalid config/);
});
