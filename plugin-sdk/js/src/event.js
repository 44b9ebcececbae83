// The event a stage sees, with lazy access to `data`.

import { appendMembers, findTopLevel, getTopLevel } from "./json.js";

const MISSING = Symbol("missing");

/**
 * One event. `data` stays JSON text while the stage reads keys with `get` and
 * adds keys with `set`; it is parsed only for edits the text cannot take. The
 * SDK knows whether anything changed, so an unchanged event is not copied
 * back to the host. New events (fan-out): `new Event(kind, data, {id, source, timestamp})`.
 */
export class Event {
  constructor(kind, data = {}, { id = "", source = "", timestamp = 0 } = {}) {
    this._id = id;
    this._kind = kind;
    this._source = source;
    this._timestamp = timestamp;
    if (typeof data === "string") {
      this._text = data;
      this._obj = null;
    } else if (data !== null && typeof data === "object" && !Array.isArray(data)) {
      this._text = null;
      this._obj = data;
    } else {
      throw new TypeError("an event's data must be an object or JSON object text");
    }
    this._changed = true;
    this._headChanged = true;
  }

  /** An input as the host sent it (unchanged). */
  static fromHost(id, kind, source, timestamp, data) {
    const event = new Event(kind, data, { id, source, timestamp });
    event._changed = false;
    event._headChanged = false;
    return event;
  }

  get id() { return this._id; }
  set id(v) { this._id = v; this._changed = this._headChanged = true; }
  /** The event type (`type` in the HTTP API). */
  get kind() { return this._kind; }
  set kind(v) { this._kind = v; this._changed = this._headChanged = true; }
  get source() { return this._source; }
  set source(v) { this._source = v; this._changed = this._headChanged = true; }
  /** Event time, milliseconds since the Unix epoch (a BigInt crosses the boundary; a number is fine here). */
  get timestamp() { return this._timestamp; }
  set timestamp(v) { this._timestamp = v; this._changed = this._headChanged = true; }

  _parsed() {
    if (this._obj === null) {
      const obj = JSON.parse(this._text);
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new Error("the event's data is not a JSON object");
      this._obj = obj;
      this._text = null;
    }
    return this._obj;
  }

  /** The value at `path` in `data` ("ua", or "a.b" nested), or `fallback`. A top-level key is read without parsing the rest. */
  get(path, fallback = undefined) {
    if (this._obj === null && !path.includes(".")) {
      const value = getTopLevel(this._text, path, MISSING);
      if (value !== undefined) return value === MISSING ? fallback : value;
    }
    let value = this._obj !== null ? this._obj : JSON.parse(this._text);
    for (const part of path.split(".")) {
      if (value === null || typeof value !== "object" || Array.isArray(value) || !Object.hasOwn(value, part)) return fallback;
      value = value[part];
    }
    return value;
  }

  /** Whether `data` has `path`. */
  has(path) {
    return this.get(path, MISSING) !== MISSING;
  }

  /** Sets `path` in `data`; adding a top-level key the object lacks splices the text. */
  set(path, value) {
    this.setFields([[path, value]]);
  }

  /** Sets several keys (an object or [key, value] pairs): one splice when all are new top-level keys. */
  setFields(fields) {
    const items = Array.isArray(fields) ? fields : Object.entries(fields);
    this._changed = true;
    if (this._obj === null && items.every(([k]) => !k.includes(".") && findTopLevel(this._text, k) === -1)) {
      const text = appendMembers(this._text, items);
      if (text !== null) {
        this._text = text;
        return;
      }
    }
    const obj = this._parsed();
    for (const [path, value] of items) {
      const parts = path.split(".");
      let target = obj;
      for (const part of parts.slice(0, -1)) {
        if (target[part] === null || typeof target[part] !== "object" || Array.isArray(target[part])) target[part] = {};
        target = target[part];
      }
      target[parts[parts.length - 1]] = value;
    }
  }

  /** Removes `path` from `data`; answers the value it had, or undefined. */
  remove(path) {
    let obj = this._parsed();
    const parts = path.split(".");
    for (const part of parts.slice(0, -1)) {
      obj = obj[part];
      if (obj === null || typeof obj !== "object") return undefined;
    }
    const last = parts[parts.length - 1];
    if (!Object.hasOwn(obj, last)) return undefined;
    const value = obj[last];
    delete obj[last];
    this._changed = true;
    return value;
  }

  /** `data` parsed, to read or change in place (counts as a change: use `get` to only read). */
  get data() {
    this._changed = true;
    return this._parsed();
  }

  /** `data` as JSON text. */
  get dataJson() {
    return this._obj === null ? this._text : JSON.stringify(this._obj);
  }

  /** Whether the stage changed anything. */
  get changed() { return this._changed; }

  /** A new event: this one with `changes` ({kind, data, id, source, timestamp}) applied. */
  copy(changes = {}) {
    const f = { kind: this._kind, data: this.dataJson, id: this._id, source: this._source, timestamp: this._timestamp, ...changes };
    return new Event(f.kind, f.data, { id: f.id, source: f.source, timestamp: f.timestamp });
  }

  /** The event as the HTTP API shows it. */
  toJSON() {
    return { id: this._id, type: this._kind, source: this._source, timestamp: Number(this._timestamp), data: JSON.parse(this.dataJson) };
  }
}
