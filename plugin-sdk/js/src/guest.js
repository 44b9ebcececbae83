// The component's exports: the glue between `sluice:stage@0.2.0` and the
// stage class. The build's entry module calls `exportsFor` with the class and
// the imported host functions.

import { EMITTED, FAILED, KEPT, run, unpack } from "./batch.js";
import { useHost } from "./host.js";
import { Context, initStage } from "./stage.js";

/** The host reports a trap right after an error log starting with this as a `panic` with the rest (wit/stage.wit, `host.log`). */
export const UNCAUGHT_PREFIX = "uncaught exception: ";

const KEEP = { tag: "keep" };
const DROP = { tag: "drop" };
const EMIT = { tag: "emitted" };

/** `init` and `processPacked` for `StageClass`, calling `host` (the `sluice:stage/host@0.2.0` import). */
export function exportsFor(StageClass, host) {
  useHost(host);
  let stage = null;
  const sink = {
    begin: host.begin,
    emitData: host.emitData,
    emit(event) {
      host.emit({ id: event.id, kind: event.kind, source: event.source, timestamp: BigInt(event.timestamp), data: event.dataJson });
    },
  };
  return {
    init(config) {
      const [made, error] = initStage(StageClass, config);
      if (error !== null) throw error;
      stage = made;
    },
    processPacked(ctx, text, lengths, timestamps) {
      const events = unpack(text, lengths, timestamps);
      if (stage === null) return events.map(() => ({ tag: "failed", val: { retryable: false, message: "stage used before init" } }));
      const context = new Context(ctx.pipeline, ctx.stage, ctx.attempt);
      let results;
      try {
        results = run(stage, context, events, sink);
      } catch (e) {
        // Logged for the host to put in the event's failure, then the call traps.
        const what = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${String(e)}`;
        host.log("error", UNCAUGHT_PREFIX + what, [["stack", String(e?.stack ?? "")]]);
        throw e;
      }
      return results.map(([outcome, error]) => {
        if (outcome === KEPT) return KEEP;
        if (outcome === EMITTED) return EMIT;
        if (outcome === FAILED) return { tag: "failed", val: { retryable: error.retryable, message: error.message } };
        return DROP;
      });
    },
  };
}
