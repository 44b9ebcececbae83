// What the host grants a stage: `lookup` and `log`. In the component they call
// the host's `sluice:stage/host` interface (the build's entry module hands
// it over with `useHost`); natively (unit tests) they read tables set with
// `setTable` and print warnings and errors.

const LEVELS = ["trace", "debug", "info", "warn", "error"];
let guestHost = null;
const tables = new Map();

/** Called by the component glue with the imported host functions. */
export function useHost(host) {
  guestHost = host;
}

/** The value of `key` in the host-owned lookup table `table` (PUT /v1/tables/{name}), or undefined. */
export function lookup(table, key) {
  if (guestHost) return guestHost.lookup(table, key) ?? undefined;
  return tables.get(table)?.[key];
}

/** Structured logging into the host's log: `log("warn", "odd value", { field: "x" })`. */
export function log(level, message, fields = {}) {
  if (!LEVELS.includes(level)) throw new Error(`log level must be one of ${LEVELS.join(", ")}, not ${level}`);
  const pairs = Object.entries(fields).map(([k, v]) => [String(k), String(v)]);
  if (guestHost) guestHost.log(level, String(message), pairs);
  else if (LEVELS.indexOf(level) >= 3) console.error(`[${level}] ${message}`, pairs);
}

/** Sets a lookup table for native runs. */
export function setTable(name, entries) {
  tables.set(name, { ...entries });
}
