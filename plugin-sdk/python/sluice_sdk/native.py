"""Running a stage natively, with the batch semantics of the host: for unit
tests (pytest) and for comparing with other builds of the same stage."""

from . import host as _host
from .batch import DROPPED, EMITTED, FAILED, KEPT, run as _run
from .event import Event
from .stage import Context, init_stage


def init(stage_class, config="{}"):
    """Builds the stage as the host's `init` call does (config as JSON text
    or a dict); raises ValueError with the stage's message when it refuses."""
    import json

    text = config if isinstance(config, str) else json.dumps(config)
    stage, error = init_stage(stage_class, text)
    if error is not None:
        raise ValueError(error)
    return stage


class _Collect:
    """Collects each input's outputs, as the host does."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.outputs = []

    def begin(self, index):
        self.outputs.append([])

    def emit_data(self, data):
        # The input with its data replaced (only sent while its head is unchanged).
        self.outputs[-1].append(self.inputs[len(self.outputs) - 1].copy(data=data))

    def emit(self, event):
        # Outputs are copied as they cross, as into the host.
        self.outputs[-1].append(event.copy())


def run(stage, events, ctx=None):
    """Runs `events` through `stage`; answers one (outcome, value) per input:
    ("kept", None), ("dropped", None), ("emitted", [events]) or ("failed",
    StageError). Inputs are copied first, so they are not changed."""
    inputs = [Event._from_host(e.id, e.kind, e.source, e.timestamp, e.data_json) for e in events]
    sink = _Collect(inputs)
    results = _run(stage, ctx or Context(), inputs, sink)
    answer = []
    for (outcome, value), outputs in zip(results, sink.outputs):
        if outcome == EMITTED:
            answer.append((EMITTED, outputs) if outputs else (DROPPED, None))
        else:
            answer.append((outcome, value))
    return answer


def set_table(name, entries):
    """Sets a lookup table `lookup` reads in native runs."""
    _host._tables[name] = dict(entries)


__all__ = ["init", "run", "set_table", "KEPT", "DROPPED", "EMITTED", "FAILED"]
