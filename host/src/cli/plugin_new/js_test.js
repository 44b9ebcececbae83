// Unit tests of the stage, run natively: node --test
import assert from "node:assert/strict";
import { test } from "node:test";

import { Event } from "sluice-sdk";
import { init, run } from "sluice-sdk/native";

import {{class}} from "./stage.js";

test("tags, drops and rejects", () => {
  const stage = init({{class}}, { tag: "t" });
  const events = [{ a: 1 }, { drop: true }, { reject: true }].map((d, i) => new Event("hit", d, { id: String(i) }));
  const [tagged, dropped, rejected] = run(stage, events);
  assert.equal(tagged[0], "emitted");
  assert.equal(tagged[1][0].get("tagged_by"), "t");
  assert.equal(dropped[0], "dropped");
  assert.equal(rejected[0], "failed");
  assert.equal(rejected[1].retryable, false);
});
