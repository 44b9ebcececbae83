// Running a stage natively with the host's batch semantics: for unit tests
// (node --test) and comparisons with other builds of the same stage.

import { DROPPED, EMITTED, run as runBatch } from "./batch.js";
import { Event } from "./event.js";
import { Context, initStage } from "./stage.js";

export { setTable } from "./host.js";

/** Builds the stage as the host's `init` does (config as JSON text or an object); throws with the stage's message when it refuses. */
export function init(StageClass, config = "{}") {
  const [stage, error] = initStage(StageClass, typeof config === "string" ? config : JSON.stringify(config));
  if (error !== null) throw new Error(error);
  return stage;
}

/** Runs `events` through `stage`: one [outcome, value] per input: ["kept"], ["dropped"], ["emitted", events] or ["failed", StageError]. */
export function run(stage, events, ctx = new Context()) {
  const inputs = events.map((e) => Event.fromHost(e.id, e.kind, e.source, e.timestamp, e.dataJson));
  const outputs = [];
  const sink = {
    begin() { outputs.push([]); },
    emitData(data) { outputs[outputs.length - 1].push(inputs[outputs.length - 1].copy({ data })); },
    emit(event) { outputs[outputs.length - 1].push(event.copy()); },
  };
  return runBatch(stage, ctx, inputs, sink).map(([outcome, value], i) => {
    if (outcome === EMITTED) return outputs[i].length ? [EMITTED, outputs[i]] : [DROPPED, null];
    return [outcome, value];
  });
}
