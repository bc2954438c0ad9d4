"""Forkserver preload for the multiprocess executor (``start_method: forkserver``).

A step process otherwise imports Dagster's storage stack (SQLAlchemy, Alembic, rich, ...) and loads the
numba kernels from their on-disk cache by itself: about a second per step, more than most steps compute.
Done once here, in the forkserver, every step process forks ready.
"""

import os

import numpy as np

import dolphin_assets.definitions  # noqa: F401  (the code location itself)


def _warm_instance() -> None:
    # the instance a step opens (from DAGSTER_HOME): imports exactly this deployment's storage modules
    if not os.environ.get("DAGSTER_HOME"):
        return
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        instance.get_runs(limit=1)


def _warm_kernels() -> None:
    # every numba dispatcher a step calls, on a tiny synthetic panel (same dtypes as real data)
    from dolphin.data.contracts import Panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.engine.config import BLUE
    from dolphin.scanner import WARMUP_BARS, scan

    rng = np.random.default_rng(0)
    T, N = WARMUP_BARS + 60, 4
    close = np.ascontiguousarray(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0)))
    z = np.zeros((T, N), bool)
    panel = Panel([f"W{i}USDT" for i in range(N)], 300_000, np.arange(T, dtype=np.int64) * 300_000, close,
                  close * 1.001, close * 0.999, close, np.ones((T, N)), z, z.copy())
    run_backtest(panel, scan(panel), BLUE.with_(vol_lookback=100), close_at_end=False)


try:
    _warm_instance()
    _warm_kernels()
except Exception:  # a warm-up must never stop the executor: steps then just start slower
    pass
