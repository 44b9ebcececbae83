"""What the host grants a stage: `lookup` and `log`.

In the component these call the host's `sluice:stage/host` interface; run
natively (unit tests) they read tables set with `sluice_sdk.native.set_table`
and print warnings and errors to stderr.
"""

import sys

TRACE, DEBUG, INFO, WARN, ERROR = "trace", "debug", "info", "warn", "error"
_LEVELS = (TRACE, DEBUG, INFO, WARN, ERROR)

# Set by the component glue (`_guest`) to the generated host bindings.
_guest_host = None
# Native runs: table name -> {key: value}.
_tables = {}


def lookup(table, key):
    """The value of `key` in the host-owned lookup table `table` (filled
    with PUT /v1/tables/{name}), or None."""
    if _guest_host is not None:
        return _guest_host.lookup(table, key)
    return _tables.get(table, {}).get(key)


def log(level, message, **fields):
    """Structured logging into the host's log: `log("warn", "odd value",
    field="x")`. Levels: trace, debug, info, warn, error."""
    if level not in _LEVELS:
        raise ValueError("log level must be one of %s, not %r" % (", ".join(_LEVELS), level))
    pairs = [(str(k), str(v)) for k, v in fields.items()]
    if _guest_host is not None:
        _guest_host.log(_guest_host.Level[level.upper()], str(message), pairs)
    elif _LEVELS.index(level) >= _LEVELS.index(WARN):
        print("[%s] %s %s" % (level, message, pairs), file=sys.stderr)
