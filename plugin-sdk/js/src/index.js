// The Sluice stage SDK for JavaScript.
//
// A stage is a class: `constructor(config)` and `process(event, ctx)`,
// exported as the module's default export. `node plugin-sdk/js/src/build.js
// stage.js -o stage.wasm` builds the component (componentize-js, offline).
// The packed batches of `sluice:stage@0.2.0` (wit/stage.wit), `begin` and
// `emit-data` are the SDK's business.

export { Event } from "./event.js";
export { PASS, DROP, StageError, Retryable, Rejected, Context } from "./stage.js";
export { lookup, log } from "./host.js";
