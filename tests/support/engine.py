"""Shared helpers for engine tests: real spot-5m-2024 bars, hand-made signal series."""

import numpy as np
import pyarrow.parquet as pq

from dolphin.data.contracts import Panel
from dolphin.paths import data_root
from dolphin.scanner.core import WINDOWS, ScanResult


def real_panel(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=600) -> Panel:
    """A small panel of REAL candles straight from the parquet files (no aligner involved)."""
    cols = {k: [] for k in ("open", "high", "low", "close", "volume")}
    ot = None
    for s in symbols:
        t = pq.read_table(data_root() / "klines" / "spot-5m-2024" / f"{s}.parquet").slice(start, n)
        o = t.column("open_time").cast("int64").to_numpy()
        if ot is None:
            ot = o
        assert np.array_equal(ot, o)
        for k in cols:
            cols[k].append(t.column(k).to_numpy())
    arr = {k: np.ascontiguousarray(np.stack(v, axis=1)) for k, v in cols.items()}
    z = np.zeros(arr["close"].shape, bool)
    return Panel(list(symbols), 300_000, ot, arr["open"], arr["high"], arr["low"], arr["close"], arr["volume"],
                 z, z.copy())


def handmade_scans(panel: Panel, vel_div_norm: np.ndarray, loadings: np.ndarray | None = None) -> ScanResult:
    """A ScanResult whose vel_div/N is the given hand-made series (v_50 carries it, v_150 = 0) and whose
    loadings are the given (T, N) values in every window; lambda fields are NaN (unused by the engine)."""
    T, N = panel.close.shape
    if loadings is None:
        loadings = np.full((T, N), 1 / np.sqrt(N))
    K = len(WINDOWS)
    vel = np.zeros((T, K))
    vel[:, 0] = vel_div_norm * N
    nan = np.full((T, K), np.nan)
    return ScanResult(symbols=list(panel.symbols), bar_ms=panel.bar_ms, windows=WINDOWS,
                      open_time=panel.open_time.copy(), lam=nan, velocity=vel, instability=nan.copy(),
                      valid=np.ones((T, K), bool), loadings=np.repeat(loadings[:, None, :], K, axis=1),
                      close=panel.close.copy(), fallbacks=np.zeros(T, np.int8))
