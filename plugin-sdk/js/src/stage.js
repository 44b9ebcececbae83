// What an author writes against: the verdicts and the errors.

/** Pass the event on (changed or not). Returning undefined means the same. */
export const PASS = Symbol.for("sluice.pass");
/** Filter the event out. */
export const DROP = Symbol.for("sluice.drop");

/** The stage's verdict that an event failed: throw it (or return it) from `process`. Prefer Retryable and Rejected. */
export class StageError extends Error {
  constructor(message, { retryable = false } = {}) {
    super(message);
    this.name = "StageError";
    this.retryable = retryable;
  }
}

/** A transient failure: the host retries the event with backoff. */
export class Retryable extends StageError {
  constructor(message) {
    super(message, { retryable: true });
    this.name = "Retryable";
  }
}

/** A permanent failure: the event goes to the dead letter queue. */
export class Rejected extends StageError {
  constructor(message) {
    super(message, { retryable: false });
    this.name = "Rejected";
  }
}

/** What the host tells the stage about the current call. */
export class Context {
  constructor(pipeline = "", stage = "", attempt = 1) {
    this.pipeline = pipeline;
    this.stage = stage;
    this.attempt = attempt;
  }
}

/** The stage config as an object (`null` or empty text count as `{}`). */
export function parseConfig(text) {
  const trimmed = (text ?? "").trim();
  if (trimmed === "" || trimmed === "null") return {};
  let config;
  try {
    config = JSON.parse(trimmed);
  } catch (e) {
    throw new Error(`invalid config: ${e.message}`);
  }
  if (config === null || typeof config !== "object" || Array.isArray(config)) throw new Error("invalid config: expected a JSON object");
  return config;
}

/** Builds the stage (a class taking the config) from its config text: [stage, null] or [null, message]. */
export function initStage(StageClass, configText) {
  try {
    return [new StageClass(parseConfig(configText)), null];
  } catch (e) {
    return [null, (e && e.message) || String(e)];
  }
}
