"""The component's exports: the glue between `sluice:stage@0.2.0` and the
exported `Stage`. Imported only inside the component (it needs the bindings
componentize-py generates), by the entry module `build` writes."""

import traceback

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as _types

from . import exported, host as _sdk_host
from .batch import DROPPED, EMITTED, FAILED, KEPT, run as _run, unpack
from .stage import Context, init_stage

_sdk_host._guest_host = _host

_KEEP = _types.Outcome_Keep()
_DROP = _types.Outcome_Drop()
_EMITTED = _types.Outcome_Emitted()


class _Sink:
    begin = staticmethod(_host.begin)
    emit_data = staticmethod(_host.emit_data)

    @staticmethod
    def emit(event):
        _host.emit(_types.Event(event._id, event._kind, event._source, event._timestamp, event.data_json))


_stage = None

#: The host reports a trap right after an error log starting with this as a
#: `panic` with the rest of the message (wit/stage.wit, `host.log`).
UNCAUGHT_PREFIX = "uncaught exception: "


def _report_uncaught(error):
    """Logs an exception the stage did not handle, for the host to put in the
    event's failure, before the call traps."""
    what = "".join(traceback.format_exception_only(type(error), error)).strip()
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        what += " (at %s:%s in %s)" % (last.filename.rsplit("/", 1)[-1], last.lineno, last.name)
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    _host.log(_host.Level.ERROR, UNCAUGHT_PREFIX + what, [("traceback", stack)])


class WitWorld:
    """What componentize-py exports (`init`, `process-packed`)."""

    def init(self, config):
        global _stage
        cls = exported()
        if cls is None:
            raise Err("the component exports no stage: call sluice_sdk.export(YourStage) in its module")
        stage, error = init_stage(cls, config)
        if error is not None:
            raise Err(error)
        _stage = stage

    def process_packed(self, ctx, text, lengths, timestamps):
        events = unpack(text, lengths, timestamps)
        if _stage is None:
            failed = _types.Outcome_Failed(_types.StageError(False, "stage used before init"))
            return [failed for _ in events]
        context = Context(ctx.pipeline, ctx.stage, ctx.attempt)
        try:
            results = _run(_stage, context, events, _Sink)
        except BaseException as error:
            _report_uncaught(error)
            raise
        outcomes = []
        for outcome, error in results:
            if outcome == KEPT:
                outcomes.append(_KEEP)
            elif outcome == DROPPED:
                outcomes.append(_DROP)
            elif outcome == EMITTED:
                outcomes.append(_EMITTED)
            else:
                outcomes.append(_types.Outcome_Failed(_types.StageError(error.retryable, error.message)))
        return outcomes
