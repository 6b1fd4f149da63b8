"""The prebuilt core: pcapstate's compiled functions as one extension module, built ahead of time.

Importing numba and loading its cached machine code costs about 0.8 s and
90 MB before the first packet (numba's registries, its BLAS probe, one cache
file per function).  ``pip install`` therefore compiles every *entry point*
(a compiled function that Python calls, marked ``@entry`` in
:mod:`pcapstate.jit`) ahead of time, with numba's own compiler
(``numba.pycc``), into ``pcapstate/_core*.so``: the same code numba would
compile, loaded in a few milliseconds without numba (:mod:`pcapstate.aot_build`
makes it).

The module is used only while it is *fresh*: ``_core.json`` beside it lists
every source file the compiled code came from with its SHA-256, and any
difference (an edited checkout, another Python) leaves it unused; numba then
compiles as before.  ``python3 -m pcapstate.aot_build`` rebuilds it.

Entry points are declared with their argument types (``"i8[:, ::1]"``: a
C-contiguous 2-D int64 array; ``"readonly u1[::1]"``: a byte array that may
be read-only; ``"i8"``, ``"b1"``, ``"f8"``: scalars; a tuple of these: a
tuple argument; :class:`Named`: a namedtuple).  The compiled wrapper checks
only an array's item size, so :func:`bind` checks every argument against the
declaration before calling into the module: a wrong dtype is a TypeError, not
misread memory.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parent
MANIFEST = PACKAGE / "_core.json"

_SCALARS = {"b1": np.bool_, "i1": np.int8, "i2": np.int16, "i4": np.int32, "i8": np.int64,
            "u1": np.uint8, "u2": np.uint16, "u4": np.uint32, "u8": np.uint64, "f8": np.float64}
_ARRAY = re.compile(r"^(readonly\s+)?(\w\d)(?:\[((?::\s*,\s*)*)::1\])?$")


@dataclass(frozen=True)
class Arg:
    """One declared argument: a scalar (``ndim`` 0) or a C-contiguous array."""

    code: str  # "i8", "u1", "b1", "f8" ...
    ndim: int = 0
    readonly: bool = False

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_SCALARS[self.code])


@dataclass(frozen=True)
class Named:
    """A namedtuple argument: its class and its fields' declarations."""

    cls: type
    fields: tuple

    def __init__(self, cls: type, *fields) -> None:
        object.__setattr__(self, "cls", cls)
        object.__setattr__(self, "fields", tuple(parse(f) for f in fields))


def parse(spec):
    """An argument declaration (string, tuple of them, :class:`Named`, :class:`Arg`) as Arg/Named/tuple."""
    if isinstance(spec, (Arg, Named)):
        return spec
    if isinstance(spec, tuple):
        return tuple(parse(s) for s in spec)
    match = _ARRAY.match(spec.strip())
    if match is None or match.group(2) not in _SCALARS:
        raise ValueError(f"not an argument declaration: {spec!r}")
    dims = match.group(3)
    ndim = 0 if dims is None else dims.count(":") + 1
    return Arg(match.group(2), ndim, bool(match.group(1)))


def array(dtype, ndim: int, readonly: bool = False) -> Arg:
    """The declaration of a C-contiguous array of numpy ``dtype``."""
    code = next(c for c, t in _SCALARS.items() if np.dtype(t) == np.dtype(dtype))
    return Arg(code, ndim, readonly)


def symbol(function) -> str:
    """The entry point's name in the module: ``replay_state__run_packets``."""
    module = function.__module__.removeprefix("pcapstate.").replace(".", "_")
    return f"{module}__{function.__name__}"


# --- freshness ---------------------------------------------------------------------


def digest(files: list[str]) -> str:
    """SHA-256 over the package-relative ``files``, names and contents."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0")
        h.update((PACKAGE / name).read_bytes())
    return h.hexdigest()


def runtime_tag() -> str:
    """What the module was built for: the Python ABI and numpy's major version."""
    return f"{sys.implementation.cache_tag}-numpy{np.__version__.split('.')[0]}"


@functools.cache
def core():
    """The prebuilt module if it is there and fresh, else None."""
    try:
        manifest = json.loads(MANIFEST.read_text())
        if manifest.get("runtime") != runtime_tag() or manifest.get("digest") != digest(manifest["sources"]):
            return None
        from pcapstate import _core

        return _core
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None


def is_fresh() -> bool:
    return core() is not None


# --- calling -----------------------------------------------------------------------


def bind(function, specs: tuple):
    """``function``'s prebuilt twin, behind a check of every argument against ``specs``."""
    compiled = getattr(core(), symbol(function))
    specs = tuple(parse(s) for s in specs)
    name = f"{function.__module__}.{function.__name__}"

    @functools.wraps(function)
    def call(*args):
        if len(args) != len(specs):
            raise TypeError(f"{name}: {len(args)} arguments, declared {len(specs)}")
        for position, (value, spec) in enumerate(zip(args, specs)):
            _check(value, spec, name, position)
        return compiled(*args)

    call.prebuilt = compiled
    call.py_func = function  # as on numba's dispatchers: the plain Python function
    return call


def _check(value, spec, name: str, position) -> None:
    if isinstance(spec, Arg):
        if _fits(value, spec):
            return
        raise TypeError(f"{name}: argument {position} is {_describe(value)}, declared {_show(spec)}")
    items = spec.fields if isinstance(spec, Named) else spec
    if not isinstance(value, tuple) or len(value) != len(items):
        raise TypeError(f"{name}: argument {position} is {_describe(value)}, declared a tuple of {len(items)}")
    for k, (item, item_spec) in enumerate(zip(value, items)):
        _check(item, item_spec, name, f"{position}[{k}]")


def _fits(value, spec: Arg) -> bool:
    if spec.ndim == 0:
        if spec.code == "b1":
            return isinstance(value, (bool, np.bool_))
        if spec.code == "f8":
            return isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool)
        return isinstance(value, (int, np.integer))
    return (isinstance(value, np.ndarray) and value.dtype == spec.dtype and value.ndim == spec.ndim
            and value.flags.c_contiguous and (spec.readonly or value.flags.writeable))


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        layout = "C" if value.flags.c_contiguous else "not C-contiguous"
        return f"a {value.ndim}-D {value.dtype} array ({layout}{'' if value.flags.writeable else ', read-only'})"
    return type(value).__name__


def _show(spec: Arg) -> str:
    if spec.ndim == 0:
        return spec.code
    return f"{'readonly ' if spec.readonly else ''}{spec.code}[{':, ' * (spec.ndim - 1)}::1]"
