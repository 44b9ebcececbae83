"""Reading and writing top-level members of an event's `data` as JSON text.

A stage usually reads one or two keys of `data` and sets a few. Parsing the
whole object for that costs most of a stage's time in the WebAssembly guest,
where every instruction of the interpreter is metered. So a read looks for
the key in the text with `str.find` (C code) and decodes only that value, and
setting a key the object does not have splices it into the text. Anything
these fast paths cannot answer for sure falls back to parsing the object.
"""

import json

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


def dumps(value):
    """Compact JSON text, UTF-8 kept as is (as the Rust SDK writes it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def find_top_level(text, key):
    """Where the value of top-level member `key` starts in the JSON object
    `text`: an index, -1 when the object surely has no such member, or None
    when the text must be parsed to tell.

    The fast answer needs the text before the member to hold no backslash, no
    nested object or array: then every quote seen is a string delimiter and
    the member is at the top level.
    """
    needle = '"' + key + '"'
    if dumps(key) != needle:
        return None
    at = text.find(needle)
    while at != -1:
        j = at + len(needle)
        n = len(text)
        while j < n and text[j] in _WS:
            j += 1
        if j < n and text[j] == ":":
            if text.find("\\", 0, at) != -1 or text.find("{", text.find("{") + 1, at) != -1 or text.find("[", 0, at) != -1:
                return None
            if text.count('"', 0, at) % 2:
                return None  # inside a string (cannot be, without backslashes; be safe)
            j += 1
            while j < n and text[j] in _WS:
                j += 1
            return j
        at = text.find(needle, at + 1)
    return -1 if text.find("\\") == -1 else None


def get_top_level(text, key, missing):
    """The value of top-level member `key`, `missing` if there is none, or
    `NotImplemented` when the fast path cannot tell (parse instead)."""
    at = find_top_level(text, key)
    if at is None:
        return NotImplemented
    if at == -1:
        return missing
    try:
        return _DECODER.raw_decode(text, at)[0]
    except ValueError:
        return NotImplemented


def append_members(text, members):
    """`text` with `members` (name, value pairs the object surely lacks)
    added before its closing brace; None when the text is not an object."""
    end = text.rstrip(_WS)
    if not end.endswith("}"):
        return None
    body = end[:-1]
    empty = body.strip(_WS) == "{"
    parts = [dumps(name) + ":" + dumps(value) for name, value in members]
    return body + ("" if empty else ",") + ",".join(parts) + "}"
