"""Build the prebuilt core (:mod:`pcapstate.aot`): every ``@entry`` compiled ahead of time.

    python3 -m pcapstate.aot_build            # into pcapstate/, beside the sources
    python3 -m pcapstate.aot_build --force    # even when the module there is fresh

``pip install`` runs this (setup.py); run it by hand after editing compiled
code in a checkout, or pcapstate quietly goes back to compiling with numba
(the module no longer matches the sources).  It imports the modules that hold
entry points with numba compiling (``PCAPSTATE_CORE=numba``), hands each
entry point with its declared argument types to ``numba.pycc`` (numba infers
the return types, as it does when compiling on first call), and writes
``_core*.so`` and then ``_core.json``: the source files the compiled code
came from (every pcapstate module imported by then) and their digest.
Needs numba and a C compiler; takes about a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

# the modules that hold entry points (tests/test_aot.py checks the list is complete)
CORE_MODULES = (
    "pcapstate.decode.fast_records",
    "pcapstate.decode.fast_layers",
    "pcapstate.conversations",
    "pcapstate.replay_state",
    "pcapstate.tracker",
    "pcapstate.zeek_tcp",
    "pcapstate.zeek",
    "pcapstate.findings.retransmissions",
    "pcapstate.findings.backoff",
    "pcapstate.findings.anomalies",
    "pcapstate.report.json_rows",
)


def numba_type(spec):
    """The numba type of an argument declaration (:func:`pcapstate.aot.parse`)."""
    from numba import types
    from numba.np.numpy_support import from_dtype

    from pcapstate import aot

    if isinstance(spec, aot.Arg):
        scalar = from_dtype(spec.dtype)
        return scalar if spec.ndim == 0 else types.Array(scalar, spec.ndim, "C", readonly=spec.readonly)
    if isinstance(spec, aot.Named):
        items = [numba_type(f) for f in spec.fields]
        if all(item == items[0] for item in items):
            return types.NamedUniTuple(items[0], len(items), spec.cls)
        return types.NamedTuple(items, spec.cls)
    items = [numba_type(s) for s in spec]
    if all(item == items[0] for item in items):
        return types.UniTuple(items[0], len(items))
    return types.Tuple(items)


def source_files() -> list[str]:
    """Package-relative names of every pcapstate module imported so far (what compiled code can read)."""
    from pcapstate import aot

    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "pcapstate" or name.startswith("pcapstate.")) and path and path.endswith(".py"):
            names.append(Path(path).resolve().relative_to(aot.PACKAGE).as_posix())
    return sorted(set(names))


def build(output_dir: Path, force: bool = False, verbose: bool = False) -> bool:
    """Compile the entry points into ``output_dir``; False when the module there was already fresh."""
    import importlib

    from pcapstate import aot, jit

    if jit.MODE != "numba":
        raise SystemExit("pcapstate.aot_build: run with numba compiling (PCAPSTATE_CORE=numba, numba installed)")
    for module in CORE_MODULES:
        importlib.import_module(module)
    sources = sorted(set(source_files()) | {"aot_build.py"})  # how it is built is part of what is built
    manifest = {"runtime": aot.runtime_tag(), "digest": aot.digest(sources), "sources": sources}
    target = output_dir / aot.MANIFEST.name
    if not force and _same_manifest(target, manifest) and any(output_dir.glob("_core.*.so")):
        return False
    from numba.core.typing import signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc is "pending deprecation", with no replacement yet
        from numba.pycc import CC
    _release_the_gil()
    _without_reference_counts()

    with tempfile.TemporaryDirectory() as scratch:
        cc = CC("_core")
        cc.output_dir = scratch
        cc.verbose = verbose
        for function, specs in jit.ENTRIES:
            argument_types = [numba_type(aot.parse(s)) for s in specs]
            cc.export(aot.symbol(function), signature(None, *argument_types))(function)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.compile()
        built = next(Path(scratch).glob("_core.*"))
        for old in output_dir.glob("_core.*.so"):
            old.unlink()
        shutil.copy2(built, output_dir / built.name)
    manifest["uncounted"] = sorted(aot.symbol(f) for f, _ in jit.ENTRIES if _name(f) in UNCOUNTED)
    target.write_text(json.dumps(manifest, indent=1) + "\n")
    return True


def _release_the_gil() -> None:
    """Make every entry point release the GIL while it runs, as ``@njit(nogil=True)`` does.

    pycc has no option for it: it compiles each export with a fresh
    ``Flags()``, whose ``release_gil`` the Python wrapper obeys.  Its class
    gets that default here, in this build process only.  Threads then run
    compiled stages side by side (``--jobs``).
    """
    import numba.pycc.compiler as pycc_compiler

    class NoGilFlags(pycc_compiler.Flags):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = NoGilFlags


def _without_reference_counts() -> None:
    """Compile each entry point without numba's reference counting where it can be.

    With it, numba counts a reference to every array at every inlined call
    that passes one (an atomic increment and a decrement, each a call): in the
    replay, a dozen per array per packet, 20 % of a whole run's time in
    ``NRT_incref``/``NRT_decref`` (perf, synth-100k).  An entry point that
    allocates no array needs no count: the caller holds its arrays for the
    call.  Numba refuses to compile one that allocates without it, which then
    keeps it.  This build process only, as :func:`_release_the_gil`.
    """
    import numba.pycc.compiler as pycc_compiler

    UNCOUNTED.clear()
    counted = getattr(pycc_compiler.compile_extra, "counted", pycc_compiler.compile_extra)  # (once per process)

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, locals, **options):
        lean = flags.copy()
        lean.nrt = False
        try:
            result = counted(typingctx, targetctx, func, args, return_type, lean, locals, **options)
        except Exception:  # (it allocates: numba needs its reference counts for that)
            return counted(typingctx, targetctx, func, args, return_type, flags, locals, **options)
        UNCOUNTED.add(_name(func))
        return result

    compile_extra.counted = counted
    pycc_compiler.compile_extra = compile_extra


UNCOUNTED: set[str] = set()  # the functions this build compiled without reference counts (_core.json's
# "uncounted" lists the entry points among them)


def _name(function) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def _same_manifest(path: Path, manifest: dict) -> bool:
    try:
        built = json.loads(path.read_text())
        return {key: built.get(key) for key in manifest} == manifest
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile pcapstate's entry points ahead of time.")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write _core*.so and _core.json")
    parser.add_argument("--force", action="store_true", help="build even when the module there is fresh")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    os.environ["PCAPSTATE_CORE"] = "numba"
    os.environ["PCAPSTATE_BUILDING_CORE"] = "1"
    from pcapstate import aot

    output_dir = args.output_dir or aot.PACKAGE
    started = time.perf_counter()
    if build(output_dir, args.force, args.verbose):
        print(f"pcapstate.aot_build: built the prebuilt core in {time.perf_counter() - started:.0f} s "
              f"({output_dir})", file=sys.stderr)
    else:
        print(f"pcapstate.aot_build: the prebuilt core in {output_dir} is fresh", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
