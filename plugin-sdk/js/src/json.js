// Reading and writing top-level members of an event's `data` as JSON text.
//
// A stage usually reads one or two keys of `data` and sets a few. Parsing the
// whole object for that is most of a stage's cost in the guest, where every
// instruction is metered; so a read finds the key with `indexOf` and parses
// only its value, and adding a key the object lacks splices the text. What
// these fast paths cannot answer for sure falls back to parsing the object.

const WS = " \t\n\r";

/**
 * Where the value of top-level member `key` starts in the JSON object `text`:
 * an index, -1 when the object surely has no such member, or null when the
 * text must be parsed to tell (a backslash, or a nested object or array,
 * before the member).
 */
export function findTopLevel(text, key) {
  const needle = JSON.stringify(key);
  if (needle !== `"${key}"`) return null;
  let at = text.indexOf(needle);
  const first = text.indexOf("{");
  while (at !== -1) {
    let j = at + needle.length;
    while (j < text.length && WS.includes(text[j])) j++;
    if (text[j] === ":") {
      const before = text.slice(0, at);
      if (before.includes("\\") || before.indexOf("{", first + 1) !== -1 || before.includes("[")) return null;
      j++;
      while (j < text.length && WS.includes(text[j])) j++;
      return j;
    }
    at = text.indexOf(needle, at + 1);
  }
  return text.includes("\\") ? null : -1;
}

/** The end of the JSON value starting at `at` (a string, number, literal, or a balanced object/array). */
function valueEnd(text, at) {
  const c = text[at];
  if (c === '"') {
    let i = at + 1;
    for (;;) {
      const q = text.indexOf('"', i);
      if (q === -1) return -1;
      let k = q - 1;
      let slashes = 0;
      while (text[k] === "\\") { slashes++; k--; }
      if (slashes % 2 === 0) return q + 1;
      i = q + 1;
    }
  }
  if (c === "{" || c === "[") {
    let depth = 0;
    for (let i = at; i < text.length; i++) {
      const ch = text[i];
      if (ch === '"') { i = valueEnd(text, i) - 1; if (i < 0) return -1; continue; }
      if (ch === "{" || ch === "[") depth++;
      else if (ch === "}" || ch === "]") { depth--; if (depth === 0) return i + 1; }
    }
    return -1;
  }
  let i = at;
  while (i < text.length && !",}] \t\n\r".includes(text[i])) i++;
  return i;
}

/** The value of top-level member `key`, `missing` if none, or `undefined` when the text must be parsed. */
export function getTopLevel(text, key, missing) {
  const at = findTopLevel(text, key);
  if (at === null) return undefined;
  if (at === -1) return missing;
  const end = valueEnd(text, at);
  if (end === -1) return undefined;
  try {
    return JSON.parse(text.slice(at, end));
  } catch {
    return undefined;
  }
}

/** `text` with `members` ([name, value] pairs it surely lacks) added before its closing brace; null if not an object. */
export function appendMembers(text, members) {
  let end = text.length;
  while (end > 0 && WS.includes(text[end - 1])) end--;
  if (text[end - 1] !== "}") return null;
  const body = text.slice(0, end - 1);
  const empty = body.trim() === "{";
  const parts = members.map(([name, value]) => `${JSON.stringify(name)}:${JSON.stringify(value)}`);
  return body + (empty ? "" : ",") + parts.join(",") + "}";
}
