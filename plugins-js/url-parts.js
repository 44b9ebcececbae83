// url-parts in JavaScript: from `data.url` adds `data.host`, `data.path` and
// `data.query` (an object of the query parameters, percent-decoded). An
// unparsable URL is a non-retryable error that names the value. Events
// without a string `data.url` pass unchanged. No config. The same outputs as
// the Rust plugins/url-parts (the same rules, ported).

import { Rejected } from "sluice-sdk";

// Rust's char::is_whitespace (Unicode White_Space).
const WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
const FORBIDDEN = new Set([...'<>"{}|\\^`', ...WHITESPACE]);
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const HEX = /^[0-9a-fA-F]$/;

function firstOf(text, chars, start) {
  let best = text.length;
  for (const c of chars) {
    const at = text.indexOf(c, start);
    if (at !== -1 && at < best) best = at;
  }
  return best;
}

/** [host, path, query or null] of an absolute URL, or null: the rules of the Rust url-parts' split_url. */
export function splitUrl(url) {
  const schemeEnd = url.indexOf("://");
  if (schemeEnd <= 0 || !SCHEME.test(url.slice(0, schemeEnd))) return null;
  const start = schemeEnd + 3;
  const authorityEnd = firstOf(url, "/?#", start);
  const at = url.lastIndexOf("@", authorityEnd - 1);
  const hostStart = at >= start ? at + 1 : start;
  const hostPort = url.slice(hostStart, authorityEnd);
  let host;
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]");
    if (close === -1) return null;
    host = hostPort.slice(0, close + 1);
  } else {
    const colon = hostPort.indexOf(":");
    host = colon === -1 ? hostPort : hostPort.slice(0, colon);
  }
  if (host === "" || [...host].some((c) => FORBIDDEN.has(c))) return null;
  const rest = hostPort.slice(host.length);
  if (rest.startsWith(":")) {
    const port = rest.slice(1);
    if (port !== "" && !isU16(port)) return null;
  }
  const hash = url.indexOf("#", authorityEnd);
  const tail = hash === -1 ? url.slice(authorityEnd) : url.slice(authorityEnd, hash);
  const q = tail.indexOf("?");
  const [path, query] = q === -1 ? [tail, null] : [tail.slice(0, q), tail.slice(q + 1)];
  return [host, path || "/", query];
}

/** What Rust's `text.parse::<u16>().is_ok()` answers. */
function isU16(text) {
  const digits = text.startsWith("+") ? text.slice(1) : text;
  return /^[0-9]+$/.test(digits) && Number(digits) <= 65535;
}

/** Decodes %XX escapes and `+` (as a space); a `%` without two hex digits stays; bytes that are not UTF-8 become U+FFFD. */
export function percentDecode(text) {
  const spaced = text.replaceAll("+", " ");
  if (!text.includes("%")) return spaced;
  // Well-formed escapes of valid UTF-8 (the usual case): the engine's own
  // decoder. It throws on anything else, which the byte loop below handles.
  try {
    return decodeURIComponent(spaced);
  } catch {
    // fall through
  }
  const raw = new TextEncoder().encode(text);
  const out = [];
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (b === 0x2b) out.push(0x20);
    else if (b === 0x25 && i + 2 < raw.length && HEX.test(String.fromCharCode(raw[i + 1])) && HEX.test(String.fromCharCode(raw[i + 2]))) {
      out.push(parseInt(String.fromCharCode(raw[i + 1], raw[i + 2]), 16));
      i += 2;
    } else out.push(b);
  }
  return new TextDecoder().decode(new Uint8Array(out));
}

/** The query parameters as an object: keys sorted (by code point, as Rust sorts), the last value of a repeated key. */
export function queryObject(query) {
  const pairs = new Map();
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const [key, value] = eq === -1 ? [pair, ""] : [pair.slice(0, eq), pair.slice(eq + 1)];
    pairs.set(percentDecode(key), percentDecode(value));
  }
  // UTF-16 order is code point order unless a surrogate meets U+E000..U+FFFF.
  const plain = (k) => !/[\uD800-\uFFFF]/.test(k);
  const cmp = (a, b) => {
    if (plain(a) && plain(b)) return a < b ? -1 : a > b ? 1 : 0;
    const x = [...a];
    const y = [...b];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const d = x[i].codePointAt(0) - y[i].codePointAt(0);
      if (d) return d;
    }
    return x.length - y.length;
  };
  return Object.fromEntries([...pairs].sort((a, b) => cmp(a[0], b[0])));
}

/** A string as Rust's `{:?}` writes it (for the same error message). */
function rustDebug(text) {
  let out = '"';
  for (const c of text) {
    const code = c.codePointAt(0);
    if (c === '"' || c === "\\") out += "\\" + c;
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\u{${code.toString(16)}}`;
    else out += c;
  }
  return out + '"';
}

export default class UrlParts {
  constructor(config) {
    const keys = Object.keys(config);
    if (keys.length) throw new Error(`invalid config: unknown field \`${keys.sort()[0]}\`, there are no fields`);
  }

  process(event) {
    const url = event.get("url");
    if (typeof url !== "string") return undefined;
    const parts = splitUrl(url);
    if (parts === null) throw new Rejected(`data.url is not a valid absolute URL: ${rustDebug(url)}`);
    let [host, path, query] = parts;
    if (/[A-Z]/.test(host)) host = host.replace(/[A-Z]/g, (c) => c.toLowerCase());
    event.setFields([["host", host], ["path", path], ["query", queryObject(query ?? "")]]);
    return undefined;
  }
}
