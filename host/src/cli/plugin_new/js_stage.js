// {{name}}: a Sluice stage in JavaScript.
//
// Drops events whose `data.drop` is true, and tags the others with
// `data.tagged_by` (the config's `tag`, default "{{name}}"). Replace it with
// your own logic: see the SDK's README ({{sdk}}/plugin-sdk/js/README.md).

import { DROP, Rejected } from "sluice-sdk";

export default class {{class}} {
  constructor(config) {
    this.tag = config.tag ?? "{{name}}";
    if (typeof this.tag !== "string") throw new Error("config.tag must be a string");
  }

  process(event) {
    if (event.get("drop") === true) return DROP;
    if (event.get("reject") === true) throw new Rejected("data.reject is set");
    event.set("tagged_by", this.tag);
    return undefined;
  }
}
