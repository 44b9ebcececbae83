"""{{name}}: a Sluice stage in Python.

Drops events whose `data.drop` is true, and tags the others with
`data.tagged_by` (the config's `tag`, default "{{name}}"). Replace it with
your own logic: see the SDK's README ({{sdk}}/plugin-sdk/python/README.md).
"""

from sluice_sdk import DROP, Rejected, Stage, export


class {{class}}(Stage):
    def __init__(self, config):
        self.tag = config.get("tag", "{{name}}")
        if not isinstance(self.tag, str):
            raise ValueError("config.tag must be a string")

    def process(self, event, ctx):
        if event.get("drop") is True:
            return DROP
        if event.get("reject") is True:
            raise Rejected("data.reject is set")
        event.set("tagged_by", self.tag)
        return None


export({{class}})
