"""The event a stage sees, with lazy access to `data`."""

import json

from . import _json


class Event:
    """One event. `data` stays JSON text while the stage reads keys with
    `get` and adds keys with `set`; it is parsed only for edits the text
    cannot take (replacing or removing a key, nested paths, the `data`
    property). The SDK knows whether anything changed, so an event passed on
    unchanged is not copied back to the host.

    Make new events (for fan-out) with `Event(kind, data, id=..., ...)` or
    `event.copy(...)`.
    """

    __slots__ = ("_id", "_kind", "_source", "_timestamp", "_text", "_obj", "_changed", "_head_changed")

    def __init__(self, kind, data=None, id="", source="", timestamp=0):
        self._id = id
        self._kind = kind
        self._source = source
        self._timestamp = timestamp
        if data is None:
            data = {}
        if isinstance(data, str):
            self._text, self._obj = data, None
        elif isinstance(data, dict):
            self._text, self._obj = None, data
        else:
            raise TypeError("an event's data must be a dict or JSON object text, not %s" % type(data).__name__)
        self._changed = True
        self._head_changed = True

    @classmethod
    def _from_host(cls, id, kind, source, timestamp, data):
        event = cls.__new__(cls)
        event._id, event._kind, event._source, event._timestamp = id, kind, source, timestamp
        event._text, event._obj = data, None
        event._changed = event._head_changed = False
        return event

    # ---- the head: id, type, source, timestamp
    @property
    def id(self):
        return self._id

    @id.setter
    def id(self, value):
        self._id = value
        self._changed = self._head_changed = True

    @property
    def kind(self):
        """The event type (`type` in the HTTP API)."""
        return self._kind

    @kind.setter
    def kind(self, value):
        self._kind = value
        self._changed = self._head_changed = True

    @property
    def source(self):
        return self._source

    @source.setter
    def source(self, value):
        self._source = value
        self._changed = self._head_changed = True

    @property
    def timestamp(self):
        """Event time, milliseconds since the Unix epoch."""
        return self._timestamp

    @timestamp.setter
    def timestamp(self, value):
        self._timestamp = value
        self._changed = self._head_changed = True

    # ---- data
    def _parsed(self):
        if self._obj is None:
            obj = json.loads(self._text)
            if not isinstance(obj, dict):
                raise ValueError("the event's data is not a JSON object")
            self._obj, self._text = obj, None
        return self._obj

    def get(self, path, default=None):
        """The value at `path` in `data` (`"ua"`, or `"a.b"` for nested
        objects), or `default`. A top-level key is read from the text
        without parsing the rest of the object."""
        if self._obj is None and "." not in path:
            value = _json.get_top_level(self._text, path, default)
            if value is not NotImplemented:
                return value
            obj = json.loads(self._text)
            return obj.get(path, default) if isinstance(obj, dict) else default
        value = self._obj if self._obj is not None else json.loads(self._text)
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    def __getitem__(self, path):
        missing = object()
        value = self.get(path, missing)
        if value is missing:
            raise KeyError(path)
        return value

    def __contains__(self, path):
        missing = object()
        return self.get(path, missing) is not missing

    def set(self, path, value):
        """Sets `path` in `data` (creating nested objects on the way). Adding
        a top-level key the object lacks splices the text in place."""
        self.set_fields({path: value})

    def set_fields(self, fields):
        """Sets several keys at once (a dict or pairs): one splice when they
        are all new top-level keys."""
        items = list(fields.items()) if isinstance(fields, dict) else list(fields)
        self._changed = True
        if self._obj is None and all("." not in k and _json.find_top_level(self._text, k) == -1 for k, _ in items):
            text = _json.append_members(self._text, items)
            if text is not None:
                self._text = text
                return
        obj = self._parsed()
        for path, value in items:
            target = obj
            parts = path.split(".")
            for part in parts[:-1]:
                nxt = target.get(part)
                if not isinstance(nxt, dict):
                    nxt = target[part] = {}
                target = nxt
            target[parts[-1]] = value

    def remove(self, path):
        """Removes `path` from `data`; answers the value it had, or None."""
        obj = self._parsed()
        parts = path.split(".")
        for part in parts[:-1]:
            obj = obj.get(part)
            if not isinstance(obj, dict):
                return None
        if parts[-1] in obj:
            self._changed = True
            return obj.pop(parts[-1])
        return None

    @property
    def data(self):
        """`data` parsed, as a dict to read or change in place (counts as a
        change: use `get` to only read)."""
        self._changed = True
        return self._parsed()

    @property
    def data_json(self):
        """`data` as JSON text."""
        return self._text if self._obj is None else _json.dumps(self._obj)

    @property
    def changed(self):
        """Whether the stage changed anything."""
        return self._changed

    def copy(self, **changes):
        """A new event: this one with `changes` (kind, data, id, source,
        timestamp) applied."""
        fields = {"kind": self._kind, "data": self.data_json, "id": self._id, "source": self._source, "timestamp": self._timestamp}
        fields.update(changes)
        return Event(**fields)

    def to_dict(self):
        """The event as the HTTP API shows it."""
        return {"id": self._id, "type": self._kind, "source": self._source, "timestamp": self._timestamp, "data": json.loads(self.data_json)}

    def __repr__(self):
        return "Event(id=%r, kind=%r, source=%r, timestamp=%r, data=%s)" % (self._id, self._kind, self._source, self._timestamp, self.data_json)
