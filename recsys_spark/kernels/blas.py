"""Thread count of the OpenBLAS libraries numpy and scipy loaded, set from inside a Spark Python worker
or around the driver's threaded WALS kernel.

Spark runs one task per core, and each task's GEMM must not spawn a BLAS thread per core too:
that oversubscribes the machine. Local mode does not set OMP_NUM_THREADS for its workers. The same
holds for kernels/wals_cpu.py, which runs one thread per core, each calling small GEMMs.
"""

from __future__ import annotations

import ctypes
import re
from contextlib import contextmanager

_SUFFIXES = ("", "64_")
_PREFIXES = ("openblas", "scipy_openblas")
_done: dict = {}


def _openblas_libraries() -> list[tuple]:
    """(set_num_threads, get_num_threads) of every OpenBLAS loaded in this process (numpy's and scipy's
    wheels each bring their own); empty when none is, or off Linux."""
    if "libraries" in _done:
        return _done["libraries"]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = sorted(set(re.findall(r"\S*openblas\S*\.so\S*", maps.read())))
    except OSError:  # not Linux: leave the BLAS as configured by its environment variables
        return []
    found = [pair for pair in (_thread_functions(ctypes.CDLL(path)) for path in paths) if pair]
    _done["libraries"] = found
    return found


def _thread_functions(library) -> tuple | None:
    """The library's (set_num_threads, get_num_threads) under the first name it exports, or None."""
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            setter, getter = f"{prefix}_set_num_threads{suffix}", f"{prefix}_get_num_threads{suffix}"
            if hasattr(library, setter) and hasattr(library, getter):
                return getattr(library, setter), getattr(library, getter)
    return None


def limit_blas_threads(threads: int) -> bool:
    """Set the OpenBLAS thread count of this process (once per value); False if no OpenBLAS is loaded."""
    if _done.get("threads") == threads:
        return True
    libraries = _openblas_libraries()
    for setter, _ in libraries:
        setter(ctypes.c_int(threads))
    if libraries:
        _done["threads"] = threads
    return bool(libraries)


@contextmanager
def blas_threads(threads: int):
    """OpenBLAS at `threads` threads inside the block, then each library back at its own count."""
    libraries = _openblas_libraries()
    before = [int(getter()) for _, getter in libraries]
    for setter, _ in libraries:
        setter(ctypes.c_int(threads))
    try:
        yield
    finally:
        for (setter, _), count in zip(libraries, before):
            setter(ctypes.c_int(count))
