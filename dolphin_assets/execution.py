"""Which engine runs the code location's steps, by configuration (no dask import unless it is chosen).

``DOLPHIN_EXECUTOR``: ``multiprocess`` (default: the forkserver multiprocess executor of one machine) or
``dask`` (every step on the dask.distributed cluster whose scheduler is ``DOLPHIN_DASK_SCHEDULER``,
tcp://host:8786; single-host writers pinned to the worker holding SINGLE_HOST: ``dolphin_assets.distributed``).
"""

import os


def executor_from_env(default):
    kind = os.environ.get("DOLPHIN_EXECUTOR", "multiprocess").strip().lower()
    if kind in ("", "multiprocess"):
        return default
    if kind != "dask":
        raise ValueError(f"DOLPHIN_EXECUTOR={kind!r}: expected multiprocess or dask")
    addr = os.environ.get("DOLPHIN_DASK_SCHEDULER", "").strip()
    if not addr:
        raise ValueError("DOLPHIN_EXECUTOR=dask needs DOLPHIN_DASK_SCHEDULER=tcp://host:8786 (the dask scheduler)")
    from dolphin_assets.distributed import dask_pinned_executor

    return dask_pinned_executor.configured({"scheduler": addr}, name="dask_pinned_env")
