"""Schemathesis hooks of tests/tests/openapi.rs (loaded through
SCHEMATHESIS_HOOKS): the plugin routes' bodies are a component's bytes
(`application/wasm`), which schemathesis then sends as it sends
`application/octet-stream`, and reads back as text once they are checked
to be WebAssembly (so the document's `string` schema applies)."""

import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")


@schemathesis.deserializer("application/wasm")
def read_component(ctx, response):
    body = response.content
    if not body.startswith(b"\0asm"):
        raise ValueError(f"an application/wasm answer that is not WebAssembly: {body[:16]!r}")
    return body.decode("latin-1")
