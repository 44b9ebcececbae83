"""bot-filter in Python: drops events whose `data.ua` contains a configured
pattern, case-insensitively. Config: {"patterns": [...]} (default bot,
spider, crawler). Events without a string `data.ua` pass. The same outputs as
the Rust plugins/bot-filter."""

from sluice_sdk import DROP, Stage, export


class BotFilter(Stage):
    def __init__(self, config):
        unknown = set(config) - {"patterns"}
        if unknown:
            raise ValueError("invalid config: unknown field `%s`, expected `patterns`" % sorted(unknown)[0])
        patterns = config.get("patterns", ["bot", "spider", "crawler"])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ValueError("invalid config: patterns must be a list of strings")
        if any(p == "" for p in patterns):
            raise ValueError("patterns must not contain an empty string (it would match every user agent)")
        self.patterns = [p.lower() for p in patterns]

    def process(self, event, ctx):
        ua = event.get("ua")
        if isinstance(ua, str):
            lower = ua.lower()
            for pattern in self.patterns:
                if pattern in lower:
                    return DROP
        return None


export(BotFilter)
