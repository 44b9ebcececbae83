"""Builds a Python stage into a component: `python -m sluice_sdk.build
MODULE.py -o STAGE.wasm`.

Runs componentize-py (installed with pip; it carries CPython for WASI and
needs no network) against `sluice:stage@0.2.0` (wit/stage.wit) with a small
entry module that imports MODULE (which calls `sluice_sdk.export`) and this
SDK's glue. The result imports only `sluice:stage/host@0.2.0` and WASI 0.2
interfaces the host grants.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

SDK_DIR = pathlib.Path(__file__).resolve().parent.parent
#: The WIT the component is built against: $SLUICE_WIT, else the repository's.
DEFAULT_WIT = SDK_DIR.parent.parent / "wit"


def componentize_py():
    """The componentize-py executable next to this Python (same virtualenv),
    else on PATH."""
    here = pathlib.Path(sys.executable).parent / "componentize-py"
    if here.exists():
        return str(here)
    found = shutil.which("componentize-py")
    if found is None:
        raise SystemExit("componentize-py is not installed: pip install componentize-py==0.25.1 (scripts/sdk-tools.sh does)")
    return found


def build(module_file, output, wit=None, quiet=True):
    """Builds `module_file` into the component `output`."""
    module_file = pathlib.Path(module_file).resolve()
    if not module_file.is_file() or module_file.suffix != ".py":
        raise SystemExit("%s is not a Python file" % module_file)
    wit = pathlib.Path(wit or os.environ.get("SLUICE_WIT") or DEFAULT_WIT)
    if not (wit / "stage.wit").is_file():
        raise SystemExit("no stage.wit in %s: set SLUICE_WIT to the directory of sluice's wit/stage.wit" % wit)
    with tempfile.TemporaryDirectory(prefix="sluice-py-build-") as entry_dir:
        entry = pathlib.Path(entry_dir, "sluice_stage_entry.py")
        entry.write_text("import %s  # noqa: F401  (calls sluice_sdk.export)\nfrom sluice_sdk._guest import WitWorld  # noqa: F401\n" % module_file.stem)
        command = [componentize_py(), "-d", str(wit), "-w", "stage", "componentize"]
        if quiet:
            command.insert(1, "-q")
        for path in (entry_dir, str(module_file.parent), str(SDK_DIR)):
            command += ["-p", path]
        command += ["sluice_stage_entry", "-o", str(output)]
        subprocess.run(command, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sluice_sdk.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the stage's module (a .py file that calls sluice_sdk.export)")
    parser.add_argument("-o", "--output", required=True, help="the component to write (.wasm)")
    parser.add_argument("--wit", help="the directory of wit/stage.wit (default: $SLUICE_WIT or the repository's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show componentize-py's output")
    args = parser.parse_args(argv)
    try:
        build(args.module, args.output, args.wit, quiet=not args.verbose)
    except subprocess.CalledProcessError as e:
        raise SystemExit("componentize-py failed (exit %d)" % e.returncode)


if __name__ == "__main__":
    main()
