// The packed batch of `process-packed` (wit/stage.wit), and the per-event loop
// shared by the component glue and native runs.

import { Event } from "./event.js";
import { DROP, PASS, StageError } from "./stage.js";

const ASCII = /^[\x00-\x7f]*$/;

/**
 * The events of a packed batch: `text` holds every event's id, kind, source
 * and data one after the other; `lengths` their lengths in bytes of UTF-8,
 * four per event. JavaScript strings are UTF-16, so an ASCII batch (the usual
 * one) is sliced directly and any other is cut as UTF-8 bytes.
 */
export function unpack(text, lengths, timestamps) {
  const count = timestamps.length;
  if (lengths.length !== 4 * count) throw new Error(`a packed batch of ${count} events needs ${4 * count} lengths, got ${lengths.length}`);
  const events = new Array(count);
  let at = 0;
  if (ASCII.test(text)) {
    for (let i = 0; i < count; i++) {
      const p = [];
      for (let k = 0; k < 4; k++) {
        const end = at + lengths[4 * i + k];
        if (end > text.length) throw new Error("the packed lengths run past the batch text");
        p.push(text.slice(at, end));
        at = end;
      }
      events[i] = Event.fromHost(p[0], p[1], p[2], timestamps[i], p[3]);
    }
    return events;
  }
  const raw = new TextEncoder().encode(text);
  const decoder = new TextDecoder();
  for (let i = 0; i < count; i++) {
    const p = [];
    for (let k = 0; k < 4; k++) {
      const end = at + lengths[4 * i + k];
      if (end > raw.length) throw new Error("the packed lengths run past the batch text");
      p.push(decoder.decode(raw.subarray(at, end)));
      at = end;
    }
    events[i] = Event.fromHost(p[0], p[1], p[2], timestamps[i], p[3]);
  }
  return events;
}

export const KEPT = "kept";
export const DROPPED = "dropped";
export const EMITTED = "emitted";
export const FAILED = "failed";

/**
 * Runs `stage.process` over `events`; answers one [outcome, StageError|null]
 * per input. Outputs go to `sink`: `begin(i)` before each event,
 * `emitData(text)` for an input changed only in its data, `emit(event)` for
 * any other output. An exception other than a StageError is a bug in the
 * stage: it propagates (in the component, the host reports it as a `trap`
 * with the exception's message).
 */
export function run(stage, ctx, events, sink) {
  const results = [];
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    sink.begin(index);
    let answer;
    try {
      answer = stage.process(event, ctx);
    } catch (e) {
      if (e instanceof StageError) {
        results.push([FAILED, e]);
        continue;
      }
      throw e;
    }
    if (answer === undefined || answer === null || answer === PASS) {
      if (!event._changed) results.push([KEPT, null]);
      else if (!event._headChanged) {
        sink.emitData(event.dataJson);
        results.push([EMITTED, null]);
      } else {
        sink.emit(event);
        results.push([EMITTED, null]);
      }
    } else if (answer === DROP) {
      results.push([DROPPED, null]);
    } else if (answer instanceof StageError) {
      results.push([FAILED, answer]);
    } else if (answer instanceof Event) {
      sink.emit(answer);
      results.push([EMITTED, null]);
    } else if (typeof answer[Symbol.iterator] === "function") {
      for (const output of answer) {
        if (!(output instanceof Event)) throw new TypeError(`process() returned ${typeof output} among its events`);
        sink.emit(output);
      }
      results.push([EMITTED, null]);
    } else {
      throw new TypeError("process() must return undefined, PASS, DROP, an Event, events or a StageError");
    }
  }
  return results;
}
