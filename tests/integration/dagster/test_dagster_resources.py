"""Resources built from configuration: the Binance-archive market data source (download into the cache, read
the window from it) gives the same bars as the local folder; the feature-store kinds."""

import io
import zipfile
from datetime import date, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from dolphin.timeutil import day_start_ms
from dolphin.paths import data_root
from dolphin.timeutil import DAY_MS

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def _fake_archive(calls):
    """download_klines stand-in: writes the archive's daily zips (Binance CSV, no header) of REAL candles into the
    cache layout, as the real downloader would after verifying them."""
    from dolphin.adapters.binance_archive import DownloadResult, archive_path

    def download(symbols, interval, start, end, *, market, cache_dir):
        calls.append((tuple(symbols), interval, start, end, market))
        res = DownloadResult()
        for sym in symbols:
            t = pq.read_table(data_root() / "klines" / "spot-5m-2024" / f"{sym}.parquet")
            ot = t.column("open_time").cast("int64").to_numpy()
            d = start
            while d <= end:
                rel = archive_path(market, "daily", sym, interval, d.isoformat())
                f = cache_dir / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                lo = day_start_ms(d.isoformat())
                rows = np.flatnonzero((ot >= lo) & (ot < lo + DAY_MS))
                buf = io.StringIO()
                for i in rows:
                    o, h, l_, c, v = (t.column(k)[int(i)].as_py() for k in ("open", "high", "low", "close", "volume"))
                    buf.write(f"{ot[i]},{o!r},{h!r},{l_!r},{c!r},{v!r},{ot[i] + 299_999},0,0,0,0,0\n")
                with zipfile.ZipFile(f, "w") as z:
                    z.writestr(f.name.replace(".zip", ".csv"), buf.getvalue())
                res.files.setdefault(sym, []).append(f)
                d += timedelta(days=1)
        return res

    return download


def test_binance_archive_source_equals_the_folder(tmp_path, monkeypatch):
    import dolphin.adapters.binance_archive as archive
    from dolphin.data import load_panel
    from dolphin_assets.resources.market_data import MarketData

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(archive, "download_klines", _fake_archive(calls))
    t0 = day_start_ms("2024-02-10")
    src = MarketData(kind="binance_archive", symbols=SYMBOLS, interval="5m", market="spot")
    got = src.load_day(t0, t0 + DAY_MS - 1, 600)
    assert calls == [(tuple(SYMBOLS), "5m", date(2024, 2, 7), date(2024, 2, 10), "spot")]
    ref = load_panel("spot-5m-2024", start_ms=t0, end_ms=t0 + DAY_MS - 1, warmup_bars=600, symbols=SYMBOLS)
    assert got.symbols == ref.symbols and got.warmup_bars == ref.warmup_bars == 600
    np.testing.assert_array_equal(got.open_time, ref.open_time)
    np.testing.assert_array_equal(got.close, ref.close)
    assert (tmp_path / "binance-archive" / "data" / "spot" / "daily" / "klines" / "BTCUSDT").is_dir()


def test_feature_store_kinds(tmp_path, monkeypatch):
    from dolphin.store import FEATURES, SCAN_LATEST, Record
    from dolphin_assets.resources.feature_store import FeatureStoreResource

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    FeatureStoreResource().open().put(FEATURES, SCAN_LATEST, Record({"vel_div": 1.0}))
    assert (tmp_path / "store" / "features.sqlite").exists()
    from dolphin.store import StoreUnavailableError

    # configuration-only swap: the hazelcast kind builds a real client (nothing listens on port 1 here)
    monkeypatch.setenv("DOLPHIN_HZ_CONNECT_TIMEOUT", "2")
    with pytest.raises(StoreUnavailableError, match="127.0.0.1:1"):
        FeatureStoreResource(kind="hazelcast", hazelcast_members=["127.0.0.1:1"]).open()
    with pytest.raises(ValueError, match="expected embedded or hazelcast"):
        FeatureStoreResource(kind="redis").open()
