#!/usr/bin/env node
// Builds a JavaScript stage into a component:
//   node plugin-sdk/js/src/build.js STAGE.js -o STAGE.wasm
//
// STAGE.js default-exports the stage class and may import "sluice-sdk". The
// build bundles it with this SDK (rolldown) behind an entry module that
// imports `sluice:stage/host@0.2.0` and exports `init` and `processPacked`,
// then runs componentize-js with every optional WASI feature disabled
// (stdio, random, clocks, http, fetch-event): its default build imports
// `wasi:http`, which the host refuses. Nothing is downloaded: the tools come
// from the npm packages installed by `scripts/sdk-tools.sh` (pinned by
// plugin-sdk/js/package-lock.json), in $SLUICE_JS_TOOLS or the repository's
// target/sdk-tools/js.

import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SDK_SRC = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(SDK_SRC, "../../..");
const HOST_IMPORT = "sluice:stage/host@0.2.0";
/** Every optional WASI feature of componentize-js: none is granted by the host. */
export const DISABLED_FEATURES = ["stdio", "random", "clocks", "http", "fetch-event"];

function toolsDir() {
  const dir = process.env.SLUICE_JS_TOOLS || join(REPO, "target/sdk-tools/js");
  if (!existsSync(join(dir, "node_modules/@bytecodealliance/componentize-js"))) {
    throw new Error(`componentize-js is not installed in ${dir}: run scripts/sdk-tools.sh (or set SLUICE_JS_TOOLS)`);
  }
  return dir;
}

async function tool(dir, path) {
  return import(pathToFileURL(join(dir, "node_modules", path)).href);
}

/** Builds `stageFile` into the component `output`. */
export async function build(stageFile, output, { wit = process.env.SLUICE_WIT || join(REPO, "wit") } = {}) {
  const source = resolve(stageFile);
  if (!existsSync(source)) throw new Error(`${stageFile} does not exist`);
  if (!existsSync(join(wit, "stage.wit"))) throw new Error(`no stage.wit in ${wit}: set SLUICE_WIT to the directory of sluice's wit/stage.wit`);
  const dir = toolsDir();
  const { rolldown } = await tool(dir, "rolldown/dist/index.mjs");
  const { componentize } = await tool(dir, "@bytecodealliance/componentize-js/src/componentize.js");
  const work = await mkdtemp(join(tmpdir(), "sluice-js-build-"));
  try {
    const entry = join(work, "entry.js");
    await writeFile(
      entry,
      `import * as host from "${HOST_IMPORT}";\n` +
        `import Stage from ${JSON.stringify(source)};\n` +
        `import { exportsFor } from ${JSON.stringify(join(SDK_SRC, "guest.js"))};\n` +
        `const stage = exportsFor(Stage, host);\n` +
        `export const init = stage.init;\nexport const processPacked = stage.processPacked;\n`,
    );
    const bundle = await rolldown({
      input: entry,
      external: [HOST_IMPORT],
      resolve: { alias: { "sluice-sdk": join(SDK_SRC, "index.js") } },
      logLevel: "warn",
    });
    const bundled = join(work, `${basename(source, ".js")}.bundle.js`);
    await bundle.write({ file: bundled, format: "esm" });
    await bundle.close();
    const { component } = await componentize({
      sourcePath: bundled,
      witPath: wit,
      worldName: "stage",
      disableFeatures: DISABLED_FEATURES,
    });
    await writeFile(output, component);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function main(argv) {
  const at = argv.indexOf("-o");
  const stageFile = argv.find((a, i) => !a.startsWith("-") && argv[i - 1] !== "-o");
  if (!stageFile || at === -1 || !argv[at + 1]) {
    console.error("usage: node plugin-sdk/js/src/build.js STAGE.js -o STAGE.wasm");
    process.exit(64);
  }
  try {
    await build(stageFile, argv[at + 1]);
  } catch (e) {
    console.error(`build failed: ${e.message}`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}
