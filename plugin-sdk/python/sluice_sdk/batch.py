"""The packed batch of `process-packed` (wit/stage.wit), and the per-event
loop shared by the component glue and native runs."""

from .event import Event
from .stage import DROP, PASS, StageError


def unpack(text, lengths, timestamps):
    """The events of a packed batch: `text` holds every event's id, kind,
    source and data one after the other; `lengths` their lengths in bytes of
    UTF-8, four per event. Python strings index by code point, so an ASCII
    batch (the usual one) is sliced directly and any other is cut as bytes.
    """
    count = len(timestamps)
    if len(lengths) != 4 * count:
        raise ValueError("a packed batch of %d events needs %d lengths, got %d" % (count, 4 * count, len(lengths)))
    events = []
    at = 0
    if text.isascii():
        for i in range(count):
            a, b, c, d = lengths[4 * i: 4 * i + 4]
            p1, p2, p3, p4 = at + a, at + a + b, at + a + b + c, at + a + b + c + d
            events.append(Event._from_host(text[at:p1], text[p1:p2], text[p2:p3], timestamps[i], text[p3:p4]))
            at = p4
        if at > len(text):
            raise ValueError("the packed lengths run past the batch text")
        return events
    raw = text.encode("utf-8")
    for i in range(count):
        parts = []
        for n in lengths[4 * i: 4 * i + 4]:
            if at + n > len(raw):
                raise ValueError("the packed lengths run past the batch text")
            parts.append(raw[at:at + n].decode("utf-8"))
            at += n
        events.append(Event._from_host(parts[0], parts[1], parts[2], timestamps[i], parts[3]))
    return events


# What became of one input (the SDK's own, language-level outcome).
KEPT, DROPPED, EMITTED, FAILED = "kept", "dropped", "emitted", "failed"


def run(stage, ctx, events, sink):
    """Runs `stage.process` over `events` and answers one (outcome, payload)
    per input: (KEPT, None), (DROPPED, None), (EMITTED, None) or (FAILED,
    StageError). Outputs go to `sink`: `begin(i)` before each event,
    `emit_data(text)` for an input changed only in its data, `emit(event)`
    for any other output. An exception other than `StageError` is a bug in
    the stage: it propagates (in the component, the host then reports the
    event as a `panic` with the exception's message)."""
    results = []
    begin, emit, emit_data = sink.begin, sink.emit, sink.emit_data
    for index, event in enumerate(events):
        begin(index)
        try:
            answer = stage.process(event, ctx)
        except StageError as error:
            results.append((FAILED, error))
            continue
        if answer is None or answer is PASS:
            if not event._changed:
                results.append((KEPT, None))
            elif not event._head_changed:
                emit_data(event.data_json)
                results.append((EMITTED, None))
            else:
                emit(event)
                results.append((EMITTED, None))
        elif answer is DROP:
            results.append((DROPPED, None))
        elif isinstance(answer, StageError):
            results.append((FAILED, answer))
        elif isinstance(answer, Event):
            emit(answer)
            results.append((EMITTED, None))
        else:
            try:
                outputs = iter(answer)
            except TypeError:
                raise TypeError("process() must return None, PASS, DROP, an Event, events or a StageError, not %s" % type(answer).__name__) from None
            for output in outputs:
                if not isinstance(output, Event):
                    raise TypeError("process() returned %s among its events" % type(output).__name__)
                emit(output)
            results.append((EMITTED, None))
    return results
