"""The Sluice stage SDK for Python.

A stage is a class with `__init__(self, config)` and `process(self, event,
ctx)`; `export(YourStage)` at module level makes it the component's stage,
and `python -m sluice_sdk.build your_module.py -o stage.wasm` builds the
component (componentize-py, offline). The packed batch protocol of
`sluice:stage@0.2.0` (wit/stage.wit), `begin` and `emit-data` are the SDK's
business; see README.md next to this package.

    from sluice_sdk import Stage, DROP, export

    class DropStatus(Stage):
        def __init__(self, config):
            self.codes = set(config.get("codes", []))
            if not self.codes:
                raise ValueError("config.codes must list at least one status")

        def process(self, event, ctx):
            status = event.get("status")
            if status is None:
                raise Rejected("data.status is missing")
            return DROP if status in self.codes else None

    export(DropStatus)
"""

from .event import Event
from .host import lookup, log
from .stage import DROP, PASS, Context, Rejected, Retryable, Stage, StageError

__all__ = ["Event", "Stage", "Context", "PASS", "DROP", "StageError", "Retryable", "Rejected", "lookup", "log", "export", "exported"]

_exported = None


def export(stage_class):
    """Makes `stage_class` the stage the component runs (call once, at
    module level of the module you build). Answers the class, so it also
    works as a decorator."""
    global _exported
    if not (isinstance(stage_class, type) and issubclass(stage_class, Stage)):
        raise TypeError("export() takes a subclass of sluice_sdk.Stage, not %r" % (stage_class,))
    _exported = stage_class
    return stage_class


def exported():
    """The class given to `export`, or None."""
    return _exported
