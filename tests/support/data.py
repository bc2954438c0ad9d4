"""Helpers for the data-layer tests: REAL candles from the shared data, written out in each source format."""

import gzip
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dolphin.data.contracts import Candles
from dolphin.paths import data_root

COLS = ("open", "high", "low", "close", "volume")
BAR_5M = 300_000
BAR_1H = 3_600_000
DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, first bar of spot-5m-2024


def set_dir(name="spot-5m-2024"):
    return data_root() / "klines" / name


def real_rows(symbol="BTCUSDT", n=300, start=0, set_name="spot-5m-2024") -> dict:
    """``n`` consecutive real rows from a shared set, as writable numpy arrays (``open_time`` int64 ms)."""
    t = pq.read_table(set_dir(set_name) / f"{symbol}.parquet").slice(start, n)
    rows = {"open_time": t.column("open_time").cast(pa.int64()).to_numpy().copy()}
    for c in COLS:
        rows[c] = t.column(c).to_numpy().copy()
    assert rows["open_time"].shape[0] == n
    return rows


def real_rows_at(symbol, start_ms, n, set_name) -> dict:
    """``n`` real rows of a shared set starting at bar-open ``start_ms``."""
    t = pq.read_table(set_dir(set_name) / f"{symbol}.parquet")
    i = int(np.searchsorted(t.column("open_time").cast(pa.int64()).to_numpy(), start_ms))
    return real_rows(symbol, n, start=i, set_name=set_name)


def take(rows: dict, idx) -> dict:
    return {k: v[idx] for k, v in rows.items()}


def concat(*parts: dict) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def candles(rows: dict, symbol="BTCUSDT", source="") -> Candles:
    return Candles(symbol, rows["open_time"], *(rows[c] for c in COLS), source=source)


def assert_rows_equal(c: Candles, rows: dict):
    """Exact (bitwise) equality of a read Candles with the rows written."""
    np.testing.assert_array_equal(c.open_time, rows["open_time"])
    assert c.open_time.dtype == np.int64
    for k in COLS:
        got = getattr(c, k)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, rows[k], err_msg=k)


# --- writers -----------------------------------------------------------------------------------


def write_parquet(path, rows):
    pq.write_table(pa.table({
        "open_time": pa.array(rows["open_time"], pa.timestamp("ms", tz="UTC")),
        **{c: pa.array(rows[c], pa.float64()) for c in COLS},
    }), path)
    return path


def write_feather(path, rows):
    """As freqtrade writes it: pandas DataFrame, ``date`` datetime64[ns, UTC]."""
    df = pd.DataFrame({"date": pd.to_datetime(rows["open_time"], unit="ms", utc=True), **{c: rows[c] for c in COLS}})
    df.to_feather(path)
    return path


def json_rows(rows):
    return [[int(t), *(float(rows[c][i]) for c in COLS)] for i, t in enumerate(rows["open_time"])]


def write_json(path, rows):
    data = json.dumps(json_rows(rows))
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(data)
    else:
        path.write_text(data)
    return path


HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore")


def binance_csv_lines(rows, us=False, bar=BAR_5M):
    mult = 1000 if us else 1
    out = []
    for i, t in enumerate(rows["open_time"]):
        o, h, l, c, v = (repr(float(rows[k][i])) for k in COLS)
        close_time = (int(t) + bar) * mult - 1
        out.append(f"{int(t) * mult},{o},{h},{l},{c},{v},{close_time},{float(rows['close'][i]) * float(rows['volume'][i])!r},"
                   f"{100 + i},0.0,0.0,0")
    return out


def binance_csv_text(rows, us=False, header=False, bar=BAR_5M):
    lines = ([HEADER] if header else []) + binance_csv_lines(rows, us=us, bar=bar)
    return "\n".join(lines) + "\n"


def write_binance_csv(path, rows, us=False, header=False, bar=BAR_5M):
    path.write_text(binance_csv_text(rows, us=us, header=header, bar=bar))
    return path


def write_binance_zip(path, rows, us=False, header=False, member=None):
    buf = binance_csv_text(rows, us=us, header=header)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member or path.name.replace(".zip", ".csv"), buf)
    return path


def zip_bytes(files: dict) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return b.getvalue()


def twelve_scans(t0_ms: int):
    """The 12 real scans of spot-5m-2024 whose bars open at t0_ms .. t0_ms + 55 min (warm-up loaded before)."""
    from dolphin.data import load_panel
    from dolphin.scanner import WARMUP_BARS, scan

    p = load_panel("spot-5m-2024", start_ms=t0_ms, end_ms=t0_ms + 11 * 300_000, warmup_bars=WARMUP_BARS)
    s = scan(p)
    assert len(s) == 12
    return s
