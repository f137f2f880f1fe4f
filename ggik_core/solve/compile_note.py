"""One line on stderr when numba compiles the LM kernel (:mod:`ggik_core.solve.lm_kernel`).

The kernel is compiled with ``cache=True``: the first call on a machine (or after the source or
numba changes) compiles it, about 6 s; later processes load it from numba's cache in well under a
second. Numba fires a ``numba:compile`` event only on a cache miss, so a listener on that event
tells a real compile from a cache load; the note is written once per process, when the first of
the kernel's functions starts compiling.
"""

from __future__ import annotations

import sys

from numba.core import event

NOTE = "note: compiling the solver's kernel once (about 6 s; cached afterwards)"


class CompileNote(event.Listener):
    """Writes :data:`NOTE` to stderr the first time a function of ``module`` compiles."""

    def __init__(self, module: str):
        self.module = module
        self.written = False

    def on_start(self, ev: event.Event) -> None:
        if self.written:
            return
        func = getattr(ev.data.get("dispatcher"), "py_func", None)
        if getattr(func, "__module__", None) == self.module:
            self.written = True
            print(NOTE, file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        pass


def watch(module: str) -> CompileNote:
    """Registers the note for ``module``'s compiled functions (for the life of the process)."""
    listener = CompileNote(module)
    event.register("numba:compile", listener)
    return listener
