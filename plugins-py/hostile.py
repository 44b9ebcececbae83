"""hostile (for the sandbox tests): misbehaves as `data.do` says. "loop"
spins forever, "alloc" allocates until it runs out, "throw" raises an
exception the stage does not handle; anything else passes."""

from sluice_sdk import Stage, export


class Hostile(Stage):
    def process(self, event, ctx):
        do = event.get("do")
        if do == "loop":
            n = 0
            while True:
                n += 1
        if do == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        if do == "throw":
            raise KeyError("hostile-python: thrown on purpose")
        return None


export(Hostile)
