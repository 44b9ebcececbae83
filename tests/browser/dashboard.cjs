// The dashboard's browser test, run by tests/tests/dashboard_browser.rs
// against a server it started (SLUICE_URL; SLUICE_TOKEN when the server has
// an admin token) with pipeline `shop`: a `validator` stage requiring
// data.url and data.user_id, a sliding window `online_now` and a tumbling
// one. playwright-core (NODE_PATH=target/browser-tools/node_modules) drives
// Debian's chromium; it never downloads a browser. Exits non-zero with the
// failed check's message; prints "dashboard: all checks passed" at the end.
"use strict";
const { chromium } = require("playwright-core");

const base = process.env.SLUICE_URL.replace(/\/$/, "");
const token = process.env.SLUICE_TOKEN || "";
const shot = process.env.SCREENSHOT;
const WAIT = { timeout: 20000 };

async function call(method, path, body, contentType = "application/json") {
  const headers = { "Content-Type": contentType };
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}
const ingest = (events) => call("POST", "/v1/pipelines/shop/events", events.map((e) => JSON.stringify(e)).join("\n"), "application/x-ndjson");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(ok, what) { if (!ok) throw new Error("check failed: " + what); console.log("ok: " + what); }

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 960 } });
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(base + "/");

    if (token) {
      // Without the token the page says why it shows nothing; typed in once,
      // the token is kept for the tab (session storage) across a reload.
      await page.waitForFunction(() => /401/.test(document.getElementById("status").textContent), null, WAIT);
      check(true, "without a token the page reports 401");
      await page.fill("#token", token);
      await page.press("#token", "Tab");
      await page.waitForSelector('button[data-pipeline="shop"]', WAIT);
      await page.reload();
      errors.length = 0; // the 401s above are logged by the browser as resource errors
      check(await page.inputValue("#token") === token, "the token survives a reload (session storage)");
    }

    await page.click('button[data-pipeline="shop"]', WAIT);
    check(await page.textContent("#title") === "shop", "pipeline picked");
    const figure = (name) => page.evaluate((n) => Number(document.querySelector(`[data-figure="${n}"] b`)?.textContent), name);
    const waitFigure = (name, value) => page.waitForFunction(([n, v]) =>
      Number(document.querySelector(`[data-figure="${n}"] b`)?.textContent) === v, [name, value], WAIT);

    // Ingest over a few seconds so the per-second chart has something to draw:
    // 120 good events from 7 users, and 4 without a user (dead letters).
    const now = Date.now();
    for (let batch = 0; batch < 6; batch++) {
      const events = [];
      for (let i = 0; i < 20; i++) {
        const n = batch * 20 + i;
        events.push({ type: "view", id: `ok-${n}`, timestamp: now, data: { url: `/p/${n % 3}`, user_id: `u${n % 7}` } });
      }
      if (batch === 0) for (let i = 0; i < 4; i++) events.push({ type: "view", id: `bad-${i}`, timestamp: now, data: { url: "/p/0" } });
      const answer = await ingest(events);
      check(answer.accepted === events.length, `batch ${batch} accepted`);
      await sleep(600);
    }
    await waitFigure("accepted", 124);
    await waitFigure("emitted", 120);
    check(true, "counters show 124 accepted, 120 emitted");
    await page.waitForFunction(() => Number(document.getElementById("rates").dataset.max) > 0, null, WAIT);
    check(true, "the events-per-second chart moved");
    await page.waitForFunction(() => document.getElementById("now").dataset.value === "7", null, WAIT);
    check(await page.textContent("#now") === "7", "the live 'now' figure shows 7 users");
    await page.waitForFunction(() => Number(document.getElementById("windowchart").dataset.max) === 7, null, WAIT);
    check(true, "the window chart shows the sliding windows' values");

    // Dead letters: open one, fix the stage's config, replay it from its button.
    await page.waitForFunction(() => document.querySelectorAll("#dlq tr.entry").length === 4, null, WAIT);
    check(await figure("DLQ") === 4, "4 dead letters listed");
    await page.click("#dlq tr.entry td:nth-child(4)");
    await page.waitForSelector("#dlq tr.detail", WAIT);
    const detail = await page.textContent("#dlq tr.detail");
    check(/missing required fields: data\.user_id/.test(detail) && /"id": "bad-\d"/.test(detail), "an entry shows its error and event");
    check((await page.textContent("#dlq tr.entry")).includes("rejected"), "an entry shows its error kind");
    await call("PUT", "/v1/pipelines/shop", JSON.stringify({
      stages: [{ name: "check", plugin: "validator", config: { required: ["data.url"] } }],
      windows: [{ name: "online_now", kind: "sliding", size_ms: 300000, slide_ms: 1000, aggregates: [{ op: "count_distinct", field: "data.user_id" }] },
                { name: "views_per_10s", kind: "tumbling", size_ms: 10000, group_by: "data.url", aggregates: [{ op: "count" }] }],
    }));
    await page.click("#dlq tr.entry button.replay");
    await page.waitForFunction(() => document.querySelectorAll("#dlq tr.entry").length === 3, null, WAIT);
    await waitFigure("DLQ", 3);
    await waitFigure("emitted", 121);
    check(true, "Replay: the DLQ shrank to 3 and the event was emitted");
    await sleep(1500); // one more chart sample and window update before the picture
    await page.screenshot({ path: shot, fullPage: true });

    await page.click("#replayall");
    await page.waitForFunction(() => document.querySelectorAll("#dlq tr.entry").length === 0, null, WAIT);
    await waitFigure("emitted", 124);
    check(true, "Replay all: the DLQ is empty and every event emitted");

    // Purge asks first: dismissed, nothing goes; accepted, all go.
    await ingest([{ type: "view", id: "nourl-1", data: { user_id: "x" } }, { type: "view", id: "nourl-2", data: { user_id: "y" } }]);
    await page.waitForFunction(() => document.querySelectorAll("#dlq tr.entry").length === 2, null, WAIT);
    page.once("dialog", (d) => d.dismiss());
    await page.click("#purge");
    await sleep(2500);
    check(await page.locator("#dlq tr.entry").count() === 2, "purge dismissed: the 2 entries stay");
    page.once("dialog", (d) => d.accept());
    await page.click("#purge");
    await page.waitForFunction(() => document.querySelectorAll("#dlq tr.entry").length === 0, null, WAIT);
    check((await call("GET", "/v1/pipelines/shop/dlq")).entries.length === 0, "purge confirmed: the DLQ is empty on the server");

    const plugins = await page.textContent("#plugins");
    check(/validator\s*v1/.test(plugins) && plugins.includes("shop"), "plugins panel: validator v1 used by shop");
    check((await page.textContent("#sinks")).includes("no sinks"), "sinks panel answers");
    check(errors.length === 0, "no console errors: " + JSON.stringify(errors));
  } finally {
    await browser.close();
  }
  console.log("dashboard: all checks passed");
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
