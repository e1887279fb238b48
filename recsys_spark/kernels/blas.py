"""Thread count of the BLAS that numpy loaded, set from inside a Spark Python worker.

Spark runs one task per core, and each task's GEMM must not spawn a BLAS thread per core too:
that oversubscribes the machine. Local mode does not set OMP_NUM_THREADS for its workers.
"""

from __future__ import annotations

import ctypes
import re

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")
_done: dict = {}


def limit_blas_threads(threads: int) -> bool:
    """Set the OpenBLAS thread count of this process (once per value); False if no OpenBLAS is loaded."""
    if _done.get("threads") == threads:
        return True
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = sorted(set(re.findall(r"\S*openblas\S*\.so\S*", maps.read())))
    except OSError:  # not Linux: leave the BLAS as configured by its environment variables
        return False
    for path in paths:
        library = ctypes.CDLL(path)
        for name in _SETTERS:
            if hasattr(library, name):
                getattr(library, name)(ctypes.c_int(threads))
                _done["threads"] = threads
                return True
    return False
