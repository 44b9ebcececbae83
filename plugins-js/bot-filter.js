// bot-filter in JavaScript: drops events whose `data.ua` contains a configured
// pattern, case-insensitively. Config: {"patterns": [...]} (default bot,
// spider, crawler). Events without a string `data.ua` pass. The same outputs
// as the Rust plugins/bot-filter.

import { DROP } from "sluice-sdk";

export default class BotFilter {
  constructor(config) {
    const unknown = Object.keys(config).filter((k) => k !== "patterns");
    if (unknown.length) throw new Error(`invalid config: unknown field \`${unknown[0]}\`, expected \`patterns\``);
    const patterns = config.patterns ?? ["bot", "spider", "crawler"];
    if (!Array.isArray(patterns) || !patterns.every((p) => typeof p === "string")) throw new Error("invalid config: patterns must be a list of strings");
    if (patterns.includes("")) throw new Error("patterns must not contain an empty string (it would match every user agent)");
    this.patterns = patterns.map((p) => p.toLowerCase());
  }

  process(event) {
    const ua = event.get("ua");
    if (typeof ua === "string") {
      const lower = ua.toLowerCase();
      for (const pattern of this.patterns) if (lower.includes(pattern)) return DROP;
    }
    return undefined;
  }
}
