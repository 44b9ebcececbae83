// hostile (for the sandbox tests): misbehaves as `data.do` says. "loop" spins
// forever, "alloc" allocates until it runs out, "throw" throws an error the
// stage does not handle; anything else passes.

export default class Hostile {
  constructor() {}

  process(event) {
    const what = event.get("do");
    if (what === "loop") {
      let n = 0;
      for (;;) n++;
    }
    if (what === "alloc") {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(16 << 20).fill(1));
    }
    if (what === "throw") throw new RangeError("hostile-js: thrown on purpose");
    return undefined;
  }
}
