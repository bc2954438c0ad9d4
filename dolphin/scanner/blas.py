"""Run LAPACK single-threaded inside the scanner.

The exact path (seeds, fallbacks) calls LAPACK through scipy's bundled OpenBLAS (directly and via
numba's ``np.linalg.eigh``). Pinning OpenBLAS to one thread for the duration of a scan (1) keeps
results independent of OPENBLAS_NUM_THREADS and the core count, and (2) avoids OpenBLAS's spinning
worker threads, which on a busy 2-core machine made one N=400 ``dsyevr`` take 2.5 s instead of 5 ms.
Every OpenBLAS loaded in the process (scipy's and numpy's) is pinned; the previous settings are
restored afterwards. No-op where the libraries cannot be found.
"""

import ctypes
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_funcs = None


def _find() -> list:
    """(get_num_threads, set_num_threads) of every OpenBLAS mapped into this process."""
    global _funcs
    if _funcs is not None:
        return _funcs
    import numpy  # noqa: F401
    import scipy.linalg.cython_lapack  # noqa: F401  (both load their OpenBLAS)

    _funcs = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return _funcs
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("", "64_"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    _funcs.append((get, put))
                    break
            else:
                continue
            break
    return _funcs


@contextmanager
def single_threaded():
    funcs = _find()
    with _lock:
        before = [get() for get, _ in funcs]
        for _, put in funcs:
            put(1)
    try:
        yield
    finally:
        with _lock:
            for (_, put), n in zip(funcs, before):
                put(n)
