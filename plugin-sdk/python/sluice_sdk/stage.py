"""What an author writes against: `Stage`, the verdicts and the errors."""

import json


class _Verdict:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


#: Pass the event on (changed or not; an unchanged one is not copied back).
#: Returning None means the same.
PASS = _Verdict("PASS")
#: Filter the event out.
DROP = _Verdict("DROP")


class StageError(Exception):
    """The stage's verdict that an event failed: raise it (or return it) from
    `process`. Prefer `Retryable` and `Rejected`."""

    retryable = False

    def __init__(self, message, retryable=None):
        super().__init__(message)
        self.message = str(message)
        if retryable is not None:
            self.retryable = bool(retryable)


class Retryable(StageError):
    """A transient failure: the host retries the event with backoff."""

    retryable = True


class Rejected(StageError):
    """A permanent failure: the event goes to the dead letter queue."""

    retryable = False


class Context:
    """What the host tells the stage about the current call."""

    __slots__ = ("pipeline", "stage", "attempt")

    def __init__(self, pipeline="", stage="", attempt=1):
        self.pipeline, self.stage, self.attempt = pipeline, stage, attempt

    def __repr__(self):
        return "Context(pipeline=%r, stage=%r, attempt=%r)" % (self.pipeline, self.stage, self.attempt)


class Stage:
    """A pipeline stage. Subclass it, set it up in `__init__(self, config)`
    (`config`: the spec's `config` object as a dict; raise ValueError to
    reject it, with a message for whoever submitted the spec) and implement
    `process(self, event, ctx)`, answering:

    - None or PASS: pass the event on (with your changes, if any);
    - DROP: filter it out;
    - an Event, or a list/iterable of Events: replace it with those
      (fan-out; an empty list is the same as DROP);
    - raise Retryable(msg) / Rejected(msg): retry it later / send it to the
      dead letter queue.

    Then call `sluice_sdk.export(YourStage)` at module level.
    """

    def __init__(self, config):
        self.config = config

    def process(self, event, ctx):
        raise NotImplementedError("a Stage must implement process(self, event, ctx)")


def parse_config(text):
    """The stage config as a dict (`null` or empty text count as `{}`)."""
    text = (text or "").strip()
    if not text or text == "null":
        return {}
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError("invalid config: %s" % e) from None
    if not isinstance(config, dict):
        raise ValueError("invalid config: expected a JSON object")
    return config


def init_stage(cls, config_text):
    """Builds the stage from its config text; answers (stage, None) or
    (None, message)."""
    try:
        return cls(parse_config(config_text)), None
    except Exception as e:  # any error in __init__ rejects the spec, with its message
        message = str(e) or type(e).__name__
        return None, message
