"""Perpetual funding rates mapped onto the bar grid (charged by the engine where data exists)."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dolphin.data.contracts import DataError


def find_funding_dir(kline_set: Path) -> Path | None:
    """``klines/usdtm-5m-2023`` -> ``funding/usdtm-8h-2023`` when it exists (same market and period)."""
    kline_set = Path(kline_set)
    parts = kline_set.name.split("-")
    if len(parts) < 3:
        return None
    cand = kline_set.parent.parent / "funding" / "-".join([parts[0], "8h", *parts[2:]])
    return cand if cand.is_dir() else None


def read_funding_rates(funding_dir: Path, sym: str):
    """(funding times ms, rates) of ``sym`` from ``<funding_dir>/<sym>.parquet``; None when there is no file.
    Raises ``DataError`` naming the file when it cannot be read or holds a non-finite rate."""
    f = Path(funding_dir) / f"{sym}.parquet"
    if not f.exists():
        return None
    try:
        tab = pq.read_table(f, columns=["funding_time", "funding_rate"])
    except Exception as e:  # noqa: BLE001 - report the file, whatever pyarrow raised
        raise DataError(f"{f}: cannot read funding file: {e}") from e
    ft = tab.column("funding_time").cast("int64").to_numpy()
    fr = tab.column("funding_rate").to_numpy(zero_copy_only=False).astype(float)
    bad = ~np.isfinite(fr)
    if bad.any():
        raise DataError(f"{f}: non-finite funding_rate at funding_time ms {int(ft[bad][0])}")
    return ft, fr


def funding_grid(funding_dir: Path, symbols: list, open_time: np.ndarray, bar_ms: int):
    """(T, N) rates at the bars whose open is a funding time (0 elsewhere) and the symbols covered.

    A funding time between grid points is charged at the bar containing it."""
    T, N = len(open_time), len(symbols)
    rates = np.zeros((T, N))
    covered = []
    if T == 0:
        return rates, covered
    t0 = int(open_time[0])
    for j, sym in enumerate(symbols):
        got = read_funding_rates(funding_dir, sym)
        if got is None:
            continue
        ft, fr = got
        idx = (ft - t0) // bar_ms
        ok = (idx >= 0) & (idx < T)
        np.add.at(rates[:, j], idx[ok].astype(np.int64), fr[ok])
        covered.append(sym)
    return rates, covered
